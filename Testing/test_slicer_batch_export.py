"""The Slicer batch export scripts (MedPrep/Batch/), run as Slicer would run them.

``export.py`` is ``medprep export`` inside Slicer: its options are the CLI's (SOURCE and OUT as
``--db`` and ``--out``), its dataset is byte for byte the CLI's (every file, ``medprep.json``
included), and a failure is one line on stderr and a non-zero exit. ``export_scene.py`` exports
the segmentations of a saved scene (.mrb) as a labelled dataset that nnU-Net accepts.

Like Testing/test_slicer_batch_smoke.py, each script runs in a fresh Python process on the
slicer-core wheel with the application-only parts stood in (Testing/Slicer/application_stand_ins.py:
``slicer.app``, ``slicer.util.exit``, ``slicer.util.loadScene`` through ``vtkMRMLScene.ReadFromMRB``,
``slicer.dicomDatabase``), from a working directory outside the checkout, with ``sys.argv`` as
Slicer sets it for ``--python-script SCRIPT -- ARGS``.
"""

from __future__ import annotations

import json
import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_run import assert_refused, cli_env, run_medprep
from export_data import leftovers, tree_digest

REPO = Path(__file__).resolve().parents[1]
BATCH = REPO / "MedPrep" / "Batch"
EXPORT = BATCH / "export.py"
EXPORT_SCENE = BATCH / "export_scene.py"
STAND_INS = REPO / "Testing" / "Slicer"

pytestmark = [pytest.mark.slicer, pytest.mark.pydicom_dependent]

BOOTSTRAP = """
import runpy, sys
sys.path.insert(0, {stand_ins!r})
import application_stand_ins
scene = application_stand_ins.install({tmp!r})
if {database!r} is not None:
    import slicer
    slicer.dicomDatabase = application_stand_ins.dicomDatabase({database!r})
sys.argv = [{script!r}, *{args!r}]
runpy.run_path({script!r}, run_name="__main__")
print("the script returned without calling slicer.util.exit")
sys.exit(3)
"""


def run_batch(script: Path, *args, tmp_path: Path, database: Path | None = None, dashes: bool = True):
    """``Slicer --no-main-window --python-script SCRIPT -- ARGS``, on slicer-core with stand-ins."""
    pytest.importorskip("slicer", reason="needs the slicer-core wheel (pip install 'medprep[slicer]')")
    cwd = tmp_path / "cwd"
    cwd.mkdir(exist_ok=True)
    argv = (["--"] if dashes else []) + [str(a) for a in args]
    code = BOOTSTRAP.format(
        stand_ins=str(STAND_INS), tmp=str(tmp_path), script=str(script), args=argv,
        database=None if database is None else str(database),
    )  # fmt: skip
    env = dict(os.environ, MEDPREP_CACHE="off")
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, env=env, timeout=600,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip


VTK_LOG_LINE = re.compile(r"\.cxx:\d+\s+(ERR|WARN)\|")


def assert_refused_past_vtk(result, **expected) -> str:
    """:func:`cli_run.assert_refused`, leaving out what VTK's logger wrote while Slicer tried to
    read the file (Slicer shows those lines too; MedPrep's part is still one line)."""
    kept = "\n".join(line for line in result.stderr.splitlines() if not VTK_LOG_LINE.search(line))
    return assert_refused(subprocess.CompletedProcess(result.args, result.returncode, result.stdout, kept), **expected)


def load_script(script: Path) -> dict:
    """The script's functions, without running it (it runs only as ``__main__``)."""
    if str(BATCH) not in sys.path:
        sys.path.append(str(BATCH))
    return runpy.run_path(str(script), run_name="medprep_batch_under_test")


# --- the options are medprep export's ----------------------------------------------------------


def _actions(parser) -> dict[str, dict]:
    """{first option string or dest: what defines the argument} of an argparse parser."""
    out = {}
    for action in parser._actions:
        key = action.option_strings[-1] if action.option_strings else action.dest
        out[key] = {
            "options": tuple(action.option_strings), "dest": action.dest, "default": action.default,
            "type": action.type, "choices": tuple(action.choices) if action.choices else None,
            "nargs": action.nargs, "const": action.const, "kind": type(action).__name__,
        }  # fmt: skip
    return out


