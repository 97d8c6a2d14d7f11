"""File and folder names (which often carry the patient's name) never reach a message or metadata.

A series lies in ``input/Doe_Jane/`` as ``Doe_Jane_001.dcm`` ...: warnings, metadata and
provenance (written next to outputs) and error messages name slices ("slice 3 of 8 (instance
6)"); the file names are only in an error's verbose-only ``detail`` and in DEBUG log records.
The input the user gave (``input/``) may be named: it is their own path on their console.
"""

from __future__ import annotations

import json
import logging
import shutil

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")

from dicom_factory import expected_stored, new_uid, save, series_positions, write_slice  # noqa: E402

from MedPrepLib.dicom.load import load_stack  # noqa: E402
from MedPrepLib.dicom.scan import scan  # noqa: E402
from MedPrepLib.errors import DicomError, GeometryError, MedPrepError  # noqa: E402
from MedPrepLib.sources import load_files, load_path  # noqa: E402

pytestmark = pytest.mark.pydicom_dependent

ROWS, COLS = 10, 12
N = 8


def _clean(text: str) -> bool:
    return "Doe" not in text and "Jane" not in text  # case matters: "does" is fine


def _series(tmp_path, *, tilt_deg=10.0, gap_after=3):
    """input/Doe_Jane/Doe_Jane_001.dcm ... (tilted, one slice missing after ``gap_after``), plus
    an exact duplicate under a new SOPInstanceUID, a byte copy (same SOPInstanceUID) and a
    truncated file. Returns (input folder, the slice files in slice order)."""
    root = tmp_path / "input"
    folder = root / "Doe_Jane"
    uid = new_uid()
    positions, orientation = series_positions(N, step=2.5, tilt_deg=tilt_deg, gap_after=gap_after)
    paths = []
    for k, p in enumerate(positions):
        paths.append(
            write_slice(
                folder / f"Doe_Jane_{N - k:03d}.dcm",  # names in reverse slice order
                expected_stored(k, ROWS, COLS),
                position=p,
                orientation=orientation,
                series_uid=uid,
                instance_number=k + 1,
            )
        )
    ds = pydicom.dcmread(paths[5])
    ds.SOPInstanceUID = new_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.InstanceNumber = 40
    save(ds, folder / "Doe_Jane_dup.dcm")
    shutil.copy(paths[2], folder / "Doe_Jane_copy.dcm")
    cut = folder / "Doe_Jane_cut.dcm"
    shutil.copy(paths[1], cut)
    ds = pydicom.dcmread(cut)
    ds.SOPInstanceUID = new_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    save(ds, cut)
    cut.write_bytes(cut.read_bytes()[:-50])
    return root, paths


def test_warnings_metadata_and_provenance_name_slices_not_files(tmp_path, caplog):
    root, paths = _series(tmp_path)
    result = scan(root, cache=False)
    reasons = {s.reason for s in result.skipped}
    assert {"truncated", "duplicate_sop_instance"} <= reasons
    # scan is console output of a one-input command: a skipped file names itself, no other file
    for s in result.skipped:
        assert _clean(s.detail), s.detail
    with caplog.at_level(logging.DEBUG, logger="MedPrepLib.dicom"):
        volume = load_path(root)
    warnings = volume.metadata["warnings"]
    text = " ".join(warnings)
    assert "gantry tilt of 10.00 degrees" in text and "uneven slice spacing" in text
    assert "from slice 1 of 8 (instance 1) to slice 8 of 8 (instance 8)" in text
    assert "between slice 4 of 8 (instance 4) and slice 5 of 8 (instance 5)" in text
    assert "dropped exact duplicate slice (instance 40): same position and pixels as slice 6 of 8 (instance 6)" in text
    assert all(_clean(w) for w in warnings), warnings
    written = json.dumps(volume.metadata)
    assert _clean(written), "metadata (provenance is written next to outputs) names a file"
    instances = volume.metadata["provenance"]["source_instances"]
    assert len(instances) == N and all(set(i) == {"sop_instance_uid"} for i in instances)
    # the file names are in DEBUG records only (shown with --verbose)
    debug = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.DEBUG)
    assert "Doe_Jane_005.dcm" in debug and "Doe_Jane_004.dcm" in debug  # the gap's neighbours
    assert "Doe_Jane_dup.dcm" in debug and "Doe_Jane_003.dcm" in debug  # the duplicate and its twin
    for r in caplog.records:
        if r.levelno > logging.DEBUG:
            assert _clean(r.getMessage()), r.getMessage()


def _refused(call, error=MedPrepError) -> MedPrepError:
    with pytest.raises(error) as exc:
        call()
    assert _clean(str(exc.value)), str(exc.value)
    assert _clean(exc.value.one_line(verbose=False))
    return exc.value


def test_errors_name_slices_and_the_input_and_keep_files_for_verbose(tmp_path):
    root, paths = _series(tmp_path)
    exc = _refused(lambda: load_path(root, geometry_policy="reject"), GeometryError)
    assert exc.path == str(root)  # where the user pointed, not the patient-named folder inside
    assert "slice 4 of 8 (instance 4)" in exc.message
    assert "Doe_Jane_005.dcm" in exc.detail and "Doe_Jane_005.dcm" in exc.one_line(verbose=True)
    # a file list given explicitly: the same
    files = sorted(str(p) for p in (root / "Doe_Jane").iterdir())
    exc = _refused(lambda: load_files(files, geometry_policy="reject", where=str(root)), GeometryError)
    assert "Doe_Jane_" in exc.detail


def test_same_position_different_pixels_names_slices(tmp_path):
    root, paths = _series(tmp_path, tilt_deg=0.0, gap_after=None)
    ds = pydicom.dcmread(root / "Doe_Jane" / "Doe_Jane_dup.dcm")
    ds.PixelData = expected_stored(30, ROWS, COLS).astype(np.uint16).tobytes()
    save(ds, root / "Doe_Jane" / "Doe_Jane_dup.dcm")
    exc = _refused(lambda: load_path(root), DicomError)
    assert "slice 6 of 8 (instance 6) and instance 40" in exc.message
    assert exc.detail == "Doe_Jane_003.dcm, Doe_Jane_dup.dcm"


def test_missing_position_names_the_instance(tmp_path):
    root, paths = _series(tmp_path, tilt_deg=0.0, gap_after=None)
    ds = pydicom.dcmread(paths[2])
    del ds.ImagePositionPatient
    save(ds, paths[2])
    exc = _refused(lambda: load_path(root), GeometryError)
    assert "ImagePositionPatient missing in 1 of 9 slice(s): instance 3" in exc.message
    assert exc.detail == "instance 3: Doe_Jane_006.dcm"


def test_pixel_read_errors_are_reworded_in_slice_terms(tmp_path):
    root, paths = _series(tmp_path, tilt_deg=0.0, gap_after=None)
    stacks = scan(root, cache=False).stacks
    (stack,) = stacks
    # the file changes after the scan: its pixel data now ends early
    data = paths[4].read_bytes()
    paths[4].write_bytes(data[:-60])
    exc = _refused(lambda: load_stack(stack, where=str(root)), DicomError)
    assert exc.path == str(root)
    assert exc.message.startswith("slice 5 of 8 (instance 5): ")
    assert "Doe_Jane_004.dcm" in exc.detail
    # without a `where`, the stack id is the place
    exc = _refused(lambda: load_stack(stack), DicomError)
    assert exc.path == f"stack {stack.id}"
