"""The nnU-Net v2 layout checked by nnU-Net's own code.

A small synthetic dataset (tiny volumes, one CT channel or two MR channels, labelled training
cases in two patient-level folds, a labelled and an unlabelled test case) is laid out with
``nnunet.case_files``, its volumes written with ``imageio.write_image`` and its index with
``nnunet.write_index``. Then nnU-Net's ``verify_dataset_integrity`` must pass on it, and must
fail on copies broken the ways users break datasets (a label one slice short, a label value
outside the table, a channel file without its ``_0000``), which shows the check is not vacuous.
``nnUNetv2_plan_and_preprocess -c 3d_fullres`` runs through on the CT variant, copies our
``splits_final.json`` and picks CT normalisation for the channel named ``CT``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from MedPrepLib.errors import ExportError
from MedPrepLib.export import nnunet
from MedPrepLib.export.cases import CaseFiles
from MedPrepLib.export.splits import SplitCase, make_splits
from MedPrepLib.imageio import read_image, write_image
from MedPrepLib.volume import Volume

pytest.importorskip("nnunetv2")
pytestmark = pytest.mark.consumers

LABELS = {"background": 0, "liver": 1, "tumour": 2}
DIRECTION = np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # oblique-free but not identity


def volumes(seed: int, shape=(12, 16, 20), channels=1, labelled=True):
    """(image channels, label) on one grid: a noisy body with a two-label blob."""
    rng = np.random.default_rng(seed)
    grid = dict(spacing=(0.8, 0.9, 2.5), origin=(-10.0 + seed, 20.0, 30.0), direction=DIRECTION)
    z, y, x = np.indices(shape)
    blob = ((z - shape[0] / 2) ** 2 / 9 + (y - shape[1] / 2) ** 2 / 16 + (x - shape[2] / 2) ** 2 / 25) < 1
    core = ((z - shape[0] / 2) ** 2 + (y - shape[1] / 2) ** 2 + (x - shape[2] / 2) ** 2) < 4
    images = []
    for c in range(channels):
        arr = rng.normal(40 + 100 * c, 20, shape) + 200 * blob
        images.append(Volume(arr.astype(np.int16), **grid))
    label = None
    if labelled:
        lab = np.zeros(shape, np.uint8)
        lab[blob] = 1
        lab[core] = 2
        label = Volume(lab, **grid)
    return images, label


def build(root: Path, channels: list[str], *, dataset_id=501, name="Synthetic", n_train=6) -> Path:
    """A dataset through the module's own API; returns its folder."""
    folder = root / nnunet.dataset_folder_name(dataset_id, name)
    folder.mkdir(parents=True)
    # two studies for patient p0, one for the others
    split_cases = [SplitCase(f"case_{n:04d}", patient=f"p{max(0, n - 2)}") for n in range(1, n_train + 1)]
    split_cases += [SplitCase("case_0100", patient="q1", split="test"), SplitCase("case_0101", patient="q2", labelled=False)]
    splits = make_splits(split_cases, folds=2, seed=3)
    written = []
    for n, sc in enumerate(split_cases):
        split, fold = splits.split_of(sc.case_id), splits.fold_of(sc.case_id)
        files = nnunet.case_files(sc.case_id, split, channels=len(channels), labelled=sc.labelled, fold=fold)
        images, label = volumes(n, channels=len(channels), labelled=sc.labelled)
        for image, path in zip(images, files.images):
            (folder / path).parent.mkdir(exist_ok=True)
            write_image(image, folder / path)
        if files.label:
            (folder / files.label).parent.mkdir(exist_ok=True)
            write_image(label, folder / files.label)
        written.append(files)
    nnunet.write_index(folder, written, labels=LABELS, channels=channels, name=name)
    return folder


def run_nnunet(code: str, tmp: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    for var in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        env[var] = str(tmp / var)
        (tmp / var).mkdir(exist_ok=True)
    env.setdefault("OMP_NUM_THREADS", "1")
    env["nnUNet_n_proc_DA"] = "1"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=600)


VERIFY = "import sys; from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity; verify_dataset_integrity(sys.argv[1], num_processes=1)"


def verify(folder: Path, tmp: Path) -> subprocess.CompletedProcess:
    return run_nnunet(VERIFY, tmp, str(folder))


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("nnunet_raw")
    return {
        "ct": build(root, ["CT"], dataset_id=501, name="CT"),
        "mr": build(root, ["T1", "FLAIR"], dataset_id=502, name="MR"),
    }


