"""The fast header parser gives exactly pydicom's FileHeader, or steps aside.

Over every real corpus file: ``header_from_raw(parse_raw(f))`` must equal ``read_header(f)``
field by field (or raise ``Declined``), and every plain file (single-frame, little-endian,
not a mosaic) must actually be taken by the fast path, so that a regression to "always
decline" is caught too.
"""

from __future__ import annotations

import os

import pydicom
import pytest
from conftest import corpus_case_dir, corpus_cases
from pydicom.uid import DeflatedExplicitVRLittleEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from test_dicom_scan_fixtures import ct_slice, write_ct_series, write_dataset

from MedPrepLib.dicom.fastheader import Declined, header_from_raw, parse_raw, read_header_fast
from MedPrepLib.dicom.header import SkipFile, read_header

pytestmark = pytest.mark.pydicom_dependent

PLAIN_SYNTAXES_PREFIX = "1.2.840.10008.1.2"
NOT_PLAIN = {"1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"}  # big endian, deflate


def _reference(path: str):
    try:
        return read_header(path)
    except SkipFile as exc:
        return exc.skipped


def _fast(path: str):
    """The fast path's answer: a FileHeader, a Skipped, or None when it declines."""
    try:
        raw = parse_raw(path)
        return header_from_raw(raw, path, raw.size, raw.mtime_ns)
    except Declined:
        return None
    except SkipFile as exc:
        return exc.skipped


def _corpus_files() -> list[str]:
    files = []
    for case in corpus_cases():
        folder = corpus_case_dir(case) / "dicom"
        for root, _, names in os.walk(folder):
            files.extend(os.path.join(root, n) for n in sorted(names))
    return files


def _diff(a, b) -> dict:
    da = a.to_dict() if hasattr(a, "to_dict") else dict(a.__dict__)
    db = b.to_dict() if hasattr(b, "to_dict") else dict(b.__dict__)
    return {k: (da.get(k), db.get(k)) for k in set(da) | set(db) if da.get(k) != db.get(k)}


@pytest.mark.corpus
def test_fast_path_equals_pydicom_on_every_corpus_file(corpus):
    files = _corpus_files()
    assert files, "corpus manifest lists no DICOM folders"
    taken = declined = 0
    must_be_taken = []
    for path in files:
        ref = _reference(path)
        got = _fast(path)
        if got is None:
            declined += 1
            # A plain file must not be declined.
            if hasattr(ref, "frames") and not ref.is_mosaic and not ref.is_multiframe:
                if (
                    ref.transfer_syntax_uid.startswith(PLAIN_SYNTAXES_PREFIX)
                    and ref.transfer_syntax_uid not in NOT_PLAIN
                ):
                    must_be_taken.append(path)
            continue
        taken += 1
        assert type(got) is type(ref), f"{path}: fast path gave {type(got).__name__}, pydicom {type(ref).__name__}"
        assert got == ref, f"{path}: differs from pydicom in {_diff(got, ref)}"
    assert not must_be_taken, f"plain files declined by the fast path: {must_be_taken}"
    assert taken > 0 and taken + declined == len(files)


@pytest.mark.corpus
def test_read_header_fast_equals_read_header_including_fallback(corpus):
    for path in _corpus_files():
        ref = _reference(path)
        try:
            got = read_header_fast(path)
        except SkipFile as exc:
            got = exc.skipped
        assert got == ref, f"{path}: {_diff(got, ref)}"


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_synthetic_plain_files_are_parsed_fast_and_match(tmp_path, syntax):
    paths = write_ct_series(tmp_path, 2, transfer_syntax=syntax)
    for p in paths:
        raw = parse_raw(p)
        assert raw.transfer_syntax_uid == syntax
        # The nested sequence (undefined length) and the private element were skipped correctly:
        assert raw.pixel_data_offset is not None and raw.pixel_data_length == 8 * 8 * 2
        fast = header_from_raw(raw, str(p), raw.size, raw.mtime_ns)
        assert fast == read_header(str(p))
        assert fast.frames[0].position == (-100.0, -120.5, fast.frames[0].position[2])
        assert fast.rescale_intercept == -1024.0 and fast.window_center == (40.0, 400.0)


def test_pixel_data_offset_points_at_the_pixels(tmp_path):
    (path,) = write_ct_series(tmp_path, 1)
    raw = parse_raw(path)
    with open(path, "rb") as f:
        f.seek(raw.pixel_data_offset)
        data = f.read(raw.pixel_data_length)
    assert data == pydicom.dcmread(path).PixelData


def test_sequence_with_undefined_length_is_skipped(tmp_path):
    (path,) = write_ct_series(tmp_path, 1, with_sequence=True)
    blob = path.read_bytes()
    assert b"\xfe\xff\xdd\xe0" in blob, "fixture should hold an undefined-length sequence"
    assert b"\xfe\xff\x0d\xe0" in blob, "fixture should hold an undefined-length item"
    assert parse_raw(path).elements  # walked past it to the pixel data


def test_truncated_file_is_skipped_by_both_paths(tmp_path):
    (path,) = write_ct_series(tmp_path, 1, size=32)
    data = path.read_bytes()
    path.write_bytes(data[:-100])
    assert _fast(str(path)).reason == "truncated"
    assert _reference(str(path)).reason == "truncated"


def test_unusual_files_are_declined_and_fall_back(tmp_path):
    # non-ASCII text (character sets are pydicom's business)
    ds = ct_slice("1.2.3.4", "1.2.3", 0.0, 1, description="Schädel")
    p1 = write_dataset(ds, tmp_path / "latin1.dcm")
    # deflated data set
    p2 = write_dataset(ct_slice("1.2.3.4", "1.2.3", 1.0, 2), tmp_path / "deflate.dcm", DeflatedExplicitVRLittleEndian)
    # no preamble: a raw data set
    p3 = tmp_path / "nopreamble.dcm"
    p3.write_bytes(write_dataset(ct_slice("1.2.3.4", "1.2.3", 2.0, 3), tmp_path / "tmp.dcm").read_bytes()[128:])
    # not DICOM at all
    p4 = tmp_path / "notes.txt"
    p4.write_text("hello")
    for p in (p1, p2, p3, p4):
        assert _fast(str(p)) is None, f"{p.name} should be declined by the fast path"
    assert read_header_fast(p1) == read_header(str(p1))
    assert read_header_fast(p1).series_description == "Schädel"
    assert read_header_fast(p2) == read_header(str(p2))
    with pytest.raises(SkipFile) as exc:
        read_header_fast(p4)
    assert exc.value.reason == "not_dicom"


def test_header_from_dataset_new_needs_make_fast_path_decline(tmp_path):
    """An element present in the file but not kept by the fast parser is never reported absent."""
    from MedPrepLib.dicom.fastheader import _FastDataset

    (path,) = write_ct_series(tmp_path, 1)
    ds = _FastDataset(parse_raw(path))
    assert ds.get("Rows") == 8
    with pytest.raises(Declined):
        ds.get("KVP")  # present in the file, not kept
    assert ds.get("EchoTime") is None  # absent from the file
