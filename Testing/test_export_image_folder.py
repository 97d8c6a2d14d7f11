"""A folder of image files -> source cases: labels matched by one documented rule (a labels
folder, ``_seg``/``_label`` beside the image, or an nnU-Net raw dataset), nnU-Net channel
suffixes, unmatched and ambiguous files reported by neutral numbers, never by name."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from MedPrepLib.errors import ExportError
from MedPrepLib.export.image_folder import NO_PATIENT_WARNING, read_image_folder
from MedPrepLib.imageio import write_image
from MedPrepLib.volume import Volume

NAME = "Doe_Jane"


def put(folder, name, value=0, dtype=np.int16):
    folder.mkdir(parents=True, exist_ok=True)
    write_image(Volume(np.full((2, 3, 4), value, dtype)), folder / name)


def said(found) -> str:
    return " ".join([*found.warnings, *(f"{e.what} {e.reason}" for e in found.excluded)])


def by_name(found):
    return {c.key[0]: c for c in found.cases}


def test_labels_in_a_labels_folder_by_stem(tmp_path):
    images, labels = tmp_path / "images", tmp_path / "labels"
    put(images, f"{NAME}_1.nii.gz", 1)
    put(images, f"{NAME}_2.nrrd", 2)
    (images / ".hidden.nii.gz").write_bytes(b"")
    (images / "notes.txt").write_text("x")
    put(labels, f"{NAME}_1.mha", 1, np.uint8)  # any ending
    put(labels, f"{NAME}_9.nii.gz", 1, np.uint8)  # matches no image
    found = read_image_folder(images, labels=labels, channels=["CT"])
    cases = by_name(found)
    assert set(cases) == {f"{NAME}_1.nii.gz", f"{NAME}_2.nrrd"}
    one, two = cases[f"{NAME}_1.nii.gz"], cases[f"{NAME}_2.nrrd"]
    assert one.label is not None and two.label is None and one.modality == "CT"
    assert pickle.loads(pickle.dumps(one.label))().dtype == np.uint8
    assert two.images["CT"]().array[0, 0, 0] == 2 and one.patient != two.patient
    assert [(e.what, e.reason.split(" (")[0]) for e in found.excluded] == [("label file 2", "matches no image")]
    assert found.warnings == [NO_PATIENT_WARNING, "1 of 2 cases have no label (they go to the test part)"]
    assert NAME not in said(found)


def test_labels_beside_the_image(tmp_path):
    put(tmp_path, "a.nii.gz", 1)
    put(tmp_path, "a_seg.nii.gz", 1, np.uint8)
    put(tmp_path, "b.nii.gz", 2)
    put(tmp_path, "b_label.nrrd", 1, np.uint8)
    put(tmp_path, "c.nii.gz", 3)
    put(tmp_path, "c_seg.nii.gz", 1, np.uint8)
    put(tmp_path, "c_label.nii.gz", 1, np.uint8)  # two labels for c: ambiguous
    put(tmp_path, "d_seg.nii.gz", 1, np.uint8)  # a label without its image
    found = read_image_folder(tmp_path, channels=["MR"])
    cases = by_name(found)
    assert set(cases) == {"a.nii.gz", "b.nii.gz"} and all(c.label is not None for c in cases.values())
    assert cases["b.nii.gz"].label().dtype == np.uint8
    assert [e.what for e in found.excluded] == ["image file 3", "label file 5"]
    assert "2 label files match it" in found.excluded[0].reason


def test_a_single_channel_suffix_is_not_part_of_the_case_name(tmp_path):
    put(tmp_path / "images", "case_001_0000.nii.gz", 1)
    put(tmp_path / "images", "case_002_0000.nii.gz", 2)
    put(tmp_path / "labels", "case_001.nii.gz", 1, np.uint8)
    put(tmp_path / "labels", "case_002.nii.gz", 1, np.uint8)
    found = read_image_folder(tmp_path / "images", labels=tmp_path / "labels", channels=["CT"])
    assert len(found.cases) == 2 and all(c.label is not None for c in found.cases) and not found.excluded
    # numbered cases without channel suffixes are cases of their own, never channels
    put(tmp_path / "numbered", "case_0000.nii.gz")
    put(tmp_path / "numbered", "case_0001.nii.gz")
    assert len(read_image_folder(tmp_path / "numbered", channels=["CT"]).cases) == 2


def test_several_channels_by_nnunet_suffix(tmp_path):
    for case in ("x", "y"):
        put(tmp_path / "images", f"{case}_0000.nii.gz", 1)
        put(tmp_path / "images", f"{case}_0001.nii.gz", 2)
        put(tmp_path / "labels", f"{case}.nii.gz", 1, np.uint8)
    put(tmp_path / "images", "z_0000.nii.gz")  # its FLAIR is missing
    put(tmp_path / "images", "w.nii.gz")  # no channel suffix
    put(tmp_path / "images", "v_0002.nii.gz")  # channel 2 of 2
    found = read_image_folder(tmp_path / "images", labels=tmp_path / "labels", channels=("T1", "FLAIR"))
    assert [c.key for c in found.cases] == [("x_0000.nii.gz", "x_0001.nii.gz"), ("y_0000.nii.gz", "y_0001.nii.gz")]
    x = found.cases[0]
    assert list(x.images) == ["T1", "FLAIR"] and x.images["FLAIR"]().array[0, 0, 0] == 2
    reasons = {e.what: e.reason for e in found.excluded}
    assert reasons == {
        "image file 1": "its name does not end in a channel suffix _0000 ... _0001",
        "image file 2": "its name does not end in a channel suffix _0000 ... _0001",
        "image file 7": "has channels _0000 of 2",
    }


def test_one_case_name_with_two_endings_is_ambiguous(tmp_path):
    put(tmp_path, "a.nii.gz")
    put(tmp_path, "a.nrrd")
    put(tmp_path, "b.mha")
    found = read_image_folder(tmp_path, channels=["CT"])
    assert [c.key for c in found.cases] == [("b.mha",)]
    assert [e.what for e in found.excluded] == ["image files 1, 2"]


def test_an_nnunet_raw_dataset(tmp_path):
    root = tmp_path / "Dataset501_Liver"
    put(root / "imagesTr", "liver_001_0000.nii.gz", 1)
    put(root / "labelsTr", "liver_001.nii.gz", 1, np.uint8)
    put(root / "imagesTs", "liver_101_0000.nii.gz", 2)
    (root / "dataset.json").write_text(json.dumps({"channel_names": {"0": "CT"}, "labels": {"background": 0}}))
    found = read_image_folder(root)
    assert [c.key for c in found.cases] == [("imagesTr/liver_001_0000.nii.gz",), ("imagesTs/liver_101_0000.nii.gz",)]
    train, test = found.cases
    assert list(train.images) == ["CT"] and train.modality == "CT" and train.label is not None and test.label is None
    assert train.key_row[2].endswith("imagesTr/liver_001_0000.nii.gz")
    with pytest.raises(ExportError, match="labelsTr"):
        read_image_folder(root, labels=root / "labelsTr")


def test_channel_name_default_and_refusals(tmp_path):
    put(tmp_path / "ct", "a.nii.gz")
    found = read_image_folder(tmp_path / "ct")
    assert list(found.cases[0].images) == ["image"] and found.cases[0].modality == ""
    assert any("--channel-name CT" in w for w in found.warnings)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ExportError, match="holds no image files"):
        read_image_folder(tmp_path / "empty")
    with pytest.raises(ExportError, match="does not exist") as info:
        read_image_folder(tmp_path / NAME)
    assert NAME not in info.value.message
    with pytest.raises(ExportError, match="labels folder does not exist"):
        read_image_folder(tmp_path / "ct", labels=tmp_path / "nolabels")
    with pytest.raises(ExportError, match="the labels folder is the image folder"):
        read_image_folder(tmp_path / "ct", labels=tmp_path / "ct")
    with pytest.raises(ExportError, match="repeat a name"):
        read_image_folder(tmp_path / "ct", channels=["T1", "T1"])
