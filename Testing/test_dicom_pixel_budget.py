"""A header declaring more pixels than its data holds, or more than the memory budget, is refused
before anything is decoded or allocated (issue 7, point 1), for every transfer syntax class:
native, deflated, RLE, the JPEG family, JPEG-LS, JPEG 2000 and HTJ2K. A decoder's own failure is
a typed error naming the file and the real cause, never a missing-decoder hint when decoders
are installed, and nothing from pydicom reaches stderr.
"""

from __future__ import annotations

import os
import shutil
import struct
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(__file__))
from dicom_factory import save, write_ct_series  # noqa: E402

from MedPrepLib.dicom.header import SkipFile, read_header  # noqa: E402
from MedPrepLib.dicom.pixels import (  # noqa: E402
    BUDGET_ENV,
    PixelBudgetError,
    check_pixel_data,
    max_pixel_bytes,
)
from MedPrepLib.errors import DicomError, MedPrepError, MissingDecoderError, UnsupportedDicomError  # noqa: E402
from MedPrepLib.sources import load_path  # noqa: E402

RLE = "1.2.840.10008.1.2.5"
JPEG_LOSSLESS_SV1 = "1.2.840.10008.1.2.4.70"
JPEG_LS = "1.2.840.10008.1.2.4.80"
J2K_LOSSLESS = "1.2.840.10008.1.2.4.90"
HTJ2K_LOSSLESS = "1.2.840.10008.1.2.4.201"
DEFLATED = "1.2.840.10008.1.2.1.99"
MiB = 1 << 20


def _dcmread(path):
    import pydicom

    return pydicom.dcmread(str(path))


def _edit(src: Path, dst: Path, **values) -> Path:
    """A copy of ``src`` with some header values changed; the pixel data bytes stay as they are."""
    ds = _dcmread(src)
    for key, value in values.items():
        setattr(ds, key, value)
    return save(ds, dst)


def _series(tmp_path: Path, n: int = 1, rows: int = 32, cols: int = 32) -> list[Path]:
    return write_ct_series(tmp_path / "src", n, rows=rows, cols=cols, shuffle_names=False)


def _rle(tmp_path: Path, **values) -> Path:
    src = _series(tmp_path)[0]
    ds = _dcmread(src)
    ds.compress(RLE)
    path = save(ds, tmp_path / "rle.dcm")
    return _edit(path, tmp_path / "rle_edited.dcm", **values) if values else path


def _encapsulated(tmp_path: Path, ts: str, fragment: bytes, name: str, **values) -> Path:
    """A file whose pixel data is one fragment ``fragment`` under transfer syntax ``ts``."""
    from pydicom.encaps import encapsulate

    ds = _dcmread(_series(tmp_path)[0])
    ds.file_meta.TransferSyntaxUID = ts
    ds.PixelData = encapsulate([fragment])
    ds["PixelData"].VR = "OB"
    ds["PixelData"].is_undefined_length = True
    for key, value in values.items():
        setattr(ds, key, value)
    return save(ds, tmp_path / name)


def _sof(marker: int, rows: int, cols: int, precision: int = 16, components: int = 1) -> bytes:
    """SOI + a start-of-frame segment (JPEG SOFn or JPEG-LS SOF55) + junk scan data."""
    sof = struct.pack(">BHHB", precision, rows, cols, components) + b"\x01\x11\x00" * components
    return b"\xff\xd8" + struct.pack(">BBH", 0xFF, marker, 2 + len(sof)) + sof + b"\xff\xda" + b"\x55" * 400 + b"\xff\xd9"


def _siz(rows: int, cols: int, components: int = 1) -> bytes:
    """A JPEG 2000 codestream start: SOC + SIZ marker + junk."""
    siz = struct.pack(">HIIIIIIIIH", 0, cols, rows, 0, 0, cols, rows, 0, 0, components) + b"\x0f\x01\x01" * components
    return b"\xff\x4f\xff\x51" + struct.pack(">H", 2 + len(siz)) + siz + b"\x00" * 400 + b"\xff\xd9"


