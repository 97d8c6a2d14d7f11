"""Crop and pad steps: boxes, physical positions kept, pad values, seeded random crops, errors."""

from __future__ import annotations

import numpy as np
import pytest

from MedPrepLib.errors import RecipeError
from MedPrepLib.recipe import STEP_TYPES, Recipe, RunContext, run_recipe
from MedPrepLib.volume import Volume


def run(steps, image, label=None, seed=0):
    recipe = Recipe.from_dict({"version": 1, "steps": steps})
    return recipe, run_recipe(recipe, image, label, seed=seed)


def phantom() -> Volume:
    """Air (-1000 HU), a body (40 HU) and a separate, smaller table (200 HU) below it."""
    a = np.full((20, 40, 50), -1000, np.int16)
    a[4:16, 8:28, 10:40] = 40  # body: z 4..15, y 8..27, x 10..39
    a[2:18, 32:35, 5:45] = 200  # table, not touching the body
    return Volume(a, spacing=(0.8, 0.6, 2.0), origin=(-10.0, 5.0, 100.0), metadata={"modality": "CT"})


def test_crop_body_keeps_the_largest_component_plus_margin_and_positions():
    image = phantom()
    _, result = run([{"op": "crop_body", "threshold_hu": -500, "margin_mm": 2.0}], image)
    record = result.provenance["steps"][0]["record"]
    # margin 2 mm -> ceil(2/0.8)=3, ceil(2/0.6)=4, ceil(2/2)=1 voxels
    assert record["box"]["start"] == [10 - 3, 8 - 4, 4 - 1]
    assert record["box"]["size"] == [30 + 6, 20 + 8, 12 + 2]
    out = result.image
    assert not np.any(out.array == 200)  # the table is gone
    # the voxel at output index 0 is input index start: same physical point, same value
    start = record["box"]["start"]
    np.testing.assert_allclose(out.origin, image.geometry.index_to_physical(start))
    np.testing.assert_array_equal(out.array, image.array[3:17, 4:32, 7:43])


def test_crop_body_refuses_an_image_without_body():
    image = Volume(np.full((4, 5, 6), -1000.0, np.float32))  # all air
    with pytest.raises(RecipeError, match=r"step 1 \(crop_body\): no voxel is above threshold_hu -500"):
        run([{"op": "crop_body"}], image)


def test_crop_nonzero_and_crop_label():
    a = np.zeros((10, 12, 14), np.float32)
    a[2:5, 3:9, 4:6] = 1.5
    image = Volume(a, spacing=(1, 1, 1), origin=(1, 2, 3))
    _, result = run([{"op": "crop_nonzero"}], image)
    assert result.image.shape == (3, 6, 2)
    assert np.all(result.image.array == 1.5)

    label = np.zeros(a.shape, np.uint8)
    label[6:8, 1:2, 10:13] = 3
    _, result = run([{"op": "crop_label", "margin_mm": 1}], image, Volume(label, image.geometry))
    assert result.label.shape == (4, 3, 5)
    assert result.label.array.sum() == label.sum()
    np.testing.assert_allclose(result.image.origin, image.geometry.index_to_physical((9, 0, 5)))

    with pytest.raises(RecipeError, match="crop_label needs a label map"):
        run([{"op": "crop_label"}], image)
    with pytest.raises(RecipeError, match="the label map is empty"):
        run([{"op": "crop_label"}], image, Volume(np.zeros(a.shape, np.uint8), image.geometry))
    with pytest.raises(RecipeError, match="no nonzero voxel"):
        run([{"op": "crop_nonzero"}], Volume(np.zeros(a.shape, np.float32)))


def test_pad_crop_centred_with_the_odd_voxel_at_the_high_end():
    a = np.arange(5 * 6 * 7, dtype=np.int16).reshape(5, 6, 7)
    image = Volume(a, spacing=(1, 2, 3), metadata={"modality": "MR"})
    _, result = run([{"op": "pad_crop", "shape": [4, 9, 5]}], image)
    record = result.provenance["steps"][0]["record"]
    # x: 7 -> 4 crops 3 (1 low, 2 high); y: 6 -> 9 pads 3 (1 low, 2 high); z: 5 -> 5
    assert record["box"] == {"start": [1, -1, 0], "size": [4, 9, 5]}
    out = result.image.array
    assert out.shape == (5, 9, 4)
    np.testing.assert_array_equal(out[:, 1:7, :], a[:, :, 1:5])
    assert np.all(out[:, 0] == 0) and np.all(out[:, 7:] == 0)  # pad "auto" = image minimum (0) for MR
    np.testing.assert_allclose(result.image.origin, (1.0, -2.0, 0.0))


