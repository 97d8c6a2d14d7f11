"""``medprep convert FILE out.nii.gz`` on pixel data that cannot be what its header says, over
the memory budget, or empty: exit 2, one line naming the real cause, no traceback (nothing from
pydicom or a codec, not even a Rust panic message), nothing left at the output name.
"""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from cli_run import assert_refused, cli_env, leftovers, run_medprep  # noqa: E402
from dicom_factory import save  # noqa: E402
from test_dicom_pixel_budget import (  # noqa: E402
    DEFLATED,
    J2K_LOSSLESS,
    JPEG_LS,
    _dcmread,
    _edit,
    _encapsulated,
    _rle,
    _series,
    _siz,
    _sof,
)


def _convert(tmp_path, path, *contains, **env) -> str:
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    proc = run_medprep("convert", path, out / "out.nii.gz", env=cli_env(**env))
    line = assert_refused(proc, contains=(str(path), *contains))
    assert leftovers(out) == [], leftovers(out)
    return line


def _deflated_huge(tmp_path):
    ds = _dcmread(_series(tmp_path)[0])
    ds.file_meta.TransferSyntaxUID = DEFLATED
    ds.Rows = ds.Columns = 65535
    return save(ds, tmp_path / "deflated.dcm")


CASES = {
    "rle_65535": (lambda t: _rle(t, Rows=65535, Columns=65535), ("declares 65535 x 65535 x 1 frame", "8 GiB", "RLE expands")),
    "rle_20000": (lambda t: _rle(t, Rows=20000, Columns=20000), ("declares 20000 x 20000", "763 MiB", "RLE expands")),
    "deflated": (_deflated_huge, ("8 GiB", "deflate expands at most 1032:1")),
    "jpeg_ls": (
        lambda t: _encapsulated(t, JPEG_LS, _sof(0xF7, 32, 32), "jls.dcm", Rows=65535, Columns=65535),
        ("8 GiB", "SOF55 marker) is 32 x 32"),
    ),
    "j2k": (
        lambda t: _encapsulated(t, J2K_LOSSLESS, _siz(32, 32), "j2k.dcm", Rows=65535, Columns=65535),
        ("8 GiB", "SIZ marker) is 32 x 32"),
    ),
    "native": (lambda t: _edit(_series(t)[0], t / "native.dcm", Rows=65535, Columns=65535), ("truncated", "2048 bytes")),
    "decoder_failure": (lambda t: _rle(t, Columns=16), ("cannot be decoded as 'RLE Lossless'",)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_convert_refuses_pixel_data_its_header_misdescribes(tmp_path, case):
    build, contains = CASES[case]
    line = _convert(tmp_path, build(tmp_path), *contains)
    assert "pip install" not in line and "no installed decoder" not in line, line
    assert "panicked" not in line


def test_convert_refuses_a_file_over_the_memory_budget(tmp_path):
    line = _convert(tmp_path, _rle(tmp_path), "more than the pixel memory budget of 1 KiB", MEDPREP_MAX_PIXEL_BYTES="1K")
    assert "MEDPREP_MAX_PIXEL_BYTES=" in line


def test_convert_refuses_a_malformed_budget(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    proc = run_medprep("convert", _rle(tmp_path), out / "o.nii.gz", env=cli_env(MEDPREP_MAX_PIXEL_BYTES="lots"))
    assert_refused(proc, contains=("MEDPREP_MAX_PIXEL_BYTES='lots' is not a size in bytes",))
    assert leftovers(out) == []


def test_convert_says_empty_file(tmp_path):
    empty = tmp_path / "empty.dcm"
    empty.write_bytes(b"")
    line = _convert(tmp_path, empty, "empty file (0 bytes)")
    assert "DICM" not in line


@pytest.mark.corpus
def test_convert_refuses_real_jpeg_lossless_declaring_65535_squared(corpus, tmp_path):
    src = sorted((corpus / "dicom2nifti" / "mr_generic_jpeg_lossless" / "dicom").iterdir())[0]
    path = _edit(src, tmp_path / "jpll.dcm", Rows=65535, Columns=65535)
    _convert(tmp_path, path, "declares 65535 x 65535 x 1 frame", "8 GiB", "SOF3 marker) is 256 x 256")