def _refused(path: Path, *expected: str, error=DicomError) -> str:
    """load_path refuses with ``error`` whose message contains each of ``expected``, while the
    peak Python-level allocation stays small (nothing sized by the header was allocated)."""
    tracemalloc.start()
    try:
        with pytest.raises(error) as info:
            load_path(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    text = f"{type(info.value).__name__}: {info.value.one_line()}"
    assert peak < 16 * MiB, (peak, text)
    assert os.fspath(path) in text, text
    for e in expected:
        assert e.lower() in text.lower(), text
    assert "pip install" not in text and "no installed decoder" not in text, text
    return text


# ------------------------------------------------------------------ what the data can hold
def test_native_pixel_data_shorter_than_rows_x_columns_is_refused(tmp_path):
    """Native: the pixel data element's length is what it holds (scan skips it as truncated;
    check_pixel_data refuses a header that claims more, e.g. one read from a stale cache)."""
    path = _edit(_series(tmp_path)[0], tmp_path / "big.dcm", Rows=65535, Columns=65535)
    with pytest.raises(SkipFile) as info:
        read_header(path)
    assert info.value.reason == "truncated" and "2048 bytes" in info.value.skipped.detail
    _refused(path, "truncated", error=UnsupportedDicomError)
    h = read_header(_series(tmp_path)[0])
    h.rows = h.columns = 65535
    with pytest.raises(DicomError, match=r"declares 65535 x 65535 x 1 frame.*= 8 GiB; the pixel data element holds 2 KiB"):
        check_pixel_data(h)


def test_deflated_file_declaring_more_than_deflate_can_expand_is_refused(tmp_path):
    ds = _dcmread(_series(tmp_path)[0])
    ds.file_meta.TransferSyntaxUID = DEFLATED
    ds.Rows = ds.Columns = 65535
    path = save(ds, tmp_path / "deflated.dcm")
    _refused(path, "declares 65535 x 65535 x 1 frame", "8 GiB", "deflate expands at most 1032:1")


@pytest.mark.parametrize("rows", [65535, 20000])
def test_rle_declaring_more_than_its_segments_can_expand_is_refused(tmp_path, rows):
    """RLE: 2 bytes expand to at most 128 (64:1); 20000 x 20000 used to print a pydicom traceback
    and blame decoders that were installed."""
    path = _rle(tmp_path, Rows=rows, Columns=rows)
    size = "8 GiB" if rows == 65535 else "763 MiB"
    _refused(path, f"declares {rows} x {rows} x 1 frame", size, "RLE expands to at most", "64:1")


def test_rle_segment_count_must_match_bits_allocated(tmp_path):
    path = _rle(tmp_path, BitsAllocated=8, BitsStored=8, HighBit=7)
    _refused(path, "lists 2 segment(s)", "BitsAllocated 8 need 1")


def test_rle_segment_too_short_for_one_plane_is_refused(tmp_path):
    """Within the total bound but not per segment: each segment must decode to Rows x Columns bytes."""
    path = _rle(tmp_path, Rows=200, Columns=64)  # 2 segments of a 32 x 32 ramp, each far below 12800/64
    _refused(path, "RLE segment of frame 1 of 1 holds", "not the 12800 of a 200 x 64 plane")


@pytest.mark.parametrize(
    ("ts", "marker"),
    [(JPEG_LOSSLESS_SV1, 0xC3), ("1.2.840.10008.1.2.4.57", 0xC3), ("1.2.840.10008.1.2.4.50", 0xC0),
     ("1.2.840.10008.1.2.4.51", 0xC1), (JPEG_LS, 0xF7), ("1.2.840.10008.1.2.4.81", 0xF7)],
)  # fmt: skip
def test_jpeg_family_sof_size_must_match_rows_and_columns(tmp_path, ts, marker):
    """JPEG and JPEG-LS carry their image size in the SOF / SOF55 marker: compared exactly."""
    path = _encapsulated(tmp_path, ts, _sof(marker, 32, 32), "jpeg.dcm", Rows=65535, Columns=65535)
    name = "SOF55" if marker == 0xF7 else f"SOF{marker - 0xC0}"
    _refused(path, "declares 65535 x 65535 x 1 frame", "8 GiB", f"({name} marker) is 32 x 32")


@pytest.mark.parametrize("ts", [J2K_LOSSLESS, "1.2.840.10008.1.2.4.91", HTJ2K_LOSSLESS, "1.2.840.10008.1.2.4.203"])
def test_jpeg2000_and_htj2k_siz_size_must_match_rows_and_columns(tmp_path, ts):
    import pydicom

    if ts.startswith("1.2.840.10008.1.2.4.2") and pydicom.__version__.startswith("2."):
        pytest.skip("pydicom 2.4 cannot write HTJ2K files (nor decode them: test_dicom_bad_inputs covers that error)")
    path = _encapsulated(tmp_path, ts, _siz(32, 32), "j2k.dcm", Rows=65535, Columns=65535)
    _refused(path, "declares 65535 x 65535 x 1 frame", "8 GiB", "(SIZ marker) is 32 x 32")


def test_lossless_jpeg_needs_one_bit_per_sample(tmp_path):
    """A lossless JPEG whose SOF agrees with the header but whose data is far too small."""
    path = _encapsulated(tmp_path, JPEG_LOSSLESS_SV1, _sof(0xC3, 4000, 4000), "tiny.dcm", Rows=4000, Columns=4000)
    _refused(path, "at least one bit per sample", "16000000 declared")


def test_more_frames_than_fragments_is_refused(tmp_path):
    path = _encapsulated(tmp_path, J2K_LOSSLESS, _siz(32, 32), "frames.dcm", NumberOfFrames=5000)
    with pytest.raises(DicomError, match="fewer than one per frame"):
        check_pixel_data(read_header(path))


def test_compressed_syntax_with_native_pixel_data_is_refused(tmp_path):
    src = _series(tmp_path)[0]
    ds = _dcmread(src)
    h = read_header(src)
    h.transfer_syntax_uid = RLE
    with pytest.raises(DicomError, match="not encapsulated although the transfer syntax 'RLE Lossless'"):
        check_pixel_data(h)
    assert ds.Rows == 32


@pytest.mark.corpus
@pytest.mark.parametrize(
    ("case", "what"),
    [
        ("mr_generic_jpeg_lossless", "(SOF3 marker) is 256 x 256"),
        ("mr_siemens_mosaic_jpegll", "(SOF3 marker) is 384 x 384"),
        ("mr_siemens_mosaic_jpegls_dcmtk", "(SOF55 marker) is 384 x 384"),
        ("mr_toshiba_small_j2k", "(SIZ marker) is 64 x 64"),
        ("mr_generic_rle", "RLE expands to at most"),
        ("mr_siemens_mosaic_rle", "RLE expands to at most"),
    ],
)
def test_real_compressed_files_with_edited_rows_and_columns_are_refused(corpus, tmp_path, case, what):
    """A real encoded frame whose header was changed to 65535 x 65535 (one frame)."""
    from conftest import corpus_case_dir, corpus_cases

    row = next(c for c in corpus_cases() if c["case_id"] == case)
    src = sorted(p for p in (corpus_case_dir(row) / "dicom").iterdir() if p.is_file())[0]
    path = _edit(src, tmp_path / "edited.dcm", Rows=65535, Columns=65535)
    with pytest.raises(DicomError) as info:
        check_pixel_data(read_header(path))
    text = info.value.one_line()
    for e in ("declares 65535 x 65535 x 1 frame", "8 GiB", what):
        assert e in text, text
    # through the loader: this error, or for a mosaic an earlier refusal of its tile geometry
    _refused(path, "GeometryError" if "mosaic" in case else what, error=MedPrepError)


def test_genuine_compressed_files_still_load(tmp_path):
    volume = load_path(_rle(tmp_path))
    assert volume.array.shape == (1, 32, 32)


# ------------------------------------------------------------------------- the budget
def test_budget_env_var_parses_sizes(monkeypatch):
    for text, value in [("1000", 1000), ("512M", 512 * MiB), ("4GiB", 4 << 30), ("1.5g", 3 << 29), ("64 kb", 64 << 10)]:
        monkeypatch.setenv(BUDGET_ENV, text)
        assert max_pixel_bytes() == value, text
    for text in ("lots", "-1", "0", "4X"):
        monkeypatch.setenv(BUDGET_ENV, text)
        with pytest.raises(MedPrepError, match=BUDGET_ENV):
            max_pixel_bytes()
    monkeypatch.delenv(BUDGET_ENV)
    assert max_pixel_bytes() >= 256 * MiB  # half the machine's memory, or 4 GiB when unknown


def test_file_over_the_budget_is_refused_before_decoding(tmp_path, monkeypatch):
    monkeypatch.setenv(BUDGET_ENV, "1K")
    path = _rle(tmp_path)
    text = _refused(path, "32 x 32 x 1 frame, 16 bits", "2 KiB, more than the pixel memory budget of 1 KiB", BUDGET_ENV,
                    error=PixelBudgetError)  # fmt: skip
    assert "MEDPREP_MAX_PIXEL_BYTES=32G" in text


def test_stack_over_the_budget_is_refused_before_allocating(tmp_path, monkeypatch):
    """Each file fits, the (slices, rows, cols) buffer of the whole stack does not."""
    write_ct_series(tmp_path / "stack", 6, rows=64, cols=64)
    monkeypatch.setenv(BUDGET_ENV, "40K")  # one slice is 8 KiB, the stack 48 KiB
    with pytest.raises(PixelBudgetError, match=r"the stack's pixel buffer \(6 slices of 64 x 64 uint16\) would take 48 KiB"):
        load_path(tmp_path / "stack")
    monkeypatch.setenv(BUDGET_ENV, "48K")
    assert load_path(tmp_path / "stack").array.shape == (6, 64, 64)


# ------------------------------------------------------------- a decoder's own failure
def test_decoder_failure_is_typed_names_the_cause_and_prints_nothing(tmp_path, capfd, recwarn):
    """Columns lowered on an RLE file: the rust RLE decoder panics (a BaseException) and pydicom's
    own decoder reports a length mismatch; both become one DicomError naming the file."""
    path = _rle(tmp_path, Columns=16)
    with pytest.raises(DicomError) as info:
        load_path(path)
    text = info.value.one_line()
    assert not isinstance(info.value, MissingDecoderError)
    assert str(path) in text and "cannot be decoded as 'RLE Lossless'" in text, text
    assert "pip install" not in text
    out, err = capfd.readouterr()
    assert err == "" and out == ""
    assert not [w for w in recwarn if "pydicom" in str(w.filename)]


def test_missing_decoder_is_still_named_when_there_is_none(tmp_path, monkeypatch):
    import MedPrepLib.dicom.codecs as codecs

    monkeypatch.setattr(codecs, "decoder_available", lambda uid: False)
    with pytest.raises(MissingDecoderError, match="pip install"):
        load_path(_rle(tmp_path))


def test_pydicom_warnings_on_a_good_file_do_not_escape(tmp_path, capfd, recwarn):
    """Excess padding after native pixels makes pydicom warn; loading stays silent on stderr."""
    src = _series(tmp_path)[0]
    ds = _dcmread(src)
    ds.PixelData = ds.PixelData + b"\0" * 64
    path = save(ds, tmp_path / "padded.dcm")
    shutil.copy(path, tmp_path / "padded_copy.dcm")
    volume = load_path(path)
    assert volume.array.shape == (1, 32, 32)
    np.testing.assert_array_equal(volume.array[0], load_path(src).array[0])
    _, err = capfd.readouterr()
    assert "Traceback" not in err and "pydicom" not in err
