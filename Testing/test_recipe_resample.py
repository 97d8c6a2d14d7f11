"""Resampling: the grid rule, edge handling, interpolation accuracy, labels, and the recipe step."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from MedPrepLib.errors import RecipeError
from MedPrepLib.geometry import Geometry
from MedPrepLib.processing.resample import grid_for_shape, grid_for_spacing, resample
from MedPrepLib.recipe import Recipe, run_recipe
from MedPrepLib.volume import Volume


def oblique_direction(angle_deg: float = 20.0) -> np.ndarray:
    a = np.deg2rad(angle_deg)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(a / 2), -np.sin(a / 2)], [0, np.sin(a / 2), np.cos(a / 2)]])
    return rz @ rx


def smooth_volume(shape=(18, 26, 30), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return ndimage.gaussian_filter(rng.normal(size=shape), 2.0).astype(np.float32) * 1000


# -- the grid rule ---------------------------------------------------------------------------------
def test_grid_rule_exact_spacing_centred_fov_and_rounding():
    g = Geometry((512, 512, 300), (0.7, 0.7, 2.5), origin=(-180.0, -170.0, -400.0), direction=oblique_direction())
    out = grid_for_spacing(g, (1.0, 1.0, 1.0))
    # 512 * 0.7 = 358.4 -> 358, 300 * 2.5 = 750 exactly; spacing exactly the target
    assert out.size == (358, 358, 750)
    assert out.spacing == (1.0, 1.0, 1.0)
    np.testing.assert_array_equal(out.direction, g.direction)
    np.testing.assert_allclose(out.center(), g.center(), atol=1e-9)
    # halves round up: 5 voxels of 1 mm at 2 mm = 2.5 -> 3 voxels; 7 at 2 mm = 3.5 -> 4
    assert grid_for_spacing(Geometry((5, 7, 1)), (2.0, 2.0, 1.0)).size == (3, 4, 1)
    # origin = centre - direction @ (spacing * (size - 1) / 2), hand-computed for an axis-aligned grid
    h = grid_for_spacing(Geometry((4, 4, 4), (1, 1, 1), origin=(10, 20, 30)), (3, 3, 3))
    assert h.size == (1, 1, 1)
    np.testing.assert_allclose(h.origin, (11.5, 21.5, 31.5))
    h = grid_for_spacing(Geometry((4, 4, 4), (1, 1, 1), origin=(10, 20, 30)), (0.5, 0.5, 0.5))
    assert h.size == (8, 8, 8)
    np.testing.assert_allclose(h.origin, (9.75, 19.75, 29.75))  # edges of the field of view kept


def test_grid_for_shape_keeps_field_of_view_edges():
    g = Geometry((10, 20, 5), (1.0, 0.5, 3.0), origin=(1, 2, 3))
    out = grid_for_shape(g, (5, 40, 15))
    np.testing.assert_allclose(out.spacing, (2.0, 0.25, 1.0))
    np.testing.assert_allclose(out.extent_mm(), g.extent_mm())
    np.testing.assert_allclose(out.center(), g.center())


# -- edges: never a constant slice --------------------------------------------------------------------
def test_no_constant_border_slice_unlike_the_naive_simpleitk_call():
    # air everywhere (-1000 HU) with a soft-tissue slab; 2.5 mm slices resampled to 1 mm
    array = np.full((12, 16, 16), -1000, np.int16)
    array[3:9, 4:12, 4:12] = 40
    image = Volume(array, spacing=(1.0, 1.0, 2.5))
    target = grid_for_spacing(image.geometry, (1.0, 1.0, 1.0))
    out = resample(image, target, interpolation="linear").array
    assert out.shape == (30, 16, 16)
    assert out.min() >= -1000 and out.max() <= 40
    np.testing.assert_allclose(out[0], array[0])  # edge slices are the edge input slices
    np.testing.assert_allclose(out[-1], array[-1])

    # The obvious SimpleITK call (same size and spacing, origin kept) leaves the last slices at 0 HU
    # = water, because they lie more than half a voxel beyond the last input slice.
    naive = sitk.Resample(
        image.to_sitk(), (16, 16, 30), sitk.Transform(), sitk.sitkLinear, image.origin, (1.0, 1.0, 1.0),
        tuple(image.direction.ravel()), 0.0, sitk.sitkFloat32,
    )
    naive_array = sitk.GetArrayFromImage(naive)
    assert np.all(naive_array[-1] == 0)
    assert not np.any(np.all(out == 0, axis=(1, 2)))


def test_linear_reproduces_a_linear_ramp_on_an_oblique_grid():
    geometry = Geometry((20, 24, 10), (0.8, 0.7, 2.5), origin=(5.0, -3.0, 12.0), direction=oblique_direction())
    idx = np.stack(np.meshgrid(*[np.arange(n) for n in geometry.size], indexing="ij"), axis=-1)
    coef = np.array([0.3, -0.2, 0.5])

    def ramp(points):
        return points @ coef + 7.0

    values = ramp(geometry.index_to_physical(idx)).transpose(2, 1, 0).astype(np.float32)
    out = resample(Volume(values, geometry), grid_for_spacing(geometry, (1.1, 0.9, 1.0)))
    assert out.geometry.spacing == (1.1, 0.9, 1.0)
    np.testing.assert_array_equal(out.direction, geometry.direction)
    oidx = np.stack(np.meshgrid(*[np.arange(n) for n in out.geometry.size], indexing="ij"), axis=-1)
    pts = out.geometry.index_to_physical(oidx)
    inside = np.all((geometry.physical_to_index(pts) >= 0) & (geometry.physical_to_index(pts) <= np.array(geometry.size) - 1), axis=-1)
    expected = ramp(pts).transpose(2, 1, 0)
    inside = inside.transpose(2, 1, 0)
    assert inside.mean() > 0.5
    np.testing.assert_allclose(out.array[inside], expected[inside], atol=2e-3)


# -- interpolation accuracy ------------------------------------------------------------------------------
def _scipy_reference(array, source: Geometry, target: Geometry, order: int, mode: str) -> np.ndarray:
    inv = np.linalg.inv(source.matrix)
    a = inv @ target.matrix
    b = inv @ (np.asarray(target.origin) - np.asarray(source.origin))
    return ndimage.affine_transform(
        array.astype(np.float64), a[::-1, ::-1], b[::-1], target.shape, order=order, mode=mode
    )


@pytest.mark.parametrize("spacing", [(1.0, 1.0, 1.0), (0.5, 1.3, 0.8)])
def test_bspline_agrees_with_scipy_order_3(spacing):
    image = Volume(smooth_volume(), spacing=(0.7, 0.7, 2.5), direction=oblique_direction())
    target = grid_for_spacing(image.geometry, spacing)
    ref = _scipy_reference(image.array, image.geometry, target, 3, "mirror")
    # cubic along every axis (the anisotropy rule switched off): the same interpolant as scipy's
    cubic = resample(image, target, interpolation="bspline", anisotropy_threshold=100.0)
    assert np.corrcoef(cubic.array.ravel(), ref.ravel())[0, 1] > 0.9999
    # default: the 2.5 mm axis is interpolated linearly, close to but not the same as cubic
    default = resample(image, target, interpolation="bspline")
    assert 0.999 < np.corrcoef(default.array.ravel(), ref.ravel())[0, 1] < 0.9999


def test_bspline_isotropic_matches_scipy_closely():
    image = Volume(smooth_volume((20, 22, 24)), spacing=(1.0, 1.0, 1.0))
    target = grid_for_spacing(image.geometry, (0.7, 1.3, 0.9))
    out = resample(image, target, interpolation="bspline")
    ref = _scipy_reference(image.array, image.geometry, target, 3, "mirror")
    # identical except where ours clamps positions within half a voxel outside (scipy mirrors)
    inner = (slice(1, -1),) * 3
    np.testing.assert_allclose(out.array[inner], ref[inner], atol=0.05, rtol=1e-4)
    assert np.corrcoef(out.array.ravel(), ref.ravel())[0, 1] > 0.99999


def test_linear_matches_scipy_order_1_with_edge_extension():
    image = Volume(smooth_volume(), spacing=(0.7, 0.8, 2.5))
    target = grid_for_spacing(image.geometry, (1.0, 0.5, 1.0))
    out = resample(image, target, interpolation="linear", threads=1)
    ref = _scipy_reference(image.array, image.geometry, target, 1, "nearest")
    np.testing.assert_allclose(out.array, ref, atol=1e-2)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(resample(image, target, threads=2).array, out.array)  # threads don't matter


def test_anisotropic_axis_nearest_keeps_whole_input_slices():
    array = smooth_volume((8, 20, 20))
    image = Volume(array, spacing=(1.0, 1.0, 4.0))
    target = grid_for_spacing(image.geometry, (1.0, 1.0, 1.0))
    out = resample(image, target, interpolation="linear", anisotropic_axis_interpolation="nearest").array
    # every output slice is an input slice (in-plane spacing unchanged, z by nearest neighbour)
    for k in range(out.shape[0]):
        z = (target.index_to_physical((0, 0, k))[2] - image.origin[2]) / 4.0
        np.testing.assert_allclose(out[k], array[int(np.clip(np.floor(z + 0.5), 0, 7))], atol=1e-3)
    linear = resample(image, target, interpolation="linear").array
    assert not np.allclose(linear, out)


def test_nearest_keeps_dtype_and_values():
    array = np.arange(6 * 7 * 8, dtype=np.int16).reshape(6, 7, 8)
    image = Volume(array, spacing=(1, 1, 1))
    out = resample(image, grid_for_spacing(image.geometry, (0.5, 0.5, 0.5)), interpolation="nearest")
    assert out.dtype == np.int16
    np.testing.assert_array_equal(out.array[::2, ::2, ::2], array)


def test_same_spacing_is_the_identity():
    image = Volume(smooth_volume(), spacing=(0.7, 0.8, 2.5), direction=oblique_direction())
    for interpolation in ("linear", "bspline", "nearest"):
        out = resample(image, grid_for_spacing(image.geometry, image.spacing), interpolation=interpolation)
        assert out.geometry.isclose(image.geometry, atol_mm=1e-9)
        np.testing.assert_allclose(out.array, image.array, atol=1e-3)


def test_multichannel_volume_resamples_each_channel():
    a = smooth_volume()
    image = Volume(np.stack([a, -a], axis=-1), spacing=(0.7, 0.8, 2.5))
    target = grid_for_spacing(image.geometry, (1, 1, 1))
    out = resample(image, target, interpolation="bspline")
    single = resample(Volume(a, image.geometry), target, interpolation="bspline").array
    assert out.shape == single.shape + (2,)
    np.testing.assert_allclose(out.array[..., 0], single, atol=1e-3)
    np.testing.assert_allclose(out.array[..., 1], -single, atol=1e-3)


# -- reference grids -------------------------------------------------------------------------------------
def test_reference_grid_with_permuted_axes_equals_reorientation():
    from MedPrepLib.processing.reorient import reorient

    image = Volume(smooth_volume(), spacing=(0.7, 0.8, 2.5), origin=(3, 4, 5))
    reoriented = reorient(image, "SAR")
    out = resample(image, reoriented.geometry, interpolation="bspline")
    np.testing.assert_allclose(out.array, reoriented.array, atol=1e-3)


def test_reference_grid_oblique_to_the_input_and_fill_outside():
    image = Volume(smooth_volume(), spacing=(1.0, 1.0, 1.0))
    rotated = Geometry((30, 30, 20), (1.0, 1.0, 1.0), origin=(-6, -6, 0), direction=oblique_direction(30))
    out = resample(image, rotated, interpolation="linear", fill_value=-1234)
    naive = sitk.Resample(
        image.to_sitk(), rotated.size, sitk.Transform(), sitk.sitkLinear, rotated.origin, rotated.spacing,
        tuple(rotated.direction.ravel()), -1234.0, sitk.sitkFloat32,
    )
    ref = sitk.GetArrayFromImage(naive)
    both = (ref != -1234) & (out.array != -1234)
    assert both.mean() > 0.2
    np.testing.assert_allclose(out.array[both], ref[both], atol=1e-2)
    assert np.any(out.array == -1234)


# -- labels ------------------------------------------------------------------------------------------------
def blob_labels(shape=(16, 30, 34), k=4, seed=3) -> np.ndarray:
    field = smooth_volume(shape, seed)
    return np.digitize(field, np.quantile(field, np.linspace(0, 1, k + 1)[1:-1])).astype(np.uint8)


def _one_hot_reference(label: Volume, target: Geometry, **options) -> np.ndarray:
    values = np.unique(label.array)
    scores = [
        resample(Volume((label.array == v).astype(np.float32), label.geometry), target, interpolation="linear", **options).array
        for v in values
    ]
    return values[np.argmax(np.stack(scores), axis=0)]


@pytest.mark.parametrize("anisotropic", ["linear", "nearest"])
def test_label_linear_is_per_label_linear_argmax(anisotropic):
    label = Volume(blob_labels(), spacing=(0.7, 0.8, 2.5))
    target = grid_for_spacing(label.geometry, (1.0, 0.6, 1.0))
    out = resample(label, target, interpolation="label_linear", anisotropic_axis_interpolation=anisotropic)
    ref = _one_hot_reference(label, target, anisotropic_axis_interpolation=anisotropic)
    assert out.dtype == np.uint8
    # ties (exactly equal votes) may round differently in float32; they are vanishingly rare
    assert np.mean(out.array == ref) > 0.9995


def test_label_linear_with_three_labels_in_a_cell():
    # a junction of 3 labels inside one cell exercises the full vote path
    array = np.zeros((2, 2, 2), np.int32)
    array[:, 0, 1] = 5
    array[:, 1, :] = 7
    label = Volume(array, spacing=(1, 1, 1))
    target = grid_for_shape(label.geometry, (5, 5, 5))
    out = resample(label, target, interpolation="label_linear").array
    ref = _one_hot_reference(label, target)
    np.testing.assert_array_equal(out, ref)


def test_vanishing_label_is_an_error_naming_it():
    array = np.zeros((10, 20, 20), np.uint8)
    array[2:8, 4:16, 4:16] = 1
    array[4, 11, 11] = 9  # a single 0.5 mm voxel between the 2 mm sample positions
    image = Volume(np.zeros(array.shape, np.float32), spacing=(0.5, 0.5, 0.5))
    label = Volume(array, image.geometry)
    recipe = Recipe.from_dict({"version": 1, "steps": [{"op": "resample", "spacing": [2.0, 2.0, 2.0]}]})
    with pytest.raises(RecipeError, match=r"step 1 \(resample\).*label value\(s\) 9 \(1 voxels\) vanished"):
        run_recipe(recipe, image, label)


# -- the recipe step -------------------------------------------------------------------------------------
def test_step_parameters_are_validated_with_step_and_name():
    def build(params):
        return Recipe.from_dict({"version": 1, "steps": [{"op": "zscore"}, {"op": "resample", **params}]})

    with pytest.raises(RecipeError, match=r"step 2 \(resample\): give exactly one of"):
        build({"spacing": [1, 1, 1], "shape": [10, 10, 10]})
    with pytest.raises(RecipeError, match=r"step 2 \(resample\): 'interpolation' must be one of"):
        build({"spacing": [1, 1, 1], "interpolation": "cubic"})
    with pytest.raises(RecipeError, match=r"step 2 \(resample\): 'spacing'"):
        build({"spacing": [1, 0, 1]})
    with pytest.raises(RecipeError, match=r"step 2 \(resample\): 'shape'"):
        build({"shape": [10, 10.5, 10]})
    with pytest.raises(RecipeError, match=r"'spacng' is not a parameter"):
        build({"spacing": [1, 1, 1], "spacng": 1})
    recipe = build({"shape": [10, 12, 14], "interpolation": "bspline", "label_interpolation": "label_linear"})
    assert Recipe.from_dict(recipe.to_dict()) == recipe


def test_step_resamples_image_and_label_onto_one_grid_and_records_it(tmp_path):
    image = Volume(smooth_volume(), spacing=(0.7, 0.8, 2.5), origin=(1, 2, 3), direction=oblique_direction())
    label = Volume(blob_labels((18, 26, 30)), image.geometry)
    ref_image = Volume(np.zeros((5, 6, 7), np.int16), spacing=(2, 2, 2), origin=(0, 1, 2), direction=oblique_direction())
    path = tmp_path / "ref.nrrd"
    sitk.WriteImage(ref_image.to_sitk(), str(path))
    for target in ({"spacing": [1, 1, 1]}, {"shape": [20, 20, 20]}, {"reference": str(path)}):
        recipe = Recipe.from_dict({"version": 1, "steps": [{"op": "resample", **target, "fill_value": -1}]})
        result = run_recipe(recipe, image, label)
        assert result.label.geometry == result.image.geometry
        record = result.provenance["steps"][0]["record"]
        assert Geometry.from_dict(record["input_geometry"]) == image.geometry
        assert Geometry.from_dict(record["output_geometry"]) == result.image.geometry
        assert record["anisotropic_axes"] == [2]  # 2.5 mm > 3 x 0.7 mm
    assert result.image.geometry.isclose(ref_image.geometry, atol_mm=1e-9)


def test_labels_onto_an_oblique_reference_grid():
    label = Volume(blob_labels(), spacing=(1.0, 1.0, 1.0))
    rotated = Geometry((40, 40, 20), (0.9, 0.9, 0.9), origin=(-5, -8, 0), direction=oblique_direction(30))
    out = resample(label, rotated, interpolation="nearest", fill_value=0)
    ref = sitk.GetArrayFromImage(sitk.Resample(
        label.to_sitk(), rotated.size, sitk.Transform(), sitk.sitkNearestNeighbor, rotated.origin, rotated.spacing,
        tuple(rotated.direction.ravel()), 0, sitk.sitkUInt8,
    ))
    inside = ref > 0
    assert inside.mean() > 0.2 and out.dtype == np.uint8
    assert np.mean(out.array[inside] == ref[inside]) > 0.999  # ties at exactly half a voxel may round apart
    linear = resample(label, rotated, interpolation="label_linear")
    np.testing.assert_array_equal(linear.array, _one_hot_reference(label, rotated))
