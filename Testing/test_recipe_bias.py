"""N4 bias-field correction on a synthetic MR-like volume with a known smooth field."""

from __future__ import annotations

import numpy as np
import pytest

from MedPrepLib.errors import RecipeError
from MedPrepLib.recipe import Recipe, run_recipe
from MedPrepLib.volume import Volume


def biased_phantom():
    """An ellipsoid of constant intensity 200 (plus 1 % noise) in a near-zero background,
    multiplied by a smooth field ranging about 0.6..1.5 across the object."""
    z, y, x = np.mgrid[0:32, 0:48, 0:48].astype(np.float64)
    inside = ((z - 15.5) / 13) ** 2 + ((y - 23.5) / 20) ** 2 + ((x - 23.5) / 20) ** 2 <= 1
    rng = np.random.default_rng(2)
    tissue = np.where(inside, 200.0, 2.0) * (1 + 0.01 * rng.standard_normal(inside.shape))
    field = np.exp(0.45 * (x - 23.5) / 23.5 + 0.2 * ((y - 23.5) / 23.5) ** 2 - 0.15 * (z - 15.5) / 15.5)
    image = Volume((tissue * field).astype(np.float32), spacing=(1.5, 1.5, 2.0))
    return image, inside


def cv(values: np.ndarray) -> float:
    return float(values.std() / values.mean())


def test_n4_removes_most_of_a_smooth_multiplicative_field():
    image, inside = biased_phantom()
    recipe = Recipe.from_dict({"version": 1, "steps": [{"op": "n4", "shrink_factor": 2, "iterations": [30, 30, 30]}]})
    res = run_recipe(recipe, image)
    out = res.image.array
    assert out.dtype == np.float32 and res.image.geometry == image.geometry
    core = inside.copy()  # leave the partial-volume rim out of the comparison
    core[:, :, :] &= np.roll(inside, 2, 2) & np.roll(inside, -2, 2)
    before, after = cv(image.array[core]), cv(out[core])
    assert before > 0.15
    assert after < 0.15 * before, (before, after)  # 0.16 -> about 0.011, the 1 % noise
    rec = res.provenance["steps"][0]["record"]
    assert rec["shrink_factor"] == [2, 2, 2] and rec["mask"] == "otsu" and rec["mask_voxels"] > 0
    # Replay is byte-identical (single-threaded N4).
    np.testing.assert_array_equal(run_recipe(recipe, image).image.array, out)


def test_n4_with_label_mask_and_errors():
    image, inside = biased_phantom()
    label = Volume(inside.astype(np.uint8), image.geometry)
    recipe = Recipe.from_dict(
        {"version": 1, "steps": [{"op": "n4", "shrink_factor": 4, "iterations": [10], "mask": "label"}]}
    )
    res = run_recipe(recipe, image, label)
    assert res.provenance["steps"][0]["record"]["mask_voxels"] == int(inside.sum())
    assert cv(res.image.array[inside]) < cv(image.array[inside])
    with pytest.raises(RecipeError, match=r"step 1 \(n4\): 'mask' is \"label\" but no label map"):
        run_recipe(recipe, image)
    empty = Volume(np.zeros(image.shape, np.uint8), image.geometry)
    with pytest.raises(RecipeError, match=r"step 1 \(n4\): the N4 mask \(label\) is empty"):
        run_recipe(recipe, image, empty)
    with pytest.raises(RecipeError, match=r"step 1 \(n4\): 'iterations' must be a list of positive integers"):
        Recipe.from_dict({"version": 1, "steps": [{"op": "n4", "iterations": 50}]})
