"""The Decathlon layout read by MONAI's own code (and converted by nnU-Net's).

A small dataset (two MR channels as one 4D NIfTI, or one CT channel as 3D) is laid out with
``msd.case_files``, written with ``imageio.write_image`` and indexed with ``msd.write_index``.
MONAI's ``load_decathlon_datalist`` must list every training and test item, ``LoadImaged`` must
read each one with the right shape, channel count, voxels and affine (our LPS geometry turned
into RAS), Auto3DSeg's ``datafold_read`` must give each fold's validation cases and its
``AutoRunner`` must accept the folds. nnU-Net's ``convert_MSD_dataset`` must turn the folder
into a dataset its ``verify_dataset_integrity`` passes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from MedPrepLib.errors import ExportError
from MedPrepLib.export import msd
from MedPrepLib.export.splits import SplitCase, make_splits
from MedPrepLib.imageio import write_image
from MedPrepLib.volume import Volume

pytest.importorskip("monai")
pytestmark = pytest.mark.consumers

LABELS = {"background": 0, "edema": 1, "tumour": 2}
DIRECTION = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
SHAPE = (6, 8, 10)  # (z, y, x)


def case_volumes(n: int, channels: int):
    rng = np.random.default_rng(n)
    grid = dict(spacing=(0.7, 0.8, 3.0), origin=(5.0 * n, -12.0, 40.0), direction=DIRECTION)
    images = [Volume(rng.integers(0, 1000, SHAPE).astype(np.int16), **grid) for _ in range(channels)]
    label = np.zeros(SHAPE, np.uint8)
    label[2:4, 3:6, 4:8] = 1
    label[3, 4, 5:7] = 2
    return images, Volume(label, **grid)


def build(root: Path, channels: list[str], name: str) -> tuple[Path, dict]:
    folder = root / msd.task_folder_name(7, name)
    folder.mkdir(parents=True)
    split_cases = [SplitCase(f"case_{n:04d}", patient=f"p{n % 4}") for n in range(8)]  # two studies per patient
    split_cases.append(SplitCase("case_0100", patient="q", labelled=False))
    splits = make_splits(split_cases, folds=2, seed=1)
    written, volumes = [], {}
    for n, sc in enumerate(split_cases):
        files = msd.case_files(sc.case_id, splits.split_of(sc.case_id), labelled=sc.labelled, fold=splits.fold_of(sc.case_id))
        images, label = case_volumes(n, len(channels))
        image = msd.image_volume(images)
        for sub in ("imagesTr", "labelsTr", "imagesTs"):
            (folder / sub).mkdir(exist_ok=True)
        write_image(image, folder / files.images[0])
        if files.label:
            write_image(label, folder / files.label)
        written.append(files)
        volumes[sc.case_id] = (images, label)
    msd.write_index(folder, written, labels=LABELS, channels=channels, name=name, description="synthetic")
    return folder, volumes


@pytest.fixture(scope="module", params=[["T1", "FLAIR"], ["CT"]], ids=["4D", "3D"])
def dataset(request, tmp_path_factory):
    return build(tmp_path_factory.mktemp("msd"), request.param, "Brain" if len(request.param) > 1 else "Liver"), request.param


def test_dataset_json_is_the_decathlons(dataset):
    (folder, _), channels = dataset
    content = json.loads((folder / "dataset.json").read_text())
    assert list(content) == ["name", "description", "tensorImageSize", "modality", "labels", "numTraining", "numTest", "training", "test"]
    assert content["tensorImageSize"] == ("4D" if len(channels) > 1 else "3D")
    assert content["modality"] == {str(n): c for n, c in enumerate(channels)}
    assert content["labels"] == {"0": "background", "1": "edema", "2": "tumour"}
    assert (content["numTraining"], content["numTest"]) == (8, 1)
    assert content["test"] == ["./imagesTs/case_0100.nii.gz"]


def test_monai_reads_every_item(dataset):
    from monai.data import load_decathlon_datalist
    from monai.transforms import LoadImaged

    (folder, volumes), channels = dataset
    training = load_decathlon_datalist(folder / "dataset.json", data_list_key="training")
    test = load_decathlon_datalist(folder / "dataset.json", data_list_key="test")
    assert len(training) == 8 and len(test) == 1
    load = LoadImaged(keys=["image", "label"])
    for item in training + test:
        case = Path(item["image"]).name[: -len(".nii.gz")]
        images, label = volumes[case]
        loaded = load(item) if "label" in item else LoadImaged(keys=["image"])(item)
        image = loaded["image"]
        # MONAI (nibabel) holds (x, y, z[, c]); our arrays are (z, y, x)
        expected = np.stack([np.transpose(v.array) for v in images], axis=-1)
        if len(channels) == 1:
            expected = expected[..., 0]
        assert tuple(image.shape) == expected.shape
        assert np.array_equal(np.asarray(image), expected)
        np.testing.assert_allclose(np.asarray(image.affine), images[0].geometry.affine_ras(), atol=1e-4)
        if "label" in item:
            assert np.array_equal(np.asarray(loaded["label"]), np.transpose(label.array))
            np.testing.assert_allclose(np.asarray(loaded["label"].affine), label.geometry.affine_ras(), atol=1e-4)
            assert set(np.unique(np.asarray(loaded["label"])).tolist()) <= {0, 1, 2}


def test_auto3dseg_fold_convention(dataset):
    from monai.apps.auto3dseg.auto_runner import AutoRunner
    from monai.auto3dseg.utils import datafold_read

    (folder, _), _ = dataset
    content = json.loads((folder / "dataset.json").read_text())
    seen = []
    for fold in (0, 1):
        train, val = datafold_read(str(folder / "dataset.json"), basedir=str(folder), fold=fold)
        assert len(train) + len(val) == 8 and val
        seen += [Path(v["image"]).name for v in val]
        assert all(os.path.isfile(v["image"]) and os.path.isfile(v["label"]) for v in train + val)
    assert sorted(seen) == sorted(Path(t["image"]).name for t in content["training"])  # each case validated once
    # patients (n % 4) are never split across folds
    fold_of = {int(Path(t["image"]).name[5:9]): t["fold"] for t in content["training"]}
    assert all(fold_of[n] == fold_of[n % 4] for n in fold_of)
    stub = type("Stub", (), {"data_src_cfg": {}})()
    assert AutoRunner.inspect_datalist_folds(stub, str(folder / "dataset.json")) == 2


def test_nnunet_converts_it(dataset, tmp_path):
    pytest.importorskip("nnunetv2")
    (folder, _), channels = dataset
    env = dict(os.environ)
    for var in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        env[var] = str(tmp_path / var)
        (tmp_path / var).mkdir()
    code = (
        "import sys; from nnunetv2.dataset_conversion.convert_MSD_dataset import convert_msd_dataset; "
        "from nnunetv2.experiment_planning.verify_dataset_integrity import verify_dataset_integrity; "
        "convert_msd_dataset(sys.argv[1], overwrite_target_id=507, num_processes=1); "
        "verify_dataset_integrity(sys.argv[2], num_processes=1)"
    )
    converted = tmp_path / "nnUNet_raw" / f"Dataset507_{folder.name.split('_')[1]}"
    result = subprocess.run([sys.executable, "-c", code, str(folder), str(converted)], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    assert "verify_dataset_integrity Done" in result.stdout and "Error" not in result.stdout
    assert sorted(p.name for p in (converted / "imagesTr").iterdir())[: len(channels)] == [
        f"case_0000_{c:04d}.nii.gz" for c in range(len(channels))
    ]


def test_image_volume_stacks_channels_once():
    images, _ = case_volumes(0, 3)
    stacked = msd.image_volume(images)
    assert stacked.shape == (*SHAPE, 3) and stacked.geometry == images[0].geometry
    assert np.moveaxis(stacked.array, -1, 0).flags.c_contiguous  # the NIfTI order: no copy when writing
    assert msd.image_volume(images[:1]) is images[0]
    moved = Volume(images[1].array, spacing=(0.7, 0.8, 3.0), origin=(1.0, 2.0, 3.0), direction=DIRECTION)
    with pytest.raises(ExportError, match="grid"):
        msd.image_volume([images[0], moved])


def test_names_and_refusals(tmp_path):
    with pytest.raises(ExportError, match="'_'"):
        msd.task_folder_name(1, "Brain_Tumour")
    with pytest.raises(ExportError):
        msd.task_folder_name(100, "X")
    folder = tmp_path / "Task01_X"
    files = msd.case_files("a", "train", labelled=True, fold=0)
    with pytest.raises(ExportError, match="missing"):
        msd.write_index(folder, [files], labels=LABELS, channels=["CT"], name="X")
    assert not (folder / "dataset.json").exists()
    with pytest.raises(ExportError, match="background"):
        msd.dataset_json([files], labels={"liver": 1}, channels=["CT"], name="X")
