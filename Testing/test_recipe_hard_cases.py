"""Hard cases for the preprocessing recipes, checked against independent truths: SimpleITK's
resampler on the same physical grid, nibabel's orientation tools, nnU-Net's own normalisation,
and the physical position of every voxel. Each test here once broke or guards an edge a user
will hit (oblique, flipped and permuted grids, separate low-resolution axes, multi-channel
windows, odd label dtypes, float32 file headers, CLI misuse)."""

from __future__ import annotations

import itertools
import json
import re

import numpy as np
import pytest
import SimpleITK as sitk

from MedPrepLib.cli import EXIT_ERROR, main
from MedPrepLib.errors import RecipeError
from MedPrepLib.geometry import Geometry, direction_from_code
from MedPrepLib.imageio import read_image, write_image
from MedPrepLib.processing.resample import grid_for_shape, grid_for_spacing, resample
from MedPrepLib.recipe import Recipe, run_recipe
from MedPrepLib.recipe.invert import restore_label
from MedPrepLib.volume import Volume


def rotation(a_deg: float, b_deg: float, c_deg: float) -> np.ndarray:
    a, b, c = np.deg2rad([a_deg, b_deg, c_deg])
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rx = np.array([[1, 0, 0], [0, np.cos(c), -np.sin(c)], [0, np.sin(c), np.cos(c)]])
    return rz @ ry @ rx


DIRECTIONS = {
    "flipped": direction_from_code("RAI"),
    "permuted": direction_from_code("SLP"),
    "oblique-permuted": rotation(20, -35, 10) @ direction_from_code("ASR"),
}
ALL_CODES = [
    "".join(("LPS"[a] if not f else "RAI"[a]) for a, f in zip(p, flips))
    for p in itertools.permutations(range(3))
    for flips in itertools.product((False, True), repeat=3)
]


def run(steps, image, label=None, **kwargs):
    return run_recipe(Recipe.from_dict({"version": 1, "steps": steps}), image, label, **kwargs)


