"""restore(preprocess(label)): exact without resolution loss, close with it; ``medprep restore``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from MedPrepLib.cli import main
from MedPrepLib.errors import RecipeError
from MedPrepLib.geometry import Geometry, direction_from_code
from MedPrepLib.imageio import read_image, write_image
from MedPrepLib.processing.resample import grid_for_spacing
from MedPrepLib.recipe import Recipe, run_recipe
from MedPrepLib.recipe.invert import restore_label
from MedPrepLib.volume import Volume

CASE = "ct_philips_ingenuity_tilt_neg18"


def oblique() -> np.ndarray:
    a = np.deg2rad(17.0)
    rot = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    return rot @ direction_from_code("LPS")


def case(shape=(24, 40, 44), spacing=(0.7, 0.8, 2.5)) -> tuple[Volume, Volume]:
    """A smooth CT-like image in HU and a 4-label map of thick blobs on an oblique grid."""
    rng = np.random.default_rng(5)
    field = ndimage.gaussian_filter(rng.normal(size=shape), (1.5, 5, 5))
    image = Volume((field * 3000).astype(np.int16), spacing=spacing, origin=(-20, 15, 40), direction=oblique(),
                   metadata={"modality": "CT"})
    levels = np.quantile(field, [0.4, 0.6, 0.8])
    label = Volume(np.digitize(field, levels).astype(np.uint8), image.geometry)
    return image, label


def banded_case() -> tuple[Volume, Volume]:
    """120 x 120 x 100 mm at 0.7 x 0.8 x 2.5 mm, oblique; 4 labels in curved bands about 45 mm thick.

    A round trip through a 1 mm grid moves each label boundary by up to half a millimetre
    (nearest neighbour), so a label's Dice is about 1 - 0.5 mm / thickness: thick bands are
    needed for 0.98 (a 5 mm shell cannot get there, whatever the method).
    """
    geometry = Geometry((171, 150, 40), (0.7, 0.8, 2.5), origin=(-60, -50, 10), direction=oblique())
    k, j, i = np.indices(geometry.shape)
    p = geometry.index_to_physical(np.stack([i, j, k], axis=-1)) - geometry.center()
    phi = p[..., 0] / 45 + 0.4 * np.sin(p[..., 1] / 25) + p[..., 2] / 70
    label = np.digitize(phi, [-1.0, 0.0, 1.0]).astype(np.uint8)
    image = Volume((phi * 300).astype(np.int16), geometry, metadata={"modality": "CT"})
    return image, Volume(label, geometry)


def dice(a: np.ndarray, b: np.ndarray, k: int) -> float:
    x, y = a == k, b == k
    return 2 * np.count_nonzero(x & y) / (np.count_nonzero(x) + np.count_nonzero(y))


NO_LOSS = [
    [{"op": "reorient", "to": "RAS"}, {"op": "crop_label", "margin_mm": 5}, {"op": "pad_crop", "shape": [64, 64, 32]}],
    [{"op": "clip_scale", "min": -1000, "max": 400}, {"op": "reorient", "to": "ASL"},
     {"op": "pad_crop", "shape": [48, 30, 50], "mode": "random"}],  # pads every axis
    [{"op": "resample", "spacing": [0.7, 0.8, 2.5], "interpolation": "bspline"}, {"op": "reorient", "to": "IPR"},
     {"op": "crop_nonzero"}],
]


@pytest.mark.parametrize("steps", NO_LOSS, ids=["reorient-crop-pad", "intensity-reorient-random", "same-spacing"])
def test_restore_is_exact_when_no_resolution_is_lost(steps):
    image, label = case()
    result = run_recipe(Recipe.from_dict({"version": 1, "steps": steps}), image, label, seed=3)
    provenance = json.loads(json.dumps(result.provenance))  # as read back from the JSON file
    restored = restore_label(result.label, provenance)
    assert restored.geometry == image.geometry
    assert restored.dtype == label.dtype
    np.testing.assert_array_equal(restored.array, label.array)


@pytest.mark.parametrize("label_interpolation", ["nearest", "label_linear"])
def test_restore_after_1mm_resampling_keeps_dice_above_098(label_interpolation):
    image, label = banded_case()
    steps = [
        {"op": "resample", "spacing": [1.0, 1.0, 1.0], "label_interpolation": label_interpolation},
        {"op": "reorient", "to": "RAS"},
        {"op": "crop_body", "threshold_hu": -250, "margin_mm": 0},
        {"op": "pad_crop", "shape": [128, 128, 128]},
    ]
    result = run_recipe(Recipe.from_dict({"version": 1, "steps": steps}), image, label)
    restored = restore_label(result.label, result.provenance)
    assert restored.geometry == image.geometry
    for k in range(1, 4):
        assert dice(label.array, restored.array, k) > 0.98, k


def test_restore_refuses_a_prediction_on_another_grid():
    image, label = case()
    result = run_recipe(Recipe.from_dict({"version": 1, "steps": [{"op": "resample", "spacing": [1, 1, 1]}]}), image, label)
    pred = result.label
    with pytest.raises(RecipeError, match="the prediction's grid has"):
        restore_label(Volume(pred.array[:-1], spacing=pred.spacing), result.provenance)
    shifted = Volume(pred.array, pred.geometry.replace(origin=tuple(np.add(pred.origin, (0.5, 0, 0)))))
    with pytest.raises(RecipeError, match="differs from the preprocessed image's"):
        restore_label(shifted, result.provenance)
    with pytest.raises(RecipeError, match="scalar label map"):
        restore_label(Volume(np.stack([pred.array] * 2, axis=-1), pred.geometry), result.provenance)


def test_restore_reads_a_bare_step_list():
    image, label = case()
    steps = [{"op": "reorient", "to": "RAS"}, {"op": "pad_crop", "shape": [50, 50, 30]}]
    result = run_recipe(Recipe.from_dict({"version": 1, "steps": steps}), image, label)
    bare = {"steps": [{"op": e["op"], "params": e["params"], "record": e["record"]} for e in result.provenance["steps"]]}
    restored = restore_label(result.label, bare)
    np.testing.assert_array_equal(restored.array, label.array)
    assert restored.geometry.isclose(image.geometry, atol_mm=1e-9)


def test_medprep_restore_command(tmp_path, capsys):
    image, label = case()
    write_image(image, tmp_path / "ct.nii.gz")
    write_image(label, tmp_path / "seg.nii.gz")
    recipe = Recipe.from_dict({"version": 1, "steps": [
        {"op": "resample", "spacing": [1.4, 1.6, 2.5]},  # 2x coarser in-plane
        {"op": "reorient", "to": "RAS"},
        {"op": "pad_crop", "shape": [32, 32, 32]},
    ]})
    recipe.save(tmp_path / "r.json")
    source = read_image(tmp_path / "seg.nii.gz")
    result = run_recipe(recipe, read_image(tmp_path / "ct.nii.gz"), source)
    write_image(result.label, tmp_path / "pred.nii.gz")
    (tmp_path / "prov.json").write_text(json.dumps(result.provenance))

    args = ["restore", str(tmp_path / "pred.nii.gz"), str(tmp_path / "back.nii.gz"), "--provenance", str(tmp_path / "prov.json")]
    assert main(args) == 0
    back = read_image(tmp_path / "back.nii.gz")
    assert back.geometry.isclose(source.geometry, atol_mm=1e-4)
    expected = restore_label(result.label, result.provenance)
    np.testing.assert_array_equal(back.array, expected.array)
    assert np.mean(back.array == source.array) > 0.8  # 2x coarser in-plane: boundaries move

    assert main(args) == 2  # exists, no --overwrite
    assert "output exists" in capsys.readouterr().err
    assert main(args + ["--overwrite"]) == 0
    assert main(["restore", str(tmp_path / "pred.nii.gz"), str(tmp_path / "x.nii.gz"), "--provenance",
                 str(tmp_path / "missing.json")]) == 2
    assert "provenance file not found" in capsys.readouterr().err


# -- the real CT -------------------------------------------------------------------------------------------------
def _load_corpus_ct(corpus: Path) -> Volume:
    from conftest import corpus_case_dir, corpus_cases

    rows = [c for c in corpus_cases() if c["case_id"] == CASE]
    if not rows:
        pytest.skip(f"{CASE} not in the corpus manifest")
    folder = corpus_case_dir(rows[0])
    try:
        from MedPrepLib.sources import load_path
    except ImportError:  # the DICOM loader is not there: use the reference tilt-corrected NIfTI
        return read_image(folder / "reference" / "dcm2niix_Tilt_1.nii.gz")
    return load_path(folder / "dicom")


def _head_labels(image: Volume, second: str = "skull") -> np.ndarray:
    """1 = cranial cavity (inside the skull, below 300 HU); 2 = the skull (above 300 HU), or with
    ``second="head"`` all of the head outside the cavity (HU > -300, holes filled)."""
    a = image.array.astype(np.float32)
    smooth = ndimage.gaussian_filter(a, 1.0 / np.array(image.spacing[::-1]))  # sigma 1 mm
    bone = smooth > 300
    inside = np.stack([ndimage.binary_fill_holes(s) for s in bone])  # slice-wise: the skull is open at the ends
    label = np.zeros(a.shape, np.uint8)
    if second == "head":  # the largest component: the head, not the couch under it
        head = np.stack([ndimage.binary_fill_holes(s) for s in smooth > -300])
        components, _ = ndimage.label(head)
        label[components == np.argmax(np.bincount(components[components > 0]))] = 2
    label[inside & ~bone] = 1
    if second == "skull":
        label[bone] = 2
    return label


@pytest.mark.corpus
def test_corpus_ct_restore_after_1mm_resampling_keeps_dice_above_098_per_label(corpus):
    """Acceptance: the corpus head CT (0.48 x 0.48 mm in-plane) through 1 mm resampling and back,
    labels cranial cavity and the head around it."""
    image = _load_corpus_ct(corpus)
    label = Volume(_head_labels(image, "head"), image.geometry)
    steps = [
        {"op": "resample", "spacing": [1.0, 1.0, 1.0]},
        {"op": "reorient", "to": "RAS"},
        {"op": "crop_body", "margin_mm": 5},
    ]
    result = run_recipe(Recipe.from_dict({"version": 1, "steps": steps}), image, label)
    assert "label_voxels_cut" not in result.provenance["steps"][2]["record"]  # the crop kept the head whole
    restored = restore_label(result.label, json.loads(json.dumps(result.provenance)))
    assert restored.geometry == image.geometry
    for k in (1, 2):
        assert np.count_nonzero(label.array == k) > 100_000
        assert dice(label.array, restored.array, k) > 0.98, k


@pytest.mark.corpus
def test_corpus_ct_restore_after_1mm_resampling(corpus):
    image = _load_corpus_ct(corpus)  # 0.48 x 0.48 x 2.37 mm, tilt-corrected: an oblique grid
    label = Volume(_head_labels(image), image.geometry)
    assert np.count_nonzero(label.array == 1) > 100_000 and np.count_nonzero(label.array == 2) > 100_000
    steps = [
        {"op": "resample", "spacing": [1.0, 1.0, 1.0], "label_interpolation": "label_linear"},
        {"op": "reorient", "to": "RAS"},
        {"op": "crop_body", "margin_mm": 5},
        {"op": "pad_crop", "shape": [224, 256, 160]},
    ]
    result = run_recipe(Recipe.from_dict({"version": 1, "steps": steps}), image, label)
    assert result.image.spacing == (1.0, 1.0, 1.0)
    restored = restore_label(result.label, json.loads(json.dumps(result.provenance)))
    assert restored.geometry == image.geometry
    # the cranial cavity (a large region) comes back with Dice > 0.98
    assert dice(label.array, restored.array, 1) > 0.98
    # The skull is a ~5 mm shell sampled at 0.48 mm: a 1 mm grid moves each of its boundaries by up
    # to half a millimetre, which bounds its Dice near 0.95 for any method. Ours must match the
    # ideal nearest-neighbour round trip (SimpleITK, down and up on the same grids).
    target = grid_for_spacing(image.geometry, (1.0, 1.0, 1.0))
    down = sitk.Resample(label.to_sitk(), target.size, sitk.Transform(), sitk.sitkNearestNeighbor, target.origin,
                         target.spacing, tuple(target.direction.ravel()), 0, sitk.sitkUInt8)
    up = sitk.GetArrayFromImage(sitk.Resample(down, label.to_sitk(), sitk.Transform(), sitk.sitkNearestNeighbor, 0))
    for k in (1, 2):
        assert dice(label.array, restored.array, k) >= dice(label.array, up, k) - 0.002, k
    assert dice(label.array, restored.array, 2) > 0.93

    # and without resolution loss the same real grid comes back exactly
    exact = [{"op": "reorient", "to": "RAS"}, {"op": "crop_body", "margin_mm": 5}, {"op": "pad_crop", "shape": [480, 480, 64]}]
    result = run_recipe(Recipe.from_dict({"version": 1, "steps": exact}), image, label)
    np.testing.assert_array_equal(restore_label(result.label, result.provenance).array, label.array)
    assert isinstance(Geometry.from_dict(result.provenance["input"]["image"]["geometry"]), Geometry)


def test_preprocess_then_restore_on_the_command_line(tmp_path):
    image, label = case()
    write_image(image, tmp_path / "ct.nrrd")
    write_image(label, tmp_path / "seg.nrrd")
    Recipe.from_dict({"version": 1, "steps": [
        {"op": "clip_scale", "min": -1000, "max": 400},
        {"op": "reorient", "to": "RAS"},
        {"op": "crop_label", "margin_mm": 4},
        {"op": "pad_crop", "shape": [48, 48, 24]},
    ]}).save(tmp_path / "r.json")
    assert main(["preprocess", str(tmp_path / "ct.nrrd"), str(tmp_path / "pre.nii.gz"), "--recipe", str(tmp_path / "r.json"),
                 "--label", str(tmp_path / "seg.nrrd"), "--label-output", str(tmp_path / "pre_seg.nii.gz")]) == 0
    assert main(["restore", str(tmp_path / "pre_seg.nii.gz"), str(tmp_path / "back.nrrd"),
                 "--provenance", str(tmp_path / "pre.provenance.json")]) == 0
    back = read_image(tmp_path / "back.nrrd")
    source = read_image(tmp_path / "seg.nrrd")
    assert back.geometry.isclose(source.geometry, atol_mm=1e-6)
    np.testing.assert_array_equal(back.array, source.array)  # no resolution lost: exact