def test_pad_values_ct_air_explicit_and_labels_zero():
    image = phantom()
    label = Volume((image.array > 0).astype(np.uint8), image.geometry)
    _, result = run([{"op": "pad_crop", "shape": [60, 40, 24]}], image, label)
    assert result.image.array[0, 0, 0] == -1000  # CT in HU: air
    assert result.label.array[0, 0, 0] == 0 and result.label.array.sum() == label.array.sum()
    _, result = run([{"op": "pad_crop", "shape": [60, 40, 24], "pad_value": -1024}], image)
    assert result.image.array[0, 0, 0] == -1024
    normalised = Volume((image.array.astype(np.float32) + 1000) / 1400, image.geometry, metadata={"modality": "CT"})
    _, result = run([{"op": "pad_crop", "shape": [60, 40, 24]}], normalised)
    assert result.image.array[0, 0, 0] == 0.0  # no longer HU: the minimum


def test_random_crop_is_seeded_and_within_bounds():
    image = Volume(np.arange(20 * 30 * 40, dtype=np.int32).reshape(20, 30, 40))
    steps = [{"op": "pad_crop", "shape": [16, 36, 10], "mode": "random"}]
    boxes = []
    for seed in (1, 1, 2, 3, 4):
        _, result = run(steps, image, seed=seed)
        box = result.provenance["steps"][0]["record"]["box"]
        assert 0 <= box["start"][0] <= 24 and -6 <= box["start"][1] <= 0 and 0 <= box["start"][2] <= 10
        boxes.append(tuple(box["start"]))
    assert boxes[0] == boxes[1]
    assert len(set(boxes[1:])) > 1


def test_crop_steps_undo_exactly_inside_the_box():
    image = phantom()
    label = np.zeros(image.shape, np.uint8)
    label[5:10, 10:20, 12:30] = 2
    label[12:15, 15:25, 30:38] = 1
    for steps in (
        [{"op": "crop_body", "margin_mm": 0}],
        [{"op": "pad_crop", "shape": [48, 60, 18], "mode": "random"}],  # the cut never reaches the labels
        [{"op": "crop_label"}, {"op": "pad_crop", "shape": [64, 64, 16]}],
    ):
        recipe, result = run(steps, image, Volume(label, image.geometry), seed=7)
        back = result.label
        for step, entry in zip(reversed(recipe.steps), reversed(result.provenance["steps"])):
            back = step.invert_label(back, entry["record"])
        assert back.geometry == image.geometry
        np.testing.assert_array_equal(back.array, label)


def test_parameters_are_validated():
    with pytest.raises(RecipeError, match=r"step 1 \(pad_crop\): 'shape' is required"):
        Recipe.from_dict({"version": 1, "steps": [{"op": "pad_crop"}]})
    with pytest.raises(RecipeError, match=r"'shape' must be a list of 3 positive integers"):
        Recipe.from_dict({"version": 1, "steps": [{"op": "pad_crop", "shape": [1, 2]}]})
    with pytest.raises(RecipeError, match=r"'mode' must be one of"):
        Recipe.from_dict({"version": 1, "steps": [{"op": "pad_crop", "shape": [1, 2, 3], "mode": "edge"}]})
    with pytest.raises(RecipeError, match=r"'pad_value' must be a number"):
        Recipe.from_dict({"version": 1, "steps": [{"op": "pad_crop", "shape": [1, 2, 3], "pad_value": "min"}]})
    with pytest.raises(RecipeError, match=r"step 1 \(crop_body\): 'margin_mm' must be >= 0"):
        Recipe.from_dict({"version": 1, "steps": [{"op": "crop_body", "margin_mm": -1}]})


def test_a_crop_that_cuts_labels_records_and_warns(caplog):
    image = Volume(np.zeros((10, 10, 10), np.float32))
    label_array = np.zeros((10, 10, 10), np.uint8)
    label_array[4:6, 4:6, 4:6] = 1  # inside the centred 6-voxel box
    label_array[0, 0, 0] = 2  # outside it
    step = STEP_TYPES["pad_crop"].from_params({"shape": [6, 6, 6]}, "step 1 (pad_crop)")
    with caplog.at_level("WARNING"):
        _, out_label, record = step.apply(image, Volume(label_array), RunContext())
    assert record["label_voxels_cut"] == {"2": 1}
    assert "label 2: 1 voxels" in caplog.text
    assert np.count_nonzero(out_label.array == 1) == 8
