"""SEG and RTSTRUCT objects in a scan are paired with the stack they label (issue 10, discovery)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_run import run_medprep
from dicom_factory import new_uid, save, write_ct_series

from MedPrepLib.dicom.label_sources import RTSTRUCT_SOP_CLASS, find_label_sources
from MedPrepLib.sources import find_stacks

LABELS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "labels"


def _rtstruct(path: Path, series_uid: str, frame_uid: str) -> Path:
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.sequence import Sequence

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = RTSTRUCT_SOP_CLASS
    ds.file_meta.MediaStorageSOPInstanceUID = new_uid()
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
    ds.SOPClassUID, ds.SOPInstanceUID = RTSTRUCT_SOP_CLASS, ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = "RTSTRUCT"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = "1.2.826.0.1.3680043.8.498.1", new_uid()
    ds.StructureSetLabel = "planning"
    series = Dataset()
    series.SeriesInstanceUID = series_uid
    study = Dataset()
    study.RTReferencedSeriesSequence = Sequence([series])
    frame = Dataset()
    frame.FrameOfReferenceUID = frame_uid
    frame.RTReferencedStudySequence = Sequence([study])
    ds.ReferencedFrameOfReferenceSequence = Sequence([frame])
    roi = Dataset()
    roi.ROINumber, roi.ROIName = 1, "GTV"
    ds.StructureSetROISequence = Sequence([roi])
    return save(ds, path)


def test_an_rtstruct_is_paired_with_its_series_or_says_it_is_absent(tmp_path):
    import pydicom

    paths = write_ct_series(tmp_path / "ct", 6)
    image = pydicom.dcmread(paths[0], stop_before_pixels=True)
    frame = str(image.get("FrameOfReferenceUID", "")) or new_uid()
    _rtstruct(tmp_path / "rt" / "good.dcm", str(image.SeriesInstanceUID), frame)
    _rtstruct(tmp_path / "rt" / "orphan.dcm", new_uid(), frame)
    found = find_stacks(tmp_path)
    (stack,) = found.stacks
    sources = {Path(s.path).name: s for s in find_label_sources(found.skipped, found.stacks)}
    assert sources["good.dcm"].kind == "RTSTRUCT" and sources["good.dcm"].stack_id == stack.id
    assert sources["good.dcm"].n_segments == 1 and sources["good.dcm"].label == "planning"
    assert sources["orphan.dcm"].stack_id is None and "not in the source" in sources["orphan.dcm"].problem
    # the CLI lists both, names no file without --verbose, and keeps its JSON contract
    result = run_medprep("scan", tmp_path)
    assert result.returncode == 0 and f"labels stack {stack.id}" in result.stdout
    assert "labels no stack here: its referenced series is not in the source" in result.stdout
    assert "orphan.dcm" not in result.stdout and "good.dcm" not in result.stdout
    data = json.loads(run_medprep("scan", tmp_path, "--json").stdout)
    assert {"series", "skipped", "label_sources"} <= set(data)
    assert sorted(Path(s["path"]).name for s in data["label_sources"]) == ["good.dcm", "orphan.dcm"]


@pytest.mark.skipif(not LABELS.is_dir(), reason=f"the label corpus is not at {LABELS}")
def test_every_corpus_object_finds_the_series_it_references():
    import pydicom

    for case in sorted(p for p in LABELS.iterdir() if p.is_dir()):
        found = find_stacks(case)
        (source,) = find_label_sources(found.skipped, found.stacks)
        stack = next(s for s in found.stacks if s.id == source.stack_id)
        obj = pydicom.dcmread(source.path, stop_before_pixels=True)
        if source.kind == "SEG":
            named = {str(i.SeriesInstanceUID) for i in obj.ReferencedSeriesSequence}
        else:
            named = {str(s.SeriesInstanceUID) for f in obj.ReferencedFrameOfReferenceSequence
                     for st in f.RTReferencedStudySequence for s in st.RTReferencedSeriesSequence}  # fmt: skip
        assert stack.series_instance_uid in named, case.name
