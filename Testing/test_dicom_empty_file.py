"""A zero-byte file is an empty file (a failed copy or download), not "no DICM prefix"."""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
from dicom_factory import write_ct_series  # noqa: E402

from MedPrepLib.dicom.fastheader import read_header_fast  # noqa: E402
from MedPrepLib.dicom.header import SkipFile, read_header  # noqa: E402
from MedPrepLib.dicom.scan import scan_files  # noqa: E402
from MedPrepLib.errors import MedPrepError  # noqa: E402
from MedPrepLib.sources import load_path  # noqa: E402


@pytest.mark.parametrize("reader", [read_header, read_header_fast])
def test_empty_file_is_skipped_as_empty(tmp_path, reader):
    empty = tmp_path / "empty.dcm"
    empty.write_bytes(b"")
    with pytest.raises(SkipFile) as info:
        reader(empty)
    assert info.value.reason == "empty" and info.value.skipped.detail == "empty file (0 bytes)"


def test_scan_lists_the_empty_file_beside_the_series(tmp_path):
    paths = write_ct_series(tmp_path, 3)
    (tmp_path / "IM9999.dcm").write_bytes(b"")
    result = scan_files([*paths, tmp_path / "IM9999.dcm"], cache=False)
    assert len(result.stacks) == 1
    [skipped] = result.skipped
    assert (skipped.reason, skipped.detail) == ("empty", "empty file (0 bytes)")
    assert load_path(tmp_path).array.shape[0] == 3


def test_loading_an_empty_file_says_so(tmp_path):
    empty = tmp_path / "empty.dcm"
    empty.write_bytes(b"")
    with pytest.raises(MedPrepError, match=r"empty file \(0 bytes\)"):
        load_path(empty)
