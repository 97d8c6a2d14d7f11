"""Acceptance 4 of issue 10: a DICOM folder of CT series with SEG and RTSTRUCT objects exports to an
nnU-Net dataset that nnU-Net's own check accepts, with the same label value for the same
structure name in every case — whatever the objects' segment order or spelling."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cli_run import run_medprep
from dicom_factory import new_uid, series_positions, write_stack

from MedPrepLib.geometry import Geometry
from MedPrepLib.imageio import read_image

pytestmark = pytest.mark.pydicom_dependent
hd = pytest.importorskip("highdicom", reason="DICOM SEG needs highdicom (the labels extra; pydicom >= 3)")

ROWS, COLS, SLICES = 20, 28, 12
LIVER = (slice(2, 10), slice(4, 16), slice(4, 16))  # (z, y, x) voxels
TUMOUR = (slice(4, 7), slice(8, 12), slice(18, 25))


def _series(folder: Path, patient: str, study_uid: str) -> list:
    import pydicom

    positions, orientation = series_positions(SLICES, step=2.5)
    write_stack(folder, positions, rows=ROWS, cols=COLS, orientation=orientation, pixel_spacing=(0.7, 0.8),
                study_uid=study_uid, FrameOfReferenceUID=new_uid(), PatientID=patient, PatientName=f"{patient}^Name",
                PatientBirthDate="", PatientSex="", StudyDate="", StudyTime="", ReferringPhysicianName="", StudyID="",
                AccessionNumber="")  # fmt: skip
    datasets = [pydicom.dcmread(f) for f in folder.glob("*.dcm")]
    return sorted(datasets, key=lambda d: float(d.ImagePositionPatient[2]))


def _mask(box) -> np.ndarray:
    m = np.zeros((SLICES, ROWS, COLS), bool)
    m[box] = True
    return m


def _seg(path: Path, sources, names: list[str], boxes=None) -> None:
    from pydicom.sr.codedict import codes

    boxes = boxes or {"liver": LIVER, "tumour": TUMOUR}
    pixels = np.stack([_mask(boxes[n.lower()]) for n in names], axis=-1)
    descriptions = [
        hd.seg.SegmentDescription(k + 1, name, codes.SCT.Tissue, codes.SCT.Liver if name.lower() == "liver" else codes.SCT.Neoplasm,
                                  "MANUAL")  # fmt: skip
        for k, name in enumerate(names)
    ]
    seg = hd.seg.Segmentation(sources, pixels, "BINARY", descriptions, new_uid(), 9, new_uid(), 1, "MedPrep tests",
                              "synthetic", "0", "0")  # fmt: skip
    seg.save_as(path)


def _rtstruct(path: Path, sources, names: list[str]) -> None:
    from pydicom.dataset import Dataset, FileDataset, FileMetaDataset

    geometry = Geometry(
        size=(COLS, ROWS, SLICES), spacing=(0.8, 0.7, 2.5),
        origin=tuple(float(v) for v in sources[0].ImagePositionPatient),
        direction=np.column_stack([np.asarray(sources[0].ImageOrientationPatient[:3], float),
                                   np.asarray(sources[0].ImageOrientationPatient[3:], float), [0, 0, 1]]),
    )  # fmt: skip
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.481.3"
    meta.MediaStorageSOPInstanceUID = new_uid()
    meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
    ds = FileDataset(str(path), Dataset(), file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "RTSTRUCT"
    ds.PatientID, ds.StudyInstanceUID, ds.SeriesInstanceUID = sources[0].PatientID, sources[0].StudyInstanceUID, new_uid()
    series = Dataset()
    series.SeriesInstanceUID = sources[0].SeriesInstanceUID
    study = Dataset()
    study.RTReferencedSeriesSequence = [series]
    frame = Dataset()
    frame.FrameOfReferenceUID = sources[0].FrameOfReferenceUID
    frame.RTReferencedStudySequence = [study]
    ds.ReferencedFrameOfReferenceSequence = [frame]
    boxes = {"liver": LIVER, "tumour": TUMOUR}
    rois, contours = [], []
    for number, name in enumerate(names, start=11):  # ROI numbers that are not positions
        roi = Dataset()
        roi.ROINumber, roi.ROIName = number, name
        rois.append(roi)
        z, y, x = boxes[name.lower()]
        item = Dataset()
        item.ReferencedROINumber = number
        item.ContourSequence = []
        for k in range(z.start, z.stop):
            corners = np.array([[x.start, y.start, k], [x.stop, y.start, k], [x.stop, y.stop, k], [x.start, y.stop, k]], float)
            c = Dataset()
            c.ContourGeometricType = "CLOSED_PLANAR"
            points = geometry.index_to_physical(corners)
            c.NumberOfContourPoints = len(points)
            c.ContourData = [f"{v:.6f}" for v in points.ravel()]
            item.ContourSequence.append(c)
        contours.append(item)
    ds.StructureSetROISequence = rois
    ds.ROIContourSequence = contours[::-1]  # written in the other order: pairing is by ROINumber
    ds.save_as(path)


def test_seg_and_rtstruct_objects_label_an_nnunet_dataset_by_name(tmp_path):
    src = tmp_path / "dicom"
    objects = {"p1": ("SEG", ["Liver", "Tumour"]), "p2": ("SEG", ["tumour", "LIVER"]), "p3": ("RTSTRUCT", ["TUMOUR", "liver"]),
               "p4": ("SEG", ["Liver", "Tumour"])}  # fmt: skip
    for patient, (kind, names) in objects.items():
        sources = _series(src / patient / "ct", patient, new_uid())
        (src / patient / "label").mkdir()
        (_seg if kind == "SEG" else _rtstruct)(src / patient / "label" / "object.dcm", sources, names)
    result = run_medprep("export", src, tmp_path / "raw", "--labels-from", "auto", "--folds", "2",
                         "--key-file", tmp_path / "key.csv")  # fmt: skip
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "raw" / "Dataset500_MedPrep"
    dataset = json.loads((folder / "dataset.json").read_text())
    # the names found, alphabetical ignoring case; one spelling of each (the first case's)
    assert {k.lower(): v for k, v in dataset["labels"].items()} == {"background": 0, "liver": 1, "tumour": 2}
    assert dataset["numTraining"] == 4
    key = dict(row.split(",")[:2] for row in (tmp_path / "key.csv").read_text().splitlines()[1:])
    assert sorted(key.values()) == ["p1", "p2", "p3", "p4"]
    for case in key:
        label = read_image(folder / "labelsTr" / f"{case}.nii.gz").array
        expected = np.zeros_like(label)
        expected[LIVER] = 1
        expected[TUMOUR] = 2
        np.testing.assert_array_equal(label, expected, err_msg=f"{case} ({objects[key[case]][0]})")
    # nnU-Net's own check accepts it
    pytest.importorskip("nnunetv2")
    from test_export_nnunet import verify

    checked = verify(folder, tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_label_map_names_and_an_unmatched_structure_quarantines_under_reject(tmp_path):
    src = tmp_path / "dicom"
    for patient, names in (("p1", ["Liver", "Tumour"]), ("p2", ["Liver", "Tumour"]), ("p3", ["liver"])):
        sources = _series(src / patient / "ct", patient, new_uid())
        (src / patient / "label").mkdir()
        _seg(src / patient / "label" / "object.dcm", sources, names)
    label_map = tmp_path / "map.json"
    label_map.write_text(json.dumps({"labels": {"organ": 1}, "match": {"organ": ["(?i)^liver$"]}, "unmatched": "reject"}))
    result = run_medprep("export", src, tmp_path / "raw", "--labels-from", "seg", "--label-map", label_map, "--folds", "2", "--no-qc")
    assert result.returncode == 4, result.stderr  # two cases hold a tumour the map does not name
    folder = tmp_path / "raw" / "Dataset500_MedPrep"
    reasons = (folder / "quarantine.csv").read_text()
    assert reasons.count("does not name") == 2 and "Tumour" in reasons
    dataset = json.loads((folder / "dataset.json").read_text())
    assert dataset["labels"] == {"background": 0, "organ": 1} and dataset["numTraining"] == 1
    (case,) = [p.name[: -len(".nii.gz")] for p in (folder / "labelsTr").iterdir()]
    assert int((read_image(folder / "labelsTr" / f"{case}.nii.gz").array == 1).sum()) == _mask(LIVER).sum()


def test_overlapping_segments_become_nnunet_regions(tmp_path):
    """Overlap policy "regions": a tumour inside the liver; each voxel gets the innermost label and
    dataset.json the regions nnU-Net's region-based training reads."""
    inner = (slice(4, 7), slice(8, 12), slice(8, 12))  # inside LIVER
    src = tmp_path / "dicom"
    for patient in ("p1", "p2", "p3"):
        sources = _series(src / patient / "ct", patient, new_uid())
        (src / patient / "label").mkdir()
        _seg(src / patient / "label" / "object.dcm", sources, ["Tumour", "Liver"], boxes={"liver": LIVER, "tumour": inner})
    plain = run_medprep("export", src, tmp_path / "refused", "--labels-from", "seg", "--folds", "2", "--no-qc")
    assert plain.returncode == 2 and plain.stderr.count("overlapping structures") == 3  # reject is the default
    label_map = tmp_path / "map.json"
    label_map.write_text(json.dumps({"labels": {"liver": 1, "tumour": 2}, "overlap": "regions", "within": {"tumour": "liver"}}))
    result = run_medprep("export", src, tmp_path / "raw", "--labels-from", "seg", "--label-map", label_map, "--folds", "2", "--no-qc")
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "raw" / "Dataset500_MedPrep"
    text = (folder / "dataset.json").read_text()
    dataset = json.loads(text)
    assert dataset["labels"] == {"background": 0, "liver": [1, 2], "tumour": 2}
    assert dataset["regions_class_order"] == [1, 2]
    assert text.index('"liver"') < text.index('"tumour"')  # nnU-Net reads the key order
    for path in (folder / "labelsTr").iterdir():
        label = read_image(path).array
        expected = np.zeros_like(label)
        expected[LIVER] = 1
        expected[inner] = 2
        np.testing.assert_array_equal(label, expected)
    pytest.importorskip("nnunetv2")
    from test_export_nnunet import verify

    checked = verify(folder, tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_a_seg_whose_series_is_absent_is_reported_never_a_silent_empty_label(tmp_path):
    import shutil

    src = tmp_path / "dicom"
    for patient in ("p1", "p2", "p3"):
        sources = _series(src / patient / "ct", patient, new_uid())
        (src / patient / "label").mkdir()
        _seg(src / patient / "label" / "object.dcm", sources, ["Liver", "Tumour"])
    shutil.rmtree(src / "p3" / "ct")  # p3's SEG now references a series that is not in the source
    result = run_medprep("export", src, tmp_path / "raw", "--labels-from", "seg", "--folds", "2", "--no-qc")
    assert result.returncode == 0, result.stderr
    record = json.loads((tmp_path / "raw" / "Dataset500_MedPrep" / "medprep.json").read_text())
    assert len(record["cases"]) == 2 and all(c["facts"]["label"]["present"] == [1, 2] for c in record["cases"])
    assert {"what": "SEG object 3", "reason": "labels no stack of the source: its referenced series is not in the source"} in [
        {"what": e["what"], "reason": e["reason"]} for e in record["excluded"]
    ]
    scan = run_medprep("scan", src)
    assert "SEG (2 segments" in scan.stdout and "labels no stack here: its referenced series is not in the source" in scan.stdout