@pytest.mark.parametrize("variant", ["ct", "mr"])
def test_verify_dataset_integrity_passes(datasets, variant, tmp_path):
    result = verify(datasets[variant], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "verify_dataset_integrity Done" in result.stdout
    assert "Error" not in result.stdout and "Warning" not in result.stdout, result.stdout


def test_dataset_json_as_nnunet_reads_it(datasets):
    from nnunetv2.preprocessing.normalization.default_normalization_schemes import CTNormalization, ZScoreNormalization
    from nnunetv2.preprocessing.normalization.map_channel_name_to_normalization import get_normalization_scheme
    from nnunetv2.utilities.label_handling.label_handling import LabelManager
    from nnunetv2.utilities.utils import get_filenames_of_train_images_and_targets

    for variant, schemes in (("ct", [CTNormalization]), ("mr", [ZScoreNormalization, ZScoreNormalization])):
        folder = datasets[variant]
        content = json.loads((folder / "dataset.json").read_text())
        assert list(content["channel_names"]) == [str(n) for n in range(len(schemes))]
        assert [get_normalization_scheme(name) for name in content["channel_names"].values()] == schemes
        assert LabelManager(content["labels"], regions_class_order=None).all_labels == [0, 1, 2]
        found = get_filenames_of_train_images_and_targets(str(folder), content)
        assert sorted(found) == [f"case_{n:04d}" for n in range(1, 7)] and content["numTraining"] == 6
        for case, entry in found.items():  # channels in order, the label beside them
            assert [Path(p).name for p in entry["images"]] == [f"{case}_{c:04d}.nii.gz" for c in range(len(schemes))]
            assert Path(entry["label"]).name == f"{case}.nii.gz"
        # test cases are in imagesTs, the labelled one's label in labelsTs
        assert sorted(p.name for p in (folder / "imagesTs").iterdir())[0] == "case_0100_0000.nii.gz"
        assert [p.name for p in (folder / "labelsTs").iterdir()] == ["case_0100.nii.gz"]


def test_splits_final_is_patient_level(datasets):
    folder = datasets["ct"]
    splits = json.loads((folder / "splits_final.json").read_text())
    assert len(splits) == 2
    train = [f"case_{n:04d}" for n in range(1, 7)]
    for fold in splits:
        assert sorted(fold["train"] + fold["val"]) == train and not set(fold["train"]) & set(fold["val"])
    # case_0001 and case_0002 are patient p0's two studies: one fold
    assert any({"case_0001", "case_0002"} <= set(f["val"]) for f in splits)
    assert sorted(splits[0]["val"] + splits[1]["val"]) == train


def _copy(folder: Path, tmp: Path) -> Path:
    target = tmp / folder.name
    shutil.copytree(folder, target)
    return target


def test_verify_catches_a_label_one_slice_short(datasets, tmp_path):
    broken = _copy(datasets["ct"], tmp_path / "raw")
    label = broken / "labelsTr" / "case_0002.nii.gz"
    vol = read_image(label)
    write_image(Volume(np.ascontiguousarray(vol.array[1:]), spacing=vol.spacing, origin=vol.origin, direction=vol.direction), label, overwrite=True)
    result = verify(broken, tmp_path)
    assert result.returncode != 0 and "Shape mismatch" in result.stdout


def test_verify_catches_a_label_value_outside_the_table(datasets, tmp_path):
    broken = _copy(datasets["mr"], tmp_path / "raw")
    label = broken / "labelsTr" / "case_0004.nii.gz"
    vol = read_image(label)
    write_image(vol.with_array(np.where(vol.array == 2, 3, vol.array).astype(np.uint8)), label, overwrite=True)
    result = verify(broken, tmp_path)
    assert result.returncode != 0 and "Unexpected labels" in result.stdout


def test_verify_catches_a_missing_channel_suffix(datasets, tmp_path):
    broken = _copy(datasets["ct"], tmp_path / "raw")
    (broken / "imagesTr" / "case_0005_0000.nii.gz").rename(broken / "imagesTr" / "case_0005.nii.gz")
    result = verify(broken, tmp_path)
    # nnU-Net reads 'case_0005.nii.gz' as case 'case' (it cuts _XXXX.nii.gz), which has no label
    assert result.returncode != 0 and "not all training cases have a label file in labelsTr" in result.stderr


def test_plan_and_preprocess_runs_through(tmp_path):
    raw = tmp_path / "nnUNet_raw"
    folder = build(raw, ["CT"], dataset_id=503, name="Plan", n_train=4)
    start = time.monotonic()
    code = "import sys; from nnunetv2.experiment_planning.plan_and_preprocess_entrypoints import plan_and_preprocess_entry; sys.argv = ['nnUNetv2_plan_and_preprocess', '-d', '503', '-c', '3d_fullres', '-np', '1', '--verify_dataset_integrity']; plan_and_preprocess_entry()"
    result = run_nnunet(code, tmp_path)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    pre = tmp_path / "nnUNet_preprocessed" / folder.name
    assert json.loads((pre / "splits_final.json").read_text()) == json.loads((folder / "splits_final.json").read_text())
    plans = json.loads((pre / "nnUNetPlans.json").read_text())
    assert plans["configurations"]["3d_fullres"]["normalization_schemes"] == ["CTNormalization"]
    preprocessed = sorted(p.name for p in (pre / "nnUNetPlans_3d_fullres").iterdir() if p.name.endswith(".pkl"))
    assert preprocessed == [f"case_{n:04d}.pkl" for n in range(1, 5)]
    assert time.monotonic() - start < 300


# --- names, ids and refusals ---------------------------------------------------------------------


def test_dataset_ids(tmp_path):
    assert nnunet.dataset_folder_name(7, "Heart", allow_reserved=True) == "Dataset007_Heart"
    for bad in (0, 1, 10, 1000):
        with pytest.raises(ExportError):
            nnunet.dataset_folder_name(bad, "X")
    with pytest.raises(ExportError, match="name"):
        nnunet.dataset_folder_name(600, "two words")
    raw, pre = tmp_path / "raw", tmp_path / "pre"
    (raw / "Dataset500_A").mkdir(parents=True)
    (pre / "Dataset501_B").mkdir(parents=True)
    (raw / "Dataset502_not_a_folder.txt").write_text("")  # nnU-Net lists folders; a file is harmless but skipped
    assert nnunet.lowest_free_dataset_id(raw) == 501
    assert nnunet.lowest_free_dataset_id(raw, pre, tmp_path / "missing") == 502
    assert nnunet.check_dataset_id(500, "A", raw, pre) == "Dataset500_A"  # the same dataset again
    with pytest.raises(ExportError, match="already used by Dataset501_B"):
        nnunet.check_dataset_id(501, "C", raw, pre)


def _one_case_dataset(tmp_path, *, labels=LABELS) -> tuple[Path, list[CaseFiles]]:
    folder = tmp_path / "Dataset600_T"
    cases = []
    for n in range(2):
        files = nnunet.case_files(f"c{n}", "train", channels=1, labelled=True, fold=n)
        images, label = volumes(n)
        for sub in ("imagesTr", "labelsTr"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        write_image(images[0], folder / files.images[0])
        write_image(label, folder / files.label)
        cases.append(files)
    return folder, cases


def test_write_index_refuses_what_nnunet_would_trip_on(tmp_path):
    folder, cases = _one_case_dataset(tmp_path)
    with pytest.raises(ExportError, match="not consecutive"):
        nnunet.write_index(folder, cases, labels={"background": 0, "a": 1, "b": 3}, channels=["CT"])
    with pytest.raises(ExportError, match="background"):
        nnunet.write_index(folder, cases, labels={"air": 0, "a": 1}, channels=["CT"])
    (folder / "imagesTr" / "old_0000.nii.gz").write_bytes(b"")  # another export's leftover
    with pytest.raises(ExportError, match="belong to no exported case: imagesTr/old_0000.nii.gz"):
        nnunet.write_index(folder, cases, labels=LABELS, channels=["CT"])
    (folder / "imagesTr" / "old_0000.nii.gz").unlink()
    with pytest.raises(ExportError, match="missing"):
        nnunet.write_index(folder, [*cases, nnunet.case_files("c9", "test", channels=1, labelled=False)], labels=LABELS, channels=["CT"])
    renamed = CaseFiles("c0", "train", 0, ("imagesTr/c0.nii.gz",), "labelsTr/c0.nii.gz", True)
    with pytest.raises(ExportError, match="not laid out"):
        nnunet.write_index(folder, [renamed, cases[1]], labels=LABELS, channels=["CT"])
    with pytest.raises(ExportError, match="fold"):
        nnunet.write_index(folder, [cases[1]], labels=LABELS, channels=["CT"])  # fold 0 of 2 left empty
    assert not (folder / "dataset.json").exists() and not (folder / "splits_final.json").exists()
    written = nnunet.write_index(folder, cases, labels=LABELS, channels=["CT"])
    assert [p.name for p in written] == ["splits_final.json", "dataset.json"]
    with pytest.raises(ExportError):
        nnunet.case_files("c0", "train", channels=1, labelled=False)  # a training case needs a label