def cli_parsers():
    from MedPrepLib.cli import build_parser

    top = build_parser()
    (sub,) = [a for a in top._actions if a.choices and "export" in a.choices]
    return top, sub.choices["export"]


def test_the_options_are_medprep_exports_with_source_and_out_as_options():
    top, export = cli_parsers()
    batch = load_script(EXPORT)["buildParser"]()
    cli, ours = _actions(export), _actions(batch)
    assert cli.pop("source")["dest"] == "source" and cli.pop("out")["dest"] == "out"
    db, out = ours.pop("--db"), ours.pop("--out")
    assert (db["options"], db["dest"], db["default"]) == (("--db",), "source", None)
    assert (out["options"], out["dest"], out["default"]) == (("--out",), "out", None)
    assert [a.required for a in batch._actions if a.dest in ("source", "out")] == [False, True]
    verbose = _actions(top)["--verbose"]  # medprep --verbose export ...
    assert ours.pop("--verbose") == verbose
    assert ours == cli  # every other option: same strings, defaults, types, choices
    assert len(cli) > 30  # not a vacuous comparison
    helps = {a.dest: a.help for a in export._actions}
    assert all(a.help.startswith(helps[a.dest]) for a in batch._actions if a.dest in helps)


def test_the_cli_argument_list_is_the_scripts_without_db_out_and_verbose():
    script = load_script(EXPORT)
    parser = script["buildParser"]()
    args = ["--format", "nnunet", "--db=/data/db", "--dataset-name", "--out", "-v", "--ou", "/o", "--seed", "-1",
            "--overwrite", "--db", "/x", "--min-sl", "3", "--verbose"]  # fmt: skip
    assert script["exportArguments"](parser, args) == [
        "--format", "nnunet", "--dataset-name", "--out", "--seed", "-1", "--overwrite", "--min-sl", "3"
    ]  # fmt: skip
    assert script["exportArguments"](parser, []) == []


# --- the dataset is medprep export's -----------------------------------------------------------


@pytest.fixture(scope="module")
def slicer_database(tmp_path_factory):
    """A Slicer DICOM database (ctkDICOM.sql of CTK's schema, two CT series) and a label per series."""
    pytest.importorskip("slicer", reason="needs the slicer-core wheel (pip install 'medprep[slicer]')")
    from test_dicom_slicerdb import build_database

    from MedPrepLib.dicom.load import load_stack
    from MedPrepLib.imageio import write_image
    from MedPrepLib.sources import find_stacks
    from MedPrepLib.volume import Volume

    root = tmp_path_factory.mktemp("slicerdb")
    build_database(root / "db", "0.8.1", absolute=False)
    labels = root / "labels"
    labels.mkdir()
    for stack in find_stacks(root / "db").stacks:
        volume = load_stack(stack)
        label = np.zeros(volume.shape, np.uint8)
        label[:, 2:6, 2:6] = 1
        write_image(Volume(label, volume.geometry), labels / f"{stack.series_instance_uid}.nii.gz")
    return root / "db", labels


def test_the_dataset_is_byte_for_byte_medprep_exports(slicer_database, tmp_path):
    db, labels = slicer_database
    options = ["--format", "nnunet", "--min-slices", "3", "--labels", labels, "--folds", "2",
               "--dataset-name", "Chest", "--workers", "1"]  # fmt: skip
    cli = run_medprep("export", db, tmp_path / "cli", *options, "--key-file", tmp_path / "cli.csv", env=cli_env())
    assert cli.returncode == 0, cli.stderr
    expected = tree_digest(tmp_path / "cli")
    assert "Dataset500_Chest/medprep.json" in expected and "Dataset500_Chest/qc/report.html" in expected

    batch = run_batch(EXPORT, "--db", db, "--out", tmp_path / "batch", *options, "--key-file", tmp_path / "batch.csv",
                      tmp_path=tmp_path)  # fmt: skip
    assert batch.returncode == 0, batch.stdout[-2000:] + batch.stderr[-3000:]
    assert tree_digest(tmp_path / "batch") == expected  # every file, medprep.json included
    assert (tmp_path / "batch.csv").read_bytes() == (tmp_path / "cli.csv").read_bytes()
    record = json.loads((tmp_path / "batch" / "Dataset500_Chest" / "medprep.json").read_text())
    assert record["command"].startswith(
        "medprep export <SOURCE> <OUT> --format nnunet --min-slices 3 --labels <LABELS>"
    )
    assert str(db) not in record["command"] and "--workers" not in record["command"]
    assert "2 case(s) exported" in batch.stdout and "medprep: " in batch.stdout  # the summary and a line per step
    assert batch.stderr.strip() == cli.stderr.strip()

    # without --db, the running Slicer's DICOM database; options before --out, no "--" kept by Slicer
    default = run_batch(EXPORT, "--out", tmp_path / "default", *options, "--key-file", tmp_path / "default.csv",
                        tmp_path=tmp_path, database=db, dashes=False)  # fmt: skip
    assert default.returncode == 0, default.stdout[-2000:] + default.stderr[-3000:]
    assert tree_digest(tmp_path / "default") == expected


