"""Reorientation: axes permuted and flipped, every voxel keeps its value and physical position."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from MedPrepLib.errors import RecipeError
from MedPrepLib.geometry import Geometry, direction_from_code
from MedPrepLib.processing.reorient import inverse_transform, permute_axes, reorient
from MedPrepLib.recipe import Recipe, run_recipe
from MedPrepLib.volume import Volume


def all_codes() -> list[str]:
    codes = []
    for perm in itertools.permutations([("L", "R"), ("P", "A"), ("S", "I")]):
        for signs in itertools.product((0, 1), repeat=3):
            codes.append("".join(pair[s] for pair, s in zip(perm, signs)))
    return codes


def oblique(angle_deg=15.0) -> np.ndarray:
    a = np.deg2rad(angle_deg)
    return np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]]) @ direction_from_code("PSL")


def positions_by_value(volume: Volume) -> dict[int, np.ndarray]:
    """Physical position (LPS mm) of every voxel, keyed by its (unique) value."""
    k, j, i = np.indices(volume.shape[:3])
    idx = np.stack([i.ravel(), j.ravel(), k.ravel()], axis=-1)
    pts = volume.geometry.index_to_physical(idx)
    return dict(zip(volume.array.ravel().tolist(), pts))


@pytest.mark.parametrize("direction", [np.eye(3), direction_from_code("AIL"), oblique()])
def test_every_code_keeps_each_voxel_where_it_was(direction):
    array = np.arange(3 * 4 * 5, dtype=np.int32).reshape(3, 4, 5)
    image = Volume(array, spacing=(0.5, 0.7, 2.0), origin=(10, -20, 30), direction=direction)
    before = positions_by_value(image)
    for code in all_codes():
        out = reorient(image, code)
        assert out.geometry.orientation == code
        after = positions_by_value(out)
        for value, p in before.items():
            np.testing.assert_allclose(after[value], p, atol=1e-9)
        assert sorted(out.spacing) == sorted(image.spacing)


def test_oblique_goes_to_the_closest_code_without_rotation():
    image = Volume(np.zeros((3, 4, 5), np.uint8), direction=oblique())
    out = reorient(image, "RAS")
    assert out.geometry.orientation == "RAS"
    assert out.geometry.is_oblique()
    # direction columns are the input's, permuted and negated
    cols_in = {tuple(np.round(np.abs(image.direction[:, a]), 12)) for a in range(3)}
    cols_out = {tuple(np.round(np.abs(out.direction[:, a]), 12)) for a in range(3)}
    assert cols_in == cols_out


def test_permutation_and_its_inverse_are_exact():
    image = Volume(np.random.default_rng(0).integers(0, 100, (3, 4, 5)), spacing=(1, 2, 3), origin=(1, 2, 3))
    perm, flips = [2, 0, 1], [True, False, True]
    out = permute_axes(image, perm, flips)
    back = permute_axes(out, *inverse_transform(perm, flips))
    np.testing.assert_array_equal(back.array, image.array)
    assert back.geometry.isclose(image.geometry, atol_mm=1e-12)


def test_step_moves_the_label_with_the_image_and_undoes_exactly():
    rng = np.random.default_rng(1)
    image = Volume(rng.normal(size=(6, 7, 8)).astype(np.float32), spacing=(0.8, 0.9, 2.5), direction=oblique())
    label = Volume(rng.integers(0, 4, (6, 7, 8)).astype(np.uint8), image.geometry)
    recipe = Recipe.from_dict({"version": 1, "steps": [{"op": "reorient", "to": "las"}]})
    result = run_recipe(recipe, image, label)
    assert result.image.geometry.orientation == "LAS"
    assert result.label.geometry == result.image.geometry
    np.testing.assert_array_equal(result.image.array, reorient(image, "LAS").array)  # never interpolated
    step = recipe.steps[0]
    record = result.provenance["steps"][0]["record"]
    assert record["permutation"] and len(record["flips"]) == 3
    back = step.invert_label(result.label, record)
    np.testing.assert_array_equal(back.array, label.array)
    assert back.geometry == image.geometry
    assert Geometry.from_dict(record["output_geometry"]) == result.image.geometry


@pytest.mark.parametrize("bad", ["RAL", "XYZ", "RA", 3])
def test_bad_codes_are_rejected_naming_the_parameter(bad):
    with pytest.raises(RecipeError, match=r"step 1 \(reorient\): 'to'"):
        Recipe.from_dict({"version": 1, "steps": [{"op": "reorient", "to": bad}]})
