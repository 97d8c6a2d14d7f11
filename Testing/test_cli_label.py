"""``medprep label OBJECT --image SERIES OUTPUT`` on the real SEG and RTSTRUCT corpus (issue 10)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cli_run import run_medprep

from MedPrepLib.imageio import read_image

LABELS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "labels"
pytestmark = [
    pytest.mark.skipif(not LABELS.is_dir(), reason=f"the label corpus is not at {LABELS}"),
    pytest.mark.pydicom_dependent,
]


def _object(case: str) -> Path:
    folder = LABELS / case
    return next(p for sub in ("seg", "rtstruct") for p in sorted((folder / sub).glob("*")) if p.is_file())


def test_a_seg_becomes_the_reference_label_map(tmp_path):
    pytest.importorskip("highdicom")
    case = LABELS / "seg_dcmqi_liver_ct3"
    out = tmp_path / "liver.nii.gz"
    result = run_medprep("label", _object(case.name), "--image", case / "image", out)
    assert result.returncode == 0, result.stderr
    label, reference = read_image(out), read_image(case / "reference" / "segment_1.nii.gz")
    assert label.geometry.isclose(reference.geometry, atol_mm=1e-3)
    np.testing.assert_array_equal(label.array, reference.array)
    sidecar = json.loads((tmp_path / "liver.labels.json").read_text())
    assert sidecar["kind"] == "SEG" and sidecar["table"] == {"background": 0, "Liver": 1}
    assert sidecar["labels"]["Liver"]["segments"] == [{"number": 1, "name": "Liver", "voxels": int(reference.array.sum())}]


def test_an_rtstruct_with_per_segment_masks_and_a_label_map(tmp_path):
    case = LABELS / "rt_rtutils_4roi_missing_slice"
    label_map = tmp_path / "map.json"
    label_map.write_text(json.dumps({"labels": {"first": 1, "second": 2}, "match": {"first": ["(?i)^roi-1$"], "second": ["(?i)^roi-2$"]}}))
    out = tmp_path / "rt.nii.gz"
    result = run_medprep("label", _object(case.name), "--image", case / "image", out, "--label-map", label_map,
                         "--per-segment", tmp_path / "masks")  # fmt: skip
    assert result.returncode == 0, result.stderr
    label = read_image(out).array
    for number, value in ((1, 1), (2, 2)):
        reference = read_image(case / "reference" / f"plastimatch_roi{number}.nii.gz").array
        np.testing.assert_array_equal(label == value, reference.astype(bool))
    assert set(np.unique(label)) == {0, 1, 2}  # ROI-3 and ROI-4 are not in the map: left out, and said
    assert "ROI-3" in result.stdout and "ROI-4" in result.stdout
    assert result.stderr.count("contour at no image slice") == 4  # the z = 70 contours, reported
    segments = json.loads((tmp_path / "masks" / "segments.json").read_text())
    assert [s["number"] for s in segments] == [1, 2, 3, 4] and segments[0]["file"] == "segment_1.nii.gz"
    for entry in segments:
        mask = read_image(tmp_path / "masks" / entry["file"]).array
        reference = read_image(case / "reference" / f"plastimatch_roi{entry['number']}.nii.gz").array
        np.testing.assert_array_equal(mask, reference) and entry["voxels"] == int(reference.sum())
    sidecar = json.loads((tmp_path / "rt.labels.json").read_text())
    assert [u["name"] for u in sidecar["unmatched"]] == ["ROI-3", "ROI-4"]
    # the same map refusing unmatched structures is a one-line error, and nothing is written
    strict = tmp_path / "strict.json"
    strict.write_text(json.dumps({**json.loads(label_map.read_text()), "unmatched": "reject"}))
    refused = run_medprep("label", _object(case.name), "--image", case / "image", tmp_path / "no.nii.gz", "--label-map", strict)
    assert refused.returncode == 2 and "ROI-3" in refused.stderr and len(refused.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "no.nii.gz").exists()
    # no header field but structure names reaches the outputs
    import pydicom

    ds = pydicom.dcmread(_object(case.name), stop_before_pixels=True)
    written = (tmp_path / "rt.labels.json").read_text() + (tmp_path / "masks" / "segments.json").read_text()
    for keyword in ("PatientName", "PatientID", "StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        value = str(ds.get(keyword, "") or "")
        if len(value) >= 4:
            assert value not in written, keyword


def test_outputs_are_never_replaced_without_overwrite(tmp_path):
    case = LABELS / "rt_rtutils_4roi_missing_slice"
    out = tmp_path / "rt.nii.gz"
    assert run_medprep("label", _object(case.name), "--image", case / "image", out).returncode == 0
    again = run_medprep("label", _object(case.name), "--image", case / "image", out)
    assert again.returncode == 2 and "exists" in again.stderr
    assert run_medprep("label", _object(case.name), "--image", case / "image", out, "--overwrite").returncode == 0
    not_an_object = run_medprep("label", case / "image" / sorted(p.name for p in (case / "image").iterdir())[0], "--image", case / "image", tmp_path / "x.nii.gz")
    assert not_an_object.returncode == 2 and "not a segmentation object" in not_an_object.stderr