def ct_case(direction, size=(40, 36, 14), spacing=(0.73, 0.81, 3.3), seed=3):
    """A CT-like int16 volume (air -1000 around a body) and a 2-label map, on an anisotropic grid."""
    rng = np.random.default_rng(seed)
    g = Geometry(size, spacing, (-17.3, 22.1, -140.7), direction)
    a = np.full(g.shape, -1000, np.int16)
    nz, ny, nx = g.shape
    a[2 : nz - 2, 4 : ny - 4, 5 : nx - 5] = rng.integers(-100, 200, (nz - 4, ny - 8, nx - 10))
    lab = np.zeros(g.shape, np.uint8)
    lab[4 : nz - 4, 10 : ny // 2 + 2, 10 : nx - 15] = 1
    lab[nz // 2 - 1 : nz // 2 + 2, ny // 2 + 4 : ny - 8, 12:20] = 3
    return Volume(a, g), Volume(lab, g)


def physical_grid(g: Geometry) -> np.ndarray:
    k, j, i = np.indices(g.shape)
    return g.index_to_physical(np.stack([i, j, k], axis=-1).astype(float))


# -- geometry: reorientation and restore ------------------------------------------------------------
@pytest.mark.parametrize("name", DIRECTIONS)
def test_every_one_of_the_48_codes_keeps_each_voxel_in_place_and_restores_exactly(name):
    rng = np.random.default_rng(0)
    g = Geometry((7, 6, 5), (0.7, 0.9, 3.1), (5.0, -3.0, 20.0), DIRECTIONS[name])
    image = Volume(rng.normal(size=g.shape).astype(np.float32), g)
    label = Volume(rng.integers(0, 4, g.shape).astype(np.uint8), g)
    where = physical_grid(g)
    for code in ALL_CODES:
        res = run([{"op": "reorient", "to": code}], image, label)
        out = res.image.geometry
        assert out.orientation == code
        idx = np.rint(out.physical_to_index(where)).astype(int)  # (z, y, x, 3) -> output (i, j, k)
        assert np.array_equal(res.image.array[idx[..., 2], idx[..., 1], idx[..., 0]], image.array), code
        back = restore_label(res.label, res.provenance)
        assert back.geometry == g and np.array_equal(back.array, label.array), code


@pytest.mark.parametrize("code", ["PIL", "ASR", "RAS", "IRP"])
def test_reorient_agrees_with_nibabel_orientations(code):
    nib_orient = pytest.importorskip("nibabel.orientations")
    rng = np.random.default_rng(1)
    g = Geometry((5, 4, 3), (0.5, 0.8, 2.0), (1.0, 2.0, 3.0), direction_from_code("SLP"))
    image = Volume(rng.normal(size=g.shape).astype(np.float32), g)
    out = run([{"op": "reorient", "to": code}], image).image
    xyz = np.transpose(image.array, (2, 1, 0))
    # nibabel's axis codes also name where each axis points to, in RAS terms (same letters)
    transform = nib_orient.ornt_transform(
        nib_orient.io_orientation(g.affine_ras()), nib_orient.axcodes2ornt(tuple(code))
    )
    assert np.array_equal(nib_orient.apply_orientation(xyz, transform), np.transpose(out.array, (2, 1, 0)))
    expected_affine = g.affine_ras() @ nib_orient.inv_ornt_aff(transform, xyz.shape)
    np.testing.assert_allclose(out.geometry.affine_ras(), expected_affine, atol=1e-9)


@pytest.mark.parametrize("name", DIRECTIONS)
@pytest.mark.parametrize("seed", [0, 5, 17])
def test_lossless_chain_with_random_crop_restores_label_exactly(name, seed):
    image, label = ct_case(DIRECTIONS[name])
    steps = [
        {"op": "reorient", "to": "PIL"},
        {"op": "crop_body", "threshold_hu": -500, "margin_mm": 3},
        {"op": "pad_crop", "shape": [64, 64, 64], "mode": "random"},  # pads every axis: nothing cut
        {"op": "reorient", "to": "ASR"},
        {"op": "crop_label", "margin_mm": 4},
    ]
    res = run(steps, image, label, seed=seed)
    assert "label_voxels_cut" not in str(res.provenance["steps"])
    # every output voxel holds the input voxel at its physical position (or padding)
    src = image.geometry.physical_to_index(physical_grid(res.image.geometry))
    idx = np.rint(src).astype(int)
    assert np.allclose(src, idx, atol=1e-6)
    inside = np.all((idx >= 0) & (idx < np.array(image.geometry.size)), axis=-1)
    values = image.array[idx[inside][:, 2], idx[inside][:, 1], idx[inside][:, 0]]
    assert np.array_equal(res.image.array[inside], values)
    back = restore_label(res.label, res.provenance)
    assert back.geometry == image.geometry and np.array_equal(back.array, label.array)


# -- resampling against SimpleITK on the same physical grid ----------------------------------------
def sitk_resample(volume: Volume, target: Geometry, interpolator) -> np.ndarray:
    ref = sitk.Image(list(target.size), sitk.sitkFloat32)
    target.apply_to_sitk(ref)
    image = sitk.Cast(volume.to_sitk(), sitk.sitkFloat32)
    return sitk.GetArrayFromImage(sitk.Resample(image, ref, sitk.Transform(), interpolator, 0.0))


def interior(source: Geometry, target: Geometry, margin: float = 0.0) -> np.ndarray:
    src = source.physical_to_index(physical_grid(target))
    return np.all((src >= margin) & (src <= np.array(source.size) - 1 - margin), axis=-1)


@pytest.mark.parametrize("name", DIRECTIONS)
@pytest.mark.parametrize(
    "target", [("spacing", (1.0, 1.0, 1.0)), ("spacing", (0.5, 1.3, 2.0)), ("shape", (20, 50, 30))], ids=str
)
def test_resample_matches_simpleitk_on_the_same_grid(name, target):
    from scipy.ndimage import gaussian_filter

    g = Geometry((40, 36, 12), (0.6, 0.7, 4.0), (10.0, -20.0, 30.0), DIRECTIONS[name])
    rng = np.random.default_rng(2)
    image = Volume(gaussian_filter(rng.normal(size=g.shape), 2).astype(np.float32) * 100, g)
    grid = grid_for_spacing(g, target[1]) if target[0] == "spacing" else grid_for_shape(g, target[1])
    np.testing.assert_allclose(grid.center(), g.center(), atol=1e-9)
    inside = interior(g, grid)
    out = resample(image, grid, interpolation="linear")
    assert np.abs(out.array - sitk_resample(image, grid, sitk.sitkLinear))[inside].max() < 1e-4
    # cubic B-spline on every axis (no separate low-resolution axis) is SimpleITK's sitkBSpline
    out = resample(image, grid, interpolation="bspline", anisotropy_threshold=100.0)
    assert np.abs(out.array - sitk_resample(image, grid, sitk.sitkBSpline))[inside].max() < 1e-3


@pytest.mark.parametrize("name", DIRECTIONS)
def test_landmarks_with_a_low_resolution_x_axis_through_the_whole_geometric_chain(name):
    """A sagittal-like acquisition (the 3.4 mm axis is index x, ratio > 3), ``shape`` target."""
    from test_recipe_landmarks import BODY, BRIGHT, assert_landmarks_kept

    landmarks = [(4, 10, 12), (9, 28, 30), (14, 40, 20), (6, 15, 41), (11, 36, 8)]
    g = Geometry((18, 48, 50), (3.4, 0.8, 0.7), (40.0, -30.0, 12.0), DIRECTIONS[name])
    a = np.zeros(g.shape, np.float32)
    a[4:46, 5:45, 2:16] = BODY
    for i, j, k in landmarks:
        a[k, j, i] = BRIGHT
    points = g.index_to_physical(np.array(landmarks, float))
    for resample_params in ({"spacing": [1.0, 1.0, 1.0]}, {"shape": [30, 40, 50]}):
        steps = [
            {"op": "resample", **resample_params},
            {"op": "reorient", "to": "PIL"},
            {"op": "crop_body", "threshold_hu": 0.5, "margin_mm": 2},
            {"op": "pad_crop", "shape": [64, 64, 64]},
        ]
        out = run(steps, Volume(a, g)).image
        assert out.geometry.orientation == "PIL"
        assert_landmarks_kept(out, points)


# -- multi-channel windows through the geometric steps -----------------------------------------------
def test_stacked_windows_keep_their_channels_through_resample_crop_and_reorient():
    image, label = ct_case(direction_from_code("RPI"))
    steps = [
        {"op": "window", "preset": ["lung", "mediastinum", "bone"]},  # a list under "preset" stacks too
        {"op": "resample", "spacing": [1.0, 1.0, 1.0]},
        {"op": "crop_label", "margin_mm": 5},
        {"op": "pad_crop", "shape": [50, 50, 60]},
        {"op": "reorient", "to": "LPS"},
    ]
    res = run(steps, image, label)
    assert res.image.shape[3] == 3 and res.image.shape[:3] == res.label.shape
    assert Recipe.from_dict(res.provenance["recipe"]).to_dict() == res.provenance["recipe"]
    # each channel is what the same geometric chain makes of that window alone
    for c, preset in enumerate(["lung", "mediastinum", "bone"]):
        alone = run([{"op": "window", "preset": preset}, *steps[1:]], image, label).image
        assert np.array_equal(res.image.array[..., c], alone.array)
    back = restore_label(res.label, res.provenance).array  # 0.73 -> 1 mm loses resolution: not exact
    for v in (1, 3):
        assert 2 * np.sum((back == v) & (label.array == v)) / (np.sum(back == v) + np.sum(label.array == v)) > 0.9


# -- recipe validation: every message names step number, op and parameter ------------------------
@pytest.mark.parametrize(
    "step, parameter",
    [
        ({"op": "resample", "spacing": "1,1,1"}, "spacing"),
        ({"op": "resample", "shape": [64, 64]}, "shape"),
        ({"op": "crop_body", "margin_mm": -5}, "margin_mm"),
        ({"op": "pad_crop", "shape": [64, 64]}, "shape"),
        ({"op": "pad_crop", "shape": [4, 4, 4], "pad_value": float("inf")}, "pad_value"),
        ({"op": "window", "level": 40}, "width"),
        ({"op": "window", "preset": ["lung", "lungs"]}, "preset"),
        ({"op": "reorient", "to": "RAX"}, "to"),
        ({"op": "zscore", "extra_key": 1}, "extra_key"),
        ({"op": "clip_scale", "min": -1000}, "max"),
    ],
    ids=lambda v: v if isinstance(v, str) else v["op"],
)
def test_validation_messages_name_step_op_and_parameter(step, parameter):
    with pytest.raises(RecipeError) as info:
        Recipe.from_dict({"version": 1, "steps": [{"op": "zscore"}, step]})
    assert str(info.value).startswith(f"step 2 ({step['op']}): '{parameter}'")


@pytest.mark.parametrize(
    "recipe, message",
    [
        (
            {"version": 1, "steps": [{"op": "zscore"}, {"op": "frobnicate"}]},
            "step 2: 'op' 'frobnicate' is not a known step",
        ),
        ({"version": 1, "steps": [{"spacing": [1, 1, 1]}]}, "step 1: has no 'op'"),
        ({"version": 2, "steps": []}, "recipe version 2 is not supported"),
        ({"version": 1}, "'steps' must be a list"),
    ],
)
def test_structural_recipe_errors(recipe, message):
    with pytest.raises(RecipeError, match=re.escape(message)):
        Recipe.from_dict(recipe)


def test_an_empty_recipe_copies_the_input_and_extra_keys_survive():
    image, label = ct_case(np.eye(3))
    recipe = Recipe.from_dict({"version": 1, "name": "nothing", "steps": []})
    assert recipe.to_dict() == {"version": 1, "name": "nothing", "steps": []}
    res = run_recipe(recipe, image, label)
    assert np.array_equal(res.image.array, image.array) and res.image.geometry == image.geometry


@pytest.mark.parametrize(
    "step, parameter",
    [
        ({"op": "resample", "spacing": [0.001, 0.001, 0.001]}, "spacing"),
        ({"op": "pad_crop", "shape": [10**5, 10**5, 10**3]}, "shape"),
    ],
    ids=["spacing", "shape"],
)
def test_a_grid_too_large_for_memory_is_a_recipe_error_not_a_memory_error(step, parameter):
    image, _ = ct_case(np.eye(3))
    with pytest.raises(RecipeError, match=re.escape(f"step 1 ({step['op']}): '{parameter}' asks for a")):
        run([step], image)


# -- statistics ----------------------------------------------------------------------------------------
FINGERPRINT = {
    "foreground_intensity_properties_per_channel": {
        "0": {
            "max": 3000.0,
            "mean": 12.5,
            "median": 10.0,
            "min": -1000.0,
            "percentile_00_5": -500.25,
            "percentile_99_5": 700.75,
            "std": 210.3,
        },
        "1": {
            "max": 1.0,
            "mean": 0.0,
            "median": 0.0,
            "min": -1.0,
            "percentile_00_5": -2000.0,
            "percentile_99_5": 2000.0,
            "std": 1000.0,
        },
    },
    "spacings": [[3.3, 0.81, 0.73]],
}


def test_ct_normalization_without_statistics_fails_naming_the_step():
    image, _ = ct_case(np.eye(3))
    with pytest.raises(RecipeError, match=r"^step 1 \(ct_normalization\): needs the dataset's foreground statistics"):
        run([{"op": "ct_normalization"}], image)


def test_ct_normalization_with_an_nnunet_fingerprint_is_nnunets_own_result():
    schemes = pytest.importorskip("nnunetv2.preprocessing.normalization.default_normalization_schemes")
    image, _ = ct_case(np.eye(3))
    out = run([{"op": "ct_normalization"}], image, statistics=FINGERPRINT).image
    props = FINGERPRINT["foreground_intensity_properties_per_channel"]["0"]
    expected = schemes.CTNormalization(use_mask_for_norm=False, intensityproperties=props).run(image.array.copy())
    assert out.dtype == expected.dtype == np.float32 and np.array_equal(out.array, expected)


def test_ct_normalization_of_a_multichannel_image_uses_each_channels_numbers():
    schemes = pytest.importorskip("nnunetv2.preprocessing.normalization.default_normalization_schemes")
    image, _ = ct_case(np.eye(3))
    stacked = Volume(np.stack([image.array, image.array * 2], axis=-1), image.geometry)
    out = run([{"op": "ct_normalization"}], stacked, statistics=FINGERPRINT).image
    for c in (0, 1):
        props = FINGERPRINT["foreground_intensity_properties_per_channel"][str(c)]
        expected = schemes.CTNormalization(use_mask_for_norm=False, intensityproperties=props).run(
            stacked.array[..., c].astype(np.float32)
        )
        assert np.array_equal(out.array[..., c], expected)
    # one set of numbers (recipe or statistics pass) cannot serve several channels
    with pytest.raises(RecipeError, match="per channel"):
        run([{"op": "ct_normalization", "mean": 0, "std": 1, "percentile_00_5": -1000, "percentile_99_5": 1000}], stacked)


# -- labels: vanishing, dtypes ---------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.uint8, np.int32, np.int64, np.float32])
@pytest.mark.parametrize("interpolation", ["nearest", "label_linear"])
def test_a_label_that_vanishes_names_itself_and_the_other_interpolation(dtype, interpolation):
    image = Volume(np.zeros((16, 16, 16), np.float32), spacing=(0.5, 0.5, 0.5))
    a = np.zeros((16, 16, 16), dtype)
    a[3:9, 3:9, 3:9] = 2
    a[10, 11, 5] = 7  # one 0.5 mm voxel: gone at 2 mm
    other = "label_linear" if interpolation == "nearest" else "nearest"
    with pytest.raises(RecipeError) as info:
        run(
            [{"op": "resample", "spacing": [2, 2, 2], "label_interpolation": interpolation}], image, image.with_array(a)
        )
    text = str(info.value)
    assert text.startswith("step 1 (resample): label value(s) 7 (1 voxels) vanished")
    assert f"label_interpolation '{other}'" in text


def test_label_dtypes_and_ids_survive_resampling_and_restore():
    g = Geometry((16, 16, 16), (0.5, 0.5, 0.5))
    image = Volume(np.zeros(g.shape, np.float32), g)
    rng = np.random.default_rng(7)
    all_bytes = rng.integers(0, 256, g.shape).astype(np.uint8)
    big = np.zeros(g.shape, np.int32)
    big[2:8, 2:8, 2:8] = 2_000_000_000
    big[8:14, 8:14, 8:14] = 70_000
    big[1, 1, 1] = -5
    huge_float = np.zeros(g.shape, np.float64)
    huge_float[4:12, 4:12, 4:12] = 3e9  # float label ids beyond int32
    for a in (all_bytes, big, huge_float):
        res = run([{"op": "resample", "spacing": [0.25, 0.25, 0.25]}], image, Volume(a, g))
        assert set(np.unique(res.label.array)) == set(np.unique(a))
        assert np.array_equal(restore_label(res.label, res.provenance).array, a)


# -- command line: files, grids, refusals ---------------------------------------------------------------
@pytest.fixture()
def oblique_files(tmp_path):
    image, label = ct_case(rotation(17, -9, 4) @ direction_from_code("RPI"))
    write_image(image, tmp_path / "ct.nii.gz")
    write_image(label, tmp_path / "seg.nii.gz")
    recipe = {
        "version": 1,
        "steps": [
            {"op": "reorient", "to": "PIL"},
            {"op": "crop_body", "margin_mm": 3},
            {"op": "pad_crop", "shape": [64, 64, 64], "mode": "random"},
            {"op": "reorient", "to": "ASR"},
        ],
    }
    (tmp_path / "r.json").write_text(json.dumps(recipe))
    return tmp_path, label


@pytest.mark.parametrize("ext", [".nii.gz", ".nrrd"])
def test_cli_restore_of_a_prediction_written_by_another_tool_is_exact(oblique_files, ext):
    """The prediction is written with nibabel from the preprocessed file's affine (float32 sform
    noise) as float32; restore must accept it and return the labels exactly on the original grid."""
    nib = pytest.importorskip("nibabel")
    d, label = oblique_files
    out, lab_out = d / f"pre{ext}", d / f"pre_seg{ext}"
    argv = ["preprocess", str(d / "ct.nii.gz"), str(out), "--recipe", str(d / "r.json"), "--seed", "7"]
    assert main([*argv, "--label", str(d / "seg.nii.gz"), "--label-output", str(lab_out)]) == 0
    provenance = d / "pre.provenance.json"
    pre = read_image(out)
    pred = d / "pred.nii.gz"
    affine = pre.geometry.affine_ras()
    nib.save(nib.Nifti1Image(np.transpose(read_image(lab_out).array, (2, 1, 0)).astype(np.float32), affine), str(pred))
    for source in (pred, lab_out):
        restored = d / f"restored_{source.name}"
        assert main(["restore", str(source), str(restored), "--provenance", str(provenance)]) == 0
        back = read_image(restored)
        assert back.geometry.isclose(label.geometry, atol_mm=1e-3) and np.array_equal(back.array, label.array)


def test_cli_label_grid_tolerance_and_refusals(oblique_files, capsys):
    d, label = oblique_files
    g = label.geometry
    base = ["preprocess", str(d / "ct.nii.gz"), str(d / "o.nii.gz"), "--recipe", str(d / "r.json")]
    for shift, accepted in ((1e-4, True), (0.5, False)):
        moved = g.replace(origin=tuple(np.array(g.origin) + [shift, 0.0, 0.0]))
        write_image(Volume(label.array, moved), d / "seg_moved.nii.gz", overwrite=True)
        rc = main([*base, "--label", str(d / "seg_moved.nii.gz"), "--label-output", str(d / "lo.nii.gz"), "--overwrite"])
        err = capsys.readouterr().err
        if accepted:
            assert rc == 0
        else:
            assert rc == EXIT_ERROR and "the label's grid" in err and "differs from the image's" in err
            assert err.count("origin") == 1 and err.count("mm)") >= 1 and err.count("\n") == 1
    assert main(base) == EXIT_ERROR  # o.nii.gz exists from the accepted run
    assert "output exists" in capsys.readouterr().err
    before = (d / "ct.nii.gz").read_bytes()
    input_as_output = ["preprocess", str(d / "ct.nii.gz"), str(d / "ct.nii.gz"), "--recipe", str(d / "r.json")]
    assert main([*input_as_output, "--overwrite"]) == EXIT_ERROR
    assert "is also an input" in capsys.readouterr().err
    assert (d / "ct.nii.gz").read_bytes() == before
    label_as_output = [*base, "--label", str(d / "seg.nii.gz"), "--label-output", str(d / "seg.nii.gz"), "--overwrite"]
    assert main(label_as_output) == EXIT_ERROR
    assert "is also an input" in capsys.readouterr().err


def test_cli_restore_refuses_a_prediction_on_another_grid_naming_both(oblique_files, capsys):
    d, _ = oblique_files
    argv = ["preprocess", str(d / "ct.nii.gz"), str(d / "pre.nii.gz"), "--recipe", str(d / "r.json")]
    assert main([*argv, "--label", str(d / "seg.nii.gz"), "--label-output", str(d / "pre_seg.nii.gz")]) == 0
    capsys.readouterr()
    pre = read_image(d / "pre_seg.nii.gz")
    g = pre.geometry
    shifted = Volume(pre.array, g.replace(origin=tuple(np.array(g.origin) + [0.0, 0.5, 0.0])))
    write_image(shifted, d / "pred_shifted.nii.gz")
    rc = main(
        [
            "restore",
            str(d / "pred_shifted.nii.gz"),
            str(d / "back.nii.gz"),
            "--provenance",
            str(d / "pre.provenance.json"),
        ]
    )
    err = capsys.readouterr().err
    assert rc == EXIT_ERROR and "pred_shifted.nii.gz" in err and err.count("origin") == 2
    write_image(Volume(np.zeros((10, 10, 10), np.uint8)), d / "pred_small.nii.gz")
    rc = main(
        [
            "restore",
            str(d / "pred_small.nii.gz"),
            str(d / "back.nii.gz"),
            "--provenance",
            str(d / "pre.provenance.json"),
        ]
    )
    err = capsys.readouterr().err
    assert rc == EXIT_ERROR and "(10, 10, 10)" in err and str(g.size) in err
    rc = main(
        [
            "restore",
            str(d / "pre_seg.nii.gz"),
            str(d / "pre_seg.nii.gz"),
            "--provenance",
            str(d / "pre.provenance.json"),
            "--overwrite",
        ]
    )
    assert rc == EXIT_ERROR and "is also an input" in capsys.readouterr().err


@pytest.mark.pydicom_dependent
def test_cli_dicom_folder_with_two_series_and_a_label(tmp_path, capsys):
    from dicom_factory import new_uid, write_ct_series

    from MedPrepLib.sources import load_path

    folder = tmp_path / "dicom"
    first, second = new_uid(), new_uid()
    write_ct_series(folder, 4, rows=12, cols=16, series_uid=first)
    write_ct_series(folder, 6, rows=10, cols=14, series_uid=second, prefix="B")
    recipe = tmp_path / "r.json"
    recipe.write_text(
        json.dumps({"version": 1, "steps": [{"op": "reorient", "to": "RAS"}, {"op": "pad_crop", "shape": [20, 20, 8]}]})
    )
    volume = load_path(folder, series=second)
    lab = np.zeros(volume.shape, np.uint8)
    lab[1:4, 2:6, 3:9] = 2
    write_image(Volume(lab, volume.geometry), tmp_path / "lab.nii.gz")
    argv = ["preprocess", str(folder), str(tmp_path / "o.nii.gz"), "--recipe", str(recipe)]
    assert main(argv) == EXIT_ERROR and "--series" in capsys.readouterr().err
    extra = ["--series", second, "--label", str(tmp_path / "lab.nii.gz"), "--label-output", str(tmp_path / "lo.nii.gz")]
    assert main([*argv, *extra]) == 0
    assert read_image(tmp_path / "o.nii.gz").geometry.orientation == "RAS"
    restore = [
        "restore",
        str(tmp_path / "lo.nii.gz"),
        str(tmp_path / "back.nii.gz"),
        "--provenance",
        str(tmp_path / "o.provenance.json"),
    ]
    assert main(restore) == 0
    assert np.array_equal(read_image(tmp_path / "back.nii.gz").array, lab)


# -- determinism ------------------------------------------------------------------------------------------
def test_same_recipe_gives_byte_identical_files_with_1_or_4_threads(tmp_path, monkeypatch):
    from MedPrepLib.processing import blockwise

    monkeypatch.setattr(blockwise, "BLOCK_VOXELS", 4096)  # many blocks, so 4 threads really share them
    image, label = ct_case(direction_from_code("RPI"), size=(60, 50, 20))
    write_image(image, tmp_path / "ct.nii.gz")
    write_image(label, tmp_path / "seg.nii.gz")
    recipe = {
        "version": 1,
        "steps": [
            {
                "op": "resample",
                "spacing": [0.5, 0.9, 1.7],
                "interpolation": "bspline",
                "label_interpolation": "label_linear",
            },
            {"op": "clip_scale", "min": -1000, "max": 400},
            {"op": "zero_center", "mean": 0.25},
            {"op": "zscore", "mask": "label"},
            {"op": "crop_label", "margin_mm": 4},
            {"op": "pad_crop", "shape": [64, 48, 40], "mode": "random"},
        ],
    }
    (tmp_path / "r.json").write_text(json.dumps(recipe))
    digests = []
    for threads in ("1", "4", "1"):
        monkeypatch.setenv("MEDPREP_THREADS", threads)
        out = tmp_path / f"o{threads}.nii.gz"
        argv = [
            "preprocess",
            str(tmp_path / "ct.nii.gz"),
            str(out),
            "--recipe",
            str(tmp_path / "r.json"),
            "--seed",
            "3",
        ]
        argv += [
            "--label",
            str(tmp_path / "seg.nii.gz"),
            "--label-output",
            str(tmp_path / f"l{threads}.nii.gz"),
            "--overwrite",
        ]
        assert main(argv) == 0
        files = (out, tmp_path / f"l{threads}.nii.gz", tmp_path / f"o{threads}.provenance.json")
        digests.append([f.read_bytes() for f in files])
    assert digests[0] == digests[1] == digests[2]


# -- reorientation of an axis at exactly 45 degrees ----------------------------------------------------
@pytest.mark.parametrize("code", ALL_CODES)
def test_reorienting_a_45_degree_oblique_grid_is_idempotent_and_keeps_voxels_in_place(code):
    """At an exact 45-degree tie the closest code depends on the column order; reorienting again
    to the same code used to permute the axes again (a different array every time)."""
    c = np.sqrt(0.5)
    g = Geometry((5, 6, 7), (1.0, 2.0, 3.0), (4.0, -5.0, 6.0), [[c, -c, 0], [c, c, 0], [0, 0, 1]])
    image = Volume(np.arange(210, dtype=np.float32).reshape(g.shape), g)
    once = run([{"op": "reorient", "to": code}], image).image
    twice = run([{"op": "reorient", "to": code}], once).image
    assert twice.geometry == once.geometry and np.array_equal(twice.array, once.array)
    idx = np.rint(once.geometry.physical_to_index(physical_grid(g))).astype(int)
    assert np.array_equal(once.array[idx[..., 2], idx[..., 1], idx[..., 0]], image.array)


# -- N4 on thin stacks -----------------------------------------------------------------------------------
@pytest.mark.parametrize("slices", [2, 3, 5])
def test_n4_on_a_stack_of_few_slices_lowers_the_shrink_along_that_axis(slices):
    """A shrink of 4 left one voxel along z and ITK failed with "Refusing to change spacing"."""
    rng = np.random.default_rng(1)
    ramp = np.linspace(1.0, 2.0, 32)[None, None, :]
    a = (ramp * (100 + 50 * (rng.random((slices, 30, 32)) > 0.5))).astype(np.float32)
    res = run([{"op": "n4", "shrink_factor": 4, "mask": "all"}], Volume(a, spacing=(1.0, 1.0, 3.0)))
    assert np.isfinite(res.image.array).all()
    assert res.provenance["steps"][0]["record"]["shrink_factor"] == [4, 4, max(1, min(4, slices // 2))]
    # the x ramp (bias) is reduced: the two tissue classes' spread across x shrinks
    before = np.ptp([a[..., x][a[..., x] > 120 * ramp[0, 0, x]].mean() for x in (0, 31)])
    after_img = res.image.array
    after = np.ptp([after_img[..., x][a[..., x] > 120 * ramp[0, 0, x]].mean() for x in (0, 31)])
    assert after < before


@pytest.mark.parametrize("stored_as", ["LPS", "SAL", "IRP"])
def test_restore_accepts_a_prediction_stored_in_another_axis_order(oblique_files, stored_as):
    """Tools often save predictions reoriented (nibabel's canonical RAS, ITK's LPS): the same voxel
    centres in another axis order. Restore permutes them back exactly instead of refusing."""
    from MedPrepLib.processing.reorient import reorient

    d, label = oblique_files
    argv = ["preprocess", str(d / "ct.nii.gz"), str(d / "pre.nii.gz"), "--recipe", str(d / "r.json")]
    assert main([*argv, "--label", str(d / "seg.nii.gz"), "--label-output", str(d / "pre_seg.nii.gz")]) == 0
    pred = reorient(read_image(d / "pre_seg.nii.gz"), stored_as)
    assert pred.geometry.orientation != "ASR"  # the recipe's last step wrote ASR
    write_image(pred, d / "pred.nrrd")
    provenance = ["--provenance", str(d / "pre.provenance.json")]
    assert main(["restore", str(d / "pred.nrrd"), str(d / "back.nii.gz"), *provenance]) == 0
    back = read_image(d / "back.nii.gz")
    assert back.geometry.isclose(label.geometry, atol_mm=1e-3) and np.array_equal(back.array, label.array)


def test_bspline_resampling_is_byte_identical_whatever_the_thread_count():
    rng = np.random.default_rng(0)
    g = Geometry((97, 83, 41), (0.73, 0.81, 3.3), (1.0, 2.0, 3.0), direction_from_code("RPI"))
    image = Volume(rng.normal(size=g.shape).astype(np.float32) * 100, g)
    target = grid_for_spacing(g, (1.0, 1.0, 1.0))
    one = resample(image, target, interpolation="bspline", threads=1).array
    for threads in (2, 4):
        assert np.array_equal(resample(image, target, interpolation="bspline", threads=threads).array, one)


def test_a_relative_reference_image_is_read_beside_the_recipe_file(tmp_path, monkeypatch):
    image, label = ct_case(np.eye(3), size=(20, 20, 10), spacing=(1.0, 1.0, 2.0))
    folder = tmp_path / "recipes"
    folder.mkdir()
    ras = direction_from_code("RAS")
    reference = Geometry((30, 30, 30), (1.0, 1.0, 1.0), tuple(image.geometry.center() - ras @ np.full(3, 14.5)), ras)
    write_image(Volume(np.zeros(reference.shape, np.uint8), reference), folder / "grid.nii.gz")
    (folder / "r.json").write_text(
        json.dumps({"version": 1, "steps": [{"op": "resample", "reference": "grid.nii.gz"}]})
    )
    monkeypatch.chdir(tmp_path)  # not the recipe's folder
    recipe = Recipe.load(folder / "r.json")
    res = run_recipe(recipe, image, label)
    assert res.image.geometry.isclose(reference, atol_mm=1e-4)
    assert Recipe.from_dict(res.provenance["recipe"]) == recipe  # the provenance replays anywhere
    missing = folder / "missing.json"
    missing.write_text(json.dumps({"version": 1, "steps": [{"op": "resample", "reference": "nope.nii.gz"}]}))
    with pytest.raises(RecipeError, match=r"step 1 \(resample\): the 'reference' image does not exist"):
        run_recipe(Recipe.load(missing), image)


@pytest.mark.parametrize("op", ["resample", "pad_crop"])
def test_a_shape_written_as_whole_floats_is_accepted_as_integers(op):
    """Outside tools that write every JSON number as a float (64.0) must not be refused; 64.5 is."""
    recipe = Recipe.from_dict({"version": 1, "steps": [{"op": op, "shape": [24.0, 20.0, 16.0]}]})
    assert recipe.to_dict()["steps"][0]["shape"] == [24, 20, 16]
    assert all(type(v) is int for v in recipe.to_dict()["steps"][0]["shape"])
    image, _ = ct_case(np.eye(3))
    assert run_recipe(recipe, image).image.geometry.size == (24, 20, 16)
    with pytest.raises(RecipeError, match=rf"step 1 \({op}\): 'shape' must be a list of 3 positive integers"):
        Recipe.from_dict({"version": 1, "steps": [{"op": op, "shape": [24.5, 20, 16]}]})


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--label-output", "seg_out.png"], "cannot write format '.png'"),
        (["--label-output", "no_such_folder/seg.nii.gz"], "output folder does not exist"),
        (["--label-output", "lo.nii.gz", "--provenance", "no_such_folder/p.json"], "provenance folder does not exist"),
    ],
)
def test_cli_refuses_an_unwritable_output_before_writing_anything(oblique_files, capsys, monkeypatch, extra, message):
    """A label output that cannot be written used to fail after the image was written, leaving
    half a result that then blocked the re-run ('output exists')."""
    d, _ = oblique_files
    monkeypatch.chdir(d)
    argv = ["preprocess", "ct.nii.gz", "out.nii.gz", "--recipe", "r.json", "--label", "seg.nii.gz", *extra]
    assert main(argv) == EXIT_ERROR
    assert message in capsys.readouterr().err
    assert not (d / "out.nii.gz").exists() and not (d / "out.provenance.json").exists()


def test_a_negative_seed_is_a_clear_error_not_an_internal_one(oblique_files, capsys):
    d, _ = oblique_files
    argv = ["preprocess", str(d / "ct.nii.gz"), str(d / "o.nii.gz"), "--recipe", str(d / "r.json"), "--seed", "-1"]
    assert main(argv) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "the seed must be a non-negative integer, got -1" in err and "internal error" not in err
    assert not (d / "o.nii.gz").exists()


@pytest.mark.parametrize(
    "provenance, message",
    [
        ({"version": 1, "steps": [{"op": "reorient", "to": "RAS"}]}, "this is a recipe, not the provenance of a run"),
        ({"steps": [{"op": "reorient", "params": {"to": "RAS"}}]}, "its record has no usable 'input_geometry'"),
        (
            {
                "steps": [
                    {
                        "op": "reorient",
                        "params": {"to": "RAS"},
                        "record": {"input_geometry": Geometry((40, 36, 14)).to_dict()},
                    }
                ]
            },
            "its record cannot be undone",
        ),
        ({"format": "medprep-statistics", "steps": {"1": {}}}, "the provenance has no 'steps' list"),
    ],
    ids=["recipe", "no-input-grid", "no-permutation", "statistics"],
)
def test_restore_names_the_provenance_file_when_it_is_not_a_runs_provenance(oblique_files, capsys, provenance, message):
    """A recipe or a hand-made record given as provenance ended in an internal KeyError."""
    d, label = oblique_files
    (d / "p.json").write_text(json.dumps(provenance))
    argv = ["restore", str(d / "seg.nii.gz"), str(d / "back.nii.gz"), "--provenance", str(d / "p.json")]
    assert main(argv) == EXIT_ERROR
    err = capsys.readouterr().err
    assert message in err and f"{d / 'p.json'}:" in err and "internal error" not in err


@pytest.mark.parametrize(
    "recipe, message",
    [
        ({"version": 1, "steps": [{"op": "Resample", "spacing": [1, 1, 1]}]}, "(did you mean 'resample'?)"),
        (
            {"version": 1, "steps": [{"op": "resample", "spacings": [1, 1, 1]}]},
            "'spacings' is not a parameter of this step (did you mean 'spacing'?)",
        ),
        (
            {"version": 1, "steps": [{"op": "window", "preset": "lung", "ouput": "uint8"}]},
            "'ouput' is not a parameter of this step (did you mean 'output'?",
        ),
        ({"version": 1, "step": [{"op": "zscore"}]}, "'steps' must be a list of step objects (did you mean 'steps'?)"),
    ],
    ids=["op-case", "resample-key", "window-key", "steps-key"],
)
def test_near_miss_names_get_a_suggestion(recipe, message):
    with pytest.raises(RecipeError, match=re.escape(message)):
        Recipe.from_dict(recipe)