# --- failures: one line, no traceback, non-zero ------------------------------------------------


def test_a_missing_database_folder_is_one_line_and_exit_2(tmp_path):
    result = run_batch(EXPORT, "--db", tmp_path / "absent", "--out", tmp_path / "out", tmp_path=tmp_path)
    assert_refused(result, exit_code=2, contains="does not exist")
    assert not (tmp_path / "out").exists()


def test_no_database_at_all_is_one_line_and_exit_2(tmp_path):
    result = run_batch(EXPORT, "--out", tmp_path / "out", tmp_path=tmp_path)
    assert_refused(result, exit_code=2, contains="--db")


def test_usage_errors_are_one_line_and_exit_2(tmp_path):
    assert_refused(run_batch(EXPORT, "--db", tmp_path, tmp_path=tmp_path), contains="--out")
    assert_refused(run_batch(EXPORT, "--db", tmp_path, "--out", tmp_path, "--frmat", "x", tmp_path=tmp_path),
                   contains="unrecognized arguments")  # fmt: skip
    assert_refused(run_batch(EXPORT, "--db", tmp_path, "--out", tmp_path, "--folds", "x", tmp_path=tmp_path),
                   contains="--folds")  # fmt: skip


def test_help_exits_zero(tmp_path):
    result = run_batch(EXPORT, "--help", tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "--db DIR" in result.stdout and "--label-map" in result.stdout and "--out OUT" in result.stdout


def test_an_existing_dataset_without_overwrite_is_refused(slicer_database, tmp_path):
    db, labels = slicer_database
    options = ["--db", db, "--out", tmp_path / "out", "--format", "nifti", "--min-slices", "3", "--labels", labels,
               "--no-qc"]  # fmt: skip
    first = run_batch(EXPORT, *options, "--folds", "2", tmp_path=tmp_path)
    assert first.returncode == 0, first.stderr
    before = tree_digest(tmp_path / "out")
    other = run_batch(EXPORT, *options, "--folds", "3", tmp_path=tmp_path)
    line = assert_refused(other, exit_code=2)
    assert "--overwrite" in line
    assert tree_digest(tmp_path / "out") == before
    assert leftovers(tmp_path / "out") == []


# --- export_scene.py: the segmentations of a saved scene -----------------------------------------

SHAPE = (10, 24, 28)  # (z, y, x)


def _scene_modules():
    pytest.importorskip("slicer", reason="needs the slicer-core wheel (pip install 'medprep[slicer]')")
    for path in (str(REPO / "MedPrep"), str(STAND_INS)):
        if path not in sys.path:
            sys.path.insert(0, path)
    import application_stand_ins
    from MedPrepCore import Segmentations, VolumeNodes

    if not hasattr(Segmentations, "labelVolumeFromSegmentation"):
        pytest.skip("MedPrepCore.Segmentations has no labelVolumeFromSegmentation yet")
    return application_stand_ins, Segmentations, VolumeNodes


def _ct(seed: int):
    from MedPrepLib.geometry import Geometry
    from MedPrepLib.volume import Volume

    angle = np.deg2rad(10 + seed)
    direction = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    geometry = Geometry(
        size=SHAPE[::-1], spacing=(0.8, 0.9, 2.5), origin=(-20.0 + seed, 10.0, -100.0), direction=direction
    )
    rng = np.random.default_rng(seed)
    array = rng.integers(-200, 200, SHAPE).astype(np.int16)
    array[:, :2] = -1000  # some air
    return Volume(array, geometry=geometry)


def _masks(seed: int) -> dict[str, np.ndarray]:
    liver = np.zeros(SHAPE, bool)
    liver[2:8, 4 + seed : 14, 3:15] = True
    tumour = np.zeros(SHAPE, bool)
    tumour[3:6, 16:20, 18 : 24 - seed] = True
    return {"tumour": tumour, "liver": liver}  # not alphabetical: names, not order, give the values


def save_scene(path: Path, cases: int = 2, *, reference: bool = True, extra_volume: bool = False) -> dict:
    """A scene of ``cases`` CT volumes, each with a segmentation (liver, tumour) drawn on it,
    saved with Slicer's own storage nodes (.nrrd, .seg.nrrd) into a .mrb bundle. Returns
    {volume name: {segment name: mask}}."""
    stand_ins, Segmentations, VolumeNodes = _scene_modules()
    from MedPrepLib.volume import Volume

    scene = stand_ins.newScene()
    Segmentations.registerConverterRules()
    logic = Segmentations._segmentationsLogic(scene)
    drawn = {}
    for n in range(cases):
        volume = _ct(n)
        volumeNode = VolumeNodes.nodeFromVolume(scene, volume, f"CT{n}")
        segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", f"Segmentation{n}")
        segmentation.SetReferenceImageGeometryParameterFromVolumeNode(volumeNode)
        for name, mask in _masks(n).items():
            labelNode = VolumeNodes.nodeFromVolume(
                scene, Volume(mask.astype(np.uint8), geometry=volume.geometry), "tmp", labelmap=True
            )
            before = segmentation.GetSegmentation().GetNumberOfSegments()
            assert logic.ImportLabelmapToSegmentationNode(labelNode, segmentation)
            segmentation.GetSegmentation().GetNthSegment(before).SetName(name)
            scene.RemoveNode(labelNode)
        if not reference:
            segmentation.RemoveNodeReferenceIDs(segmentation.GetReferenceImageGeometryReferenceRole())
        drawn[volumeNode.GetName()] = _masks(n)
    if extra_volume:
        VolumeNodes.nodeFromVolume(scene, _ct(9), "Another CT")
    for node in [scene.GetNthNode(i) for i in range(scene.GetNumberOfNodes())]:
        if node.IsA("vtkMRMLStorableNode") and node.GetStorageNode() is None and not node.GetHideFromEditors():
            node.AddDefaultStorageNode()
    assert scene.WriteToMRB(str(path)), f"could not save {path}"
    scene.Clear(1)
    return drawn


def verify_with_nnunet(folder: Path) -> subprocess.CompletedProcess:
    code = (
        "import sys; from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity; "
        "verify_dataset_integrity(sys.argv[1], num_processes=1)"
    )
    return subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True, timeout=300)


