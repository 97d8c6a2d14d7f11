"""logic.exportDataset gives the dataset ``medprep export`` gives, byte for byte (acceptance 3).

* From a Slicer DICOM database file (built from CTK's schema over the demo's DICOM cohort): the
  module's export and the command line's, with the same options, hold the same files with the same
  bytes — ``medprep.json`` included — and nnU-Net's own ``verify_dataset_integrity`` accepts it.
* From scene volumes with labels, loaded through Slicer's storage nodes from files: the same
  dataset as ``medprep export`` of a cohort table listing those files.
* From scene nodes made in memory (a segmentation drawn in the scene): labels through Slicer's
  segmentation logic, a valid nnU-Net dataset, resumable and refused when the nodes change.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import slicer_testing  # noqa: E402  (Testing/ is on sys.path under pytest)

slicer = slicer_testing.require()

REPO = Path(__file__).resolve().parents[1]

import application_stand_ins  # noqa: E402
import slicer_database  # noqa: E402
from cli_run import run_medprep  # noqa: E402
from MedPrepCore import DatasetExport, Segmentations, VolumeNodes  # noqa: E402
from MedPrepCore.ModuleLogic import ModuleLogic  # noqa: E402

from MedPrepLib.errors import CancelledError, InputError, OutputExistsError  # noqa: E402
from MedPrepLib.imageio import read_image, write_image  # noqa: E402
from MedPrepLib.volume import Volume  # noqa: E402

pytestmark = pytest.mark.slicer


@pytest.fixture
def scene():
    s = application_stand_ins.newScene()
    yield s
    s.Clear(1)


def tree(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def assertSameDataset(a: Path, b: Path) -> None:
    ta, tb = tree(a), tree(b)
    assert sorted(ta) == sorted(tb)
    different = [name for name in ta if ta[name] != tb[name]]
    assert not different, f"files differ: {different}"


def verifyWithNnunet(dataset: Path) -> None:
    pytest.importorskip("nnunetv2", reason="needs nnU-Net v2 (test-consumers extra)")
    from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity

    verify_dataset_integrity(str(dataset), num_processes=1)


@pytest.fixture(scope="module")
def demoDatabase(tmp_path_factory):
    """The demo's DICOM cohort (5 patients, 6 studies, a localizer, a dose report, a tilted
    series), its label files and label map, indexed into a Slicer database."""
    from MedPrepLib.demo import write_demo_sources

    root = tmp_path_factory.mktemp("demo")
    write_demo_sources(root / "src")
    series = slicer_database.index_folder(root / "src" / "dicom", root / "db")
    return root, series


def test_export_from_a_database_file_is_byte_identical_to_medprep_export(demoDatabase, tmp_path):
    root, _ = demoDatabase
    options = dict(labelsDir=root / "src" / "labels", labelMap=root / "src" / "label_map.json", datasetName="Slicer",
                   folds=2, keyFile=tmp_path / "key-module.csv")  # fmt: skip
    report = ModuleLogic().exportDataset(tmp_path / "module", source=root / "db", **options)
    assert report.exit_code == 0 and len(report.exported) == 6 and report.report.is_file()
    argv = DatasetExport.exportCommand(root / "db", tmp_path / "cli", **{**options, "keyFile": tmp_path / "key-cli.csv"})
    result = run_medprep("export", *argv, timeout=600)
    assert result.returncode == 0, result.stderr
    assertSameDataset(report.dataset_folder, tmp_path / "cli" / report.dataset_folder.name)
    assert (tmp_path / "key-module.csv").read_bytes() == (tmp_path / "key-cli.csv").read_bytes()
    record = json.loads((report.dataset_folder / "medprep.json").read_text())
    assert record["command"].startswith("medprep export <SOURCE> <OUT> --labels <LABELS>")
    verifyWithNnunet(report.dataset_folder)


def test_panel_default_labels_from_dicom_objects_without_any_is_an_inference_set(demoDatabase, tmp_path):
    """The panel's DICOM export asks for SEG/RTSTRUCT labels (labelsFrom "auto"); a database
    without such objects still exports, every case unlabelled in the test part, as the CLI does."""
    root, _ = demoDatabase
    report = ModuleLogic().exportDataset(tmp_path / "module", source=root / "db", labelsFrom="auto", qc=False)
    assert report.exit_code == 0 and len(report.exported) == 6
    assert len(list((report.dataset_folder / "imagesTs").glob("*.nii.gz"))) == 6
    assert any("no auto label object" in w for w in report.warnings)
    argv = DatasetExport.exportCommand(root / "db", tmp_path / "cli", labelsFrom="auto", qc=False)
    assert argv[2:] == ["--labels-from", "auto", "--no-qc"]
    result = run_medprep("export", *argv, timeout=600)
    assert result.returncode == 0, result.stderr
    assertSameDataset(report.dataset_folder, tmp_path / "cli" / report.dataset_folder.name)


def test_database_tree_lists_every_series_with_its_verdict(demoDatabase):
    root, series = demoDatabase
    patients = ModuleLogic().dicomDatabaseTree(root / "db")
    rows = [s for p in patients for st in p.studies for s in st.series]
    assert {r.seriesInstanceUid for r in rows} == set(series)
    assert len(patients) == 5 and sum(len(p.studies) for p in patients) == 6
    loadable = [r for r in rows if r.loadable]
    assert len(loadable) == 6 and all(r.stackId and r.modality == "CT" and r.slices >= 10 and not r.reason for r in loadable)
    skipped = sorted(r.reason for r in rows if not r.loadable)
    assert len(skipped) == 2 and any("localizer" in r for r in skipped) and any("secondary capture" in r for r in skipped)
    assert all(p.name for p in patients)  # names are shown in the panel (never written)


def test_ticked_series_only(demoDatabase, tmp_path):
    root, series = demoDatabase
    pytest.importorskip("MedPrepLib.export.stack_selection")
    from MedPrepLib.export.stack_selection import StackSelection

    if "series_uids" not in StackSelection.__dataclass_fields__:
        pytest.skip("StackSelection has no series_uids yet")
    rows = [s for p in ModuleLogic().dicomDatabaseTree(root / "db") for st in p.studies for s in st.series if s.loadable]
    ticked = [rows[0].seriesInstanceUid, rows[3].seriesInstanceUid]
    options = dict(labelsDir=root / "src" / "labels", labelMap=root / "src" / "label_map.json", folds=2, seriesUids=ticked)
    report = ModuleLogic().exportDataset(tmp_path / "module", source=root / "db", **options)
    assert len(report.exported) == 2
    result = run_medprep("export", *DatasetExport.exportCommand(root / "db", tmp_path / "cli", **options), timeout=600)
    assert result.returncode == 0, result.stderr
    assertSameDataset(report.dataset_folder, tmp_path / "cli" / report.dataset_folder.name)
    for name, data in tree(report.dataset_folder).items():
        for uid in ticked:
            assert uid.encode() not in data, f"{name} holds a chosen SeriesInstanceUID"


# --- scene volumes -----------------------------------------------------------------------------


def writeCases(folder: Path, n: int = 3) -> list[tuple[Path, Path]]:
    """n CT-like images (int16, oblique grid) with label maps (lungs 1, nodule 2) as NRRD files."""
    from MedPrepCore import SampleVolumes

    base = SampleVolumes.obliqueVolume(np.int16).geometry
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for k in range(n):
        rng = np.random.default_rng(k)
        shape = (14 + k, 24, 22)
        image = Volume(rng.integers(-1000, 400, shape).astype(np.int16), spacing=(0.8, 0.8, 2.0 + 0.5 * k),
                       origin=base.origin, direction=base.direction)  # fmt: skip
        label = np.zeros(shape, np.uint8)
        label[3:10, 4:18, 3:16] = 1
        label[5:8, 8 + k : 12 + k, 6:10] = 2
        imagePath = Path(write_image(image, folder / f"scan{k}.nrrd"))
        labelPath = Path(write_image(Volume(label, geometry=image.geometry), folder / f"scan{k}_label.nrrd"))
        out.append((imagePath, labelPath))
    return out


loadWithSlicer = slicer_testing.load_with_slicer


def test_scene_volumes_loaded_from_files_export_as_those_files(scene, tmp_path):
    cases = writeCases(tmp_path / "files")
    pairs = [(loadWithSlicer(scene, i), loadWithSlicer(scene, lab, labelmap=True)) for i, lab in cases]
    assert all(DatasetExport.fileOfNode(n) for pair in pairs for n in pair)
    report = ModuleLogic(scene).exportDataset(tmp_path / "module", volumePairs=pairs, folds=2, channelName="CT")
    assert report.exit_code == 0 and len(report.exported) == 3
    table = tmp_path / "cohort.json"
    table.write_text(json.dumps([{"image": str(i), "label": str(lab)} for i, lab in cases]))
    result = run_medprep("export", table, tmp_path / "cli", "--folds", "2", "--channel-name", "CT", timeout=600)
    assert result.returncode == 0, result.stderr
    assertSameDataset(report.dataset_folder, tmp_path / "cli" / report.dataset_folder.name)
    verifyWithNnunet(report.dataset_folder)


def segmentationFromLabel(scene, volumeNode, label: np.ndarray, names: dict[int, str]):
    Segmentations.registerConverterRules()
    grid = VolumeNodes.volumeFromNode(volumeNode).geometry
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "drawn")
    node.SetReferenceImageGeometryParameterFromVolumeNode(volumeNode)
    for value, name in names.items():
        tmp = VolumeNodes.nodeFromVolume(scene, Volume((label == value).astype(np.uint8), geometry=grid), "t", labelmap=True)
        assert Segmentations._segmentationsLogic(scene).ImportLabelmapToSegmentationNode(tmp, node)
        segmentation = node.GetSegmentation()
        segmentation.GetNthSegment(segmentation.GetNumberOfSegments() - 1).SetName(name)
        scene.RemoveNode(tmp)
    return node


def test_scene_segmentations_drawn_in_memory_export_through_slicers_logic(scene, tmp_path):
    cases = writeCases(tmp_path / "files")
    pairs = []
    for k, (imagePath, labelPath) in enumerate(cases):
        volumeNode = VolumeNodes.nodeFromVolume(scene, read_image(imagePath), f"scan {k}")  # never saved
        label = read_image(labelPath).array
        names = {1: "lungs", 2: "nodule"} if k % 2 == 0 else {2: "Nodule", 1: "Lungs"}  # order and case differ
        pairs.append((volumeNode, segmentationFromLabel(scene, volumeNode, label, names)))
    assert DatasetExport.fileOfNode(pairs[0][0]) is None
    logic = ModuleLogic(scene)
    with pytest.raises(InputError, match="workers=1"):
        logic.exportDataset(tmp_path / "ds", volumePairs=pairs, workers=2)
    seen = []
    report = logic.exportDataset(tmp_path / "ds", volumePairs=pairs, folds=2, channelName="CT",
                                 progressCallback=lambda label, f: seen.append(f) and False)  # fmt: skip
    assert report.exit_code == 0 and len(report.exported) == 3 and seen[-1] == 1.0
    folder = report.dataset_folder
    dataset = json.loads((folder / "dataset.json").read_text())
    assert dataset["labels"] == {"background": 0, "lungs": 1, "nodule": 2}
    wanted = sorted(read_image(lab).array.tobytes() for _, lab in cases)
    got = sorted(read_image(p).array.astype(np.uint8).tobytes() for p in sorted((folder / "labelsTr").glob("*.nii.gz")))
    assert got == wanted  # Slicer's logic gave back exactly the drawn labels (lungs 1, nodule 2)
    for text in [p.read_text(errors="ignore") for p in folder.rglob("*.json")]:
        assert "scan 0" not in text and str(tmp_path) not in text  # node names and paths stay out
    verifyWithNnunet(folder)
    # the same call again: already complete; a changed segmentation: refused without overwrite
    again = logic.exportDataset(tmp_path / "ds", volumePairs=pairs, folds=2, channelName="CT")
    assert again.already_complete
    segmentation = pairs[0][1].GetSegmentation()
    segmentation.RemoveSegment(segmentation.GetNthSegmentID(1))
    with pytest.raises(OutputExistsError):
        logic.exportDataset(tmp_path / "ds", volumePairs=pairs, folds=2, channelName="CT")


def test_cancelled_scene_export_resumes_to_the_same_dataset(scene, tmp_path):
    cases = writeCases(tmp_path / "files", n=4)
    pairs = [(VolumeNodes.nodeFromVolume(scene, read_image(i), f"v{k}"),
              VolumeNodes.nodeFromVolume(scene, read_image(lab), f"l{k}", labelmap=True)) for k, (i, lab) in enumerate(cases)]  # fmt: skip
    logic = ModuleLogic(scene)
    with pytest.raises(CancelledError):
        logic.exportDataset(tmp_path / "a", volumePairs=pairs, folds=2, progressCallback=lambda label, f: f > 0.5)
    resumed = logic.exportDataset(tmp_path / "a", volumePairs=pairs, folds=2)
    assert resumed.resumed
    whole = logic.exportDataset(tmp_path / "b", volumePairs=pairs, folds=2)
    assertSameDataset(resumed.dataset_folder, whole.dataset_folder)


def test_bad_arguments_are_medprep_errors(scene, tmp_path):
    logic = ModuleLogic(scene)
    with pytest.raises(InputError, match="exactly one"):
        logic.exportDataset(tmp_path / "x")
    with pytest.raises(InputError, match="does not exist"):
        logic.exportDataset(tmp_path / "x", source=tmp_path / "missing")
    with pytest.raises(InputError, match="no volumes"):
        logic.exportDataset(tmp_path / "x", volumePairs=[])
    image = VolumeNodes.nodeFromVolume(scene, Volume(np.zeros((3, 4, 5), np.int16)), "v")
    label = VolumeNodes.nodeFromVolume(scene, Volume(np.zeros((3, 4, 5), np.uint8)), "l", labelmap=True)
    with pytest.raises(InputError, match="image volume"):
        logic.exportDataset(tmp_path / "x", volumePairs=[(label, None)])
    with pytest.raises(InputError, match="two pairs"):
        logic.exportDataset(tmp_path / "x", volumePairs=[(image, label), (image, None)])
    with pytest.raises(InputError, match="DICOM source"):
        logic.exportDataset(tmp_path / "x", volumePairs=[(image, label)], labelsDir=tmp_path)


def test_scene_segmentations_loaded_from_seg_nrrd_export_as_those_files(scene, tmp_path):
    """Segmentations saved by Slicer's own writer and loaded again: the nodes are their files, so
    the dataset is ``medprep export`` of a cohort table of the images and ``.seg.nrrd`` files."""
    pytest.importorskip("slicerio", reason="needs slicerio (pip install 'medprep[labels]')")
    cases = writeCases(tmp_path / "files")
    rows = []
    for k, (imagePath, labelPath) in enumerate(cases):
        volumeNode = loadWithSlicer(scene, imagePath)
        names = {1: "lungs", 2: "nodule"} if k % 2 == 0 else {2: "nodule", 1: "lungs"}
        drawn = segmentationFromLabel(scene, volumeNode, read_image(labelPath).array, names)
        segPath = imagePath.with_name(imagePath.name.replace(".nrrd", ".seg.nrrd"))
        writer = scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
        writer.SetFileName(str(segPath))
        assert writer.WriteData(drawn) == 1
        rows.append({"image": str(imagePath), "label": str(segPath)})
    scene.Clear(0)
    pairs = []
    for row in rows:
        volumeNode = loadWithSlicer(scene, Path(row["image"]))
        segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
        reader = scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
        reader.SetFileName(row["label"])
        assert reader.ReadData(segmentation) == 1
        segmentation.SetAndObserveStorageNodeID(reader.GetID())
        pairs.append((volumeNode, segmentation))
    assert all(DatasetExport.fileOfNode(n) for pair in pairs for n in pair)
    report = ModuleLogic(scene).exportDataset(tmp_path / "module", volumePairs=pairs, folds=2, channelName="CT")
    assert report.exit_code == 0 and len(report.exported) == 3
    table = tmp_path / "cohort.json"
    table.write_text(json.dumps(rows))
    result = run_medprep("export", table, tmp_path / "cli", "--folds", "2", "--channel-name", "CT", timeout=600)
    assert result.returncode == 0, result.stderr
    assertSameDataset(report.dataset_folder, tmp_path / "cli" / report.dataset_folder.name)
    assert json.loads((report.dataset_folder / "dataset.json").read_text())["labels"] == {"background": 0, "lungs": 1, "nodule": 2}
    verifyWithNnunet(report.dataset_folder)