def test_a_saved_scene_exports_as_a_labelled_nnunet_dataset(tmp_path):
    import zipfile

    from MedPrepLib.imageio import read_image

    mrb = tmp_path / "liver.mrb"
    drawn = save_scene(mrb)
    names = zipfile.ZipFile(mrb).namelist()
    assert sum(n.endswith(".seg.nrrd") for n in names) == 2 and sum(n.endswith(".mrml") for n in names) == 1
    out = tmp_path / "nnUNet_raw"
    result = run_batch(EXPORT_SCENE, "--scene", mrb, "--out", out, "--format", "nnunet", "--channel-name", "CT",
                       "--dataset-name", "Liver", "--folds", "2", "--key-file", tmp_path / "key.csv", tmp_path=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "'Segmentation0' on 'CT0'" in result.stdout and "2 case(s) exported" in result.stdout
    assert "Traceback" not in result.stderr
    folder = out / "Dataset500_Liver"
    dataset = json.loads((folder / "dataset.json").read_text())
    assert dataset["labels"] == {"background": 0, "liver": 1, "tumour": 2}  # by name, not segment order
    assert dataset["numTraining"] == 2 and dataset["channel_names"] == {"0": "CT"}
    key = (tmp_path / "key.csv").read_text()
    volume_of_case = {line.split(",")[0]: line.split("'")[1] for line in key.splitlines()[1:]}
    assert sorted(volume_of_case.values()) == ["CT0", "CT1"]
    for case, volume_name in volume_of_case.items():
        image = read_image(folder / "imagesTr" / f"{case}_0000.nii.gz")
        label = read_image(folder / "labelsTr" / f"{case}.nii.gz")
        assert label.geometry.isclose(image.geometry)
        masks = drawn[volume_name]
        expected = np.zeros(SHAPE, np.uint8)
        expected[masks["liver"]] = 1
        expected[masks["tumour"]] = 2
        np.testing.assert_array_equal(label.array, expected)
    assert (folder / "medprep.json").is_file() and (folder / "qc" / "report.html").is_file()

    pytest.importorskip("nnunetv2")
    checked = verify_with_nnunet(folder)
    assert checked.returncode == 0, (checked.stdout + checked.stderr)[-3000:]
    assert "verify_dataset_integrity Done" in checked.stdout


def test_a_segmentation_without_reference_takes_the_one_volume(tmp_path):
    mrb = tmp_path / "one.mrb"
    save_scene(mrb, cases=1, reference=False)
    out = tmp_path / "out"
    result = run_batch(EXPORT_SCENE, "--scene", mrb, "--out", out, "--format", "nifti", "--no-qc", tmp_path=tmp_path)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "'Segmentation0' on 'CT0'" in result.stdout
    assert json.loads((out / "medprep.json").read_text())["labels"] == {"background": 0, "liver": 1, "tumour": 2}


def test_a_segmentation_that_names_no_volume_among_several_is_refused(tmp_path):
    mrb = tmp_path / "two.mrb"
    save_scene(mrb, cases=1, reference=False, extra_volume=True)
    result = run_batch(EXPORT_SCENE, "--scene", mrb, "--out", tmp_path / "out", tmp_path=tmp_path)
    assert_refused(result, exit_code=2, contains=("Segmentation0", "no reference volume", "2 image volumes"))
    assert not (tmp_path / "out").exists()


def test_scene_failures_are_one_line(tmp_path):
    assert_refused(run_batch(EXPORT_SCENE, "--scene", tmp_path / "absent.mrb", "--out", tmp_path / "o", tmp_path=tmp_path),
                   contains="does not exist")  # fmt: skip
    broken = tmp_path / "broken.mrb"
    broken.write_bytes(b"not a zip")
    assert_refused_past_vtk(run_batch(EXPORT_SCENE, "--scene", broken, "--out", tmp_path / "o", tmp_path=tmp_path),
                            contains="cannot read the scene")  # fmt: skip
    assert_refused(run_batch(EXPORT_SCENE, "--out", tmp_path / "o", tmp_path=tmp_path), contains="--scene")
    assert_refused(run_batch(EXPORT_SCENE, "--scene", broken, "--out", tmp_path / "o", "--workers", "2",
                             tmp_path=tmp_path), contains="unrecognized arguments: --workers")  # fmt: skip
    assert not (tmp_path / "o").exists()


def test_the_scene_options_are_medprep_exports_that_apply_to_scene_nodes():
    _scene_modules()  # MedPrepCore importable
    _, export = cli_parsers()
    script = load_script(EXPORT_SCENE)
    ours = _actions(script["buildParser"]())
    cli = _actions(export)
    assert ours.pop("--scene")["dest"] == "scene" and ours.pop("--verbose")["dest"] == "verbose"
    out = ours.pop("--out")
    assert (out["dest"], cli.pop("out")["dest"]) == ("out", "out")
    assert {k: v for k, v in cli.items() if v["dest"] in set(script["KEYWORDS"]) | {"no_qc", "help"}} == ours
    import inspect

    from MedPrepCore.DatasetExport import exportDataset

    accepted = set(inspect.signature(exportDataset).parameters)
    assert set(script["KEYWORDS"].values()) | {"volumePairs", "qc", "progressCallback", "log"} <= accepted


def test_step_lines_are_one_per_step_not_one_per_file():
    import io

    load_script(EXPORT)
    import MedPrepBatch

    stream = io.StringIO()
    lines = MedPrepBatch.StepLines(stream)
    for n in range(1, 1001):  # a thousand files read: counts in the label make no new step
        assert lines(f"reading DICOM headers ({n}/1000)", 0.05 * n / 1000) is False
    for n in range(1, 11):
        lines(f"case_{n:04d} done ({n} of 10)", 0.1 + 0.8 * n / 10)
    text = stream.getvalue().splitlines()
    assert text[0] == "medprep:   0% reading DICOM headers (1/1000)"
    assert len(text) == 1 + 9 and all(line.startswith("medprep: ") for line in text)
