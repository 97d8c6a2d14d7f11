"""Intensity steps against hand computations (issue 4, acceptance 2), and nnU-Net's own CT code."""

from __future__ import annotations

import numpy as np
import pytest

from MedPrepLib.errors import RecipeError
from MedPrepLib.recipe import Recipe, run_recipe
from MedPrepLib.recipe.window import PRESETS
from MedPrepLib.volume import Volume


def run(steps, image, label=None, **kwargs):
    return run_recipe(Recipe.from_dict({"version": 1, "steps": steps}), image, label, **kwargs)


def ct_volume(shape=(9, 33, 47), seed=3) -> Volume:
    """int16 HU-like values, read-only (a step writing into its input would fail)."""
    rng = np.random.default_rng(seed)
    a = rng.integers(-1100, 2500, size=shape).astype(np.int16)
    a.setflags(write=False)
    return Volume(a, spacing=(0.8, 0.8, 2.5), origin=(-10.0, 4.0, 7.5))


# -- padding --------------------------------------------------------------------------------------


def test_pad_to_air_sets_padding_and_out_of_field_voxels_to_air():
    a = np.array([[[-3024, -2048, -2000, -1999, -1000, 0, 40]]], np.int16)
    vol = Volume(a, metadata={"pixel_padding_value": 40})
    res = run([{"op": "pad_to_air"}], vol)
    assert res.image.dtype == np.int16
    assert res.image.array.ravel().tolist() == [-1000, -1000, -1000, -1999, -1000, 0, -1000]
    assert res.provenance["steps"][0]["record"]["voxels_set_to_air"] == 4
    assert a.ravel().tolist()[0] == -3024  # the input is untouched
    # Without out-of-field replacement, with an explicit padding value and another air value:
    res = run([{"op": "pad_to_air", "out_of_field": False, "padding_value": -2048, "air": -1024}], vol)
    assert res.image.array.ravel().tolist() == [-3024, -1024, -2000, -1999, -1000, 0, 40]


@pytest.mark.parametrize("dtype", [np.int16, np.uint16, np.int32, np.uint8, np.float32])
@pytest.mark.parametrize(
    "params",
    [
        {},
        {"threshold": -2000.5, "padding_value": -1000.5},  # fractional: compares as in real numbers
        {"threshold": -1e6, "padding_value": 70000},  # below / beyond every integer dtype
        {"threshold": 1e6, "air": 0},  # every voxel at or below
        {"threshold": 99.0, "padding_value": 200, "air": 0},
        {"out_of_field": False, "padding_value": 3},
    ],
)
def test_pad_to_air_on_integer_images_selects_what_real_numbers_would(dtype, params):
    # Integer images are compared in their own dtype (no float64 copy of each block): the
    # voxels replaced must be exactly those the comparison in real numbers picks.
    info = np.iinfo(dtype) if np.dtype(dtype).kind in "iu" else np.finfo(dtype)
    values = np.array([-3024, -2048, -2001, -2000, -1999, -1000, 0, 3, 99, 100, 200, 255, 3000, 70000], np.float64)
    values = values[(values >= info.min) & (values <= info.max)]
    a = np.resize(values, (2, 3, 20)).astype(dtype)
    step = {"op": "pad_to_air", "padding_value": "none", **params}
    threshold, air = step.get("threshold", -2000.0), step.get("air", -1000.0)
    if air < info.min:  # air -1000 does not fit an unsigned image: refused, saying so
        with pytest.raises(RecipeError, match="air value -1000 does not fit"):
            run([step], Volume(a))
        return
    res = run([step], Volume(a))
    expect = np.zeros(a.shape, bool)
    if step.get("out_of_field", True):
        expect |= a.astype(np.float64) <= threshold
    if step["padding_value"] != "none":
        expect |= a.astype(np.float64) == float(step["padding_value"])
    assert res.image.dtype == dtype
    assert np.array_equal(res.image.array, np.where(expect, np.array(air).astype(dtype), a))
    assert res.provenance["steps"][0]["record"]["voxels_set_to_air"] == int(expect.sum())


def test_pad_to_air_maps_the_loaders_stored_padding_value_through_the_rescale():
    a = np.array([[[-3024, -1024, -1000, 0, 40]]], np.int16)
    meta = {"pixel_padding_value": 0, "provenance": {"rescale": {"slope": 1.0, "intercept": -1024.0}}}
    res = run([{"op": "pad_to_air", "out_of_field": False}], Volume(a, metadata=meta))
    assert res.image.array.ravel().tolist() == [-3024, -1000, -1000, 0, 40]
    assert res.provenance["steps"][0]["record"]["padding_values"] == [-1024.0]
    meta["pixel_padding_value"] = [0, 2]  # several values in one series
    meta["provenance"]["rescale"]["slope"] = 2.0
    res = run([{"op": "pad_to_air", "out_of_field": False}], Volume(a, metadata=meta))
    assert res.provenance["steps"][0]["record"]["padding_values"] == [-1024.0, -1020.0]
    meta["provenance"]["rescale"]["slope"] = [1.0, 2.0]
    with pytest.raises(RecipeError, match=r"step 1 \(pad_to_air\): the series' rescale varies per slice"):
        run([{"op": "pad_to_air"}], Volume(a, metadata=meta))


# -- window ---------------------------------------------------------------------------------------


def test_presets_are_the_issue_values():
    assert PRESETS == {
        "lung": (-600, 1500),
        "mediastinum": (50, 350),
        "abdomen": (40, 400),
        "liver": (30, 150),
        "bone": (400, 1800),
        "brain": (40, 80),
        "subdural": (75, 215),
    }


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_window_preset_matches_hand_formula(preset):
    vol = ct_volume()
    level, width = PRESETS[preset]
    expected = np.clip((vol.array.astype(np.float64) - (level - width / 2)) / width, 0, 1)
    out = run([{"op": "window", "preset": preset}], vol).image
    assert out.dtype == np.float32 and out.geometry == vol.geometry
    np.testing.assert_allclose(out.array, expected, rtol=0, atol=2e-6)


def test_window_level_width_exact_points_and_uint8():
    x = np.array([[[-1000, -160, 0, 40, 240, 1000]]], np.int16)
    vol = Volume(x)
    out = run([{"op": "window", "level": 40, "width": 400}], vol).image.array.ravel()
    np.testing.assert_allclose(out, [0.0, 0.0, 0.4, 0.5, 1.0, 1.0], atol=1e-7)
    u8 = run([{"op": "window", "level": 40, "width": 400, "output": "uint8"}], vol).image
    assert u8.dtype == np.uint8
    # 255 * 0.4 = 102; 255 * 0.5 = 127.5 rounds to even, 128.
    assert u8.array.ravel().tolist() == [0, 0, 102, 128, 255, 255]


def test_window_from_series_uses_dicom_window_and_index():
    vol = Volume(
        np.array([[[-160, 40, 240]]], np.int16), metadata={"window_center": [40, -600], "window_width": [400, 1500]}
    )
    first = run([{"op": "window", "from_series": True}], vol)
    np.testing.assert_allclose(first.image.array.ravel(), [0.0, 0.5, 1.0], atol=1e-7)
    assert first.provenance["steps"][0]["record"]["windows"][0] == {"level": 40.0, "width": 400.0, "source": "series"}
    second = run([{"op": "window", "from_series": True, "window_index": 1}], vol).image.array.ravel()
    np.testing.assert_allclose(second, np.clip((np.array([-160, 40, 240]) + 1350) / 1500, 0, 1), atol=1e-6)
    with pytest.raises(RecipeError, match=r"step 1 \(window\).*no WindowCenter/WindowWidth entry 2"):
        run([{"op": "window", "from_series": True, "window_index": 2}], vol)


def test_stacked_windows_are_channels_last():
    vol = ct_volume()
    res = run([{"op": "window", "windows": ["lung", {"level": 40, "width": 400}, "bone"]}], vol)
    assert res.image.shape == (*vol.shape, 3)
    for c, step in enumerate(
        [
            {"op": "window", "preset": "lung"},
            {"op": "window", "level": 40, "width": 400},
            {"op": "window", "preset": "bone"},
        ]
    ):
        np.testing.assert_array_equal(res.image.array[..., c], run([step], vol).image.array)
    u8 = run([{"op": "window", "presets": ["brain", "subdural"], "output": "uint8"}], vol).image
    assert u8.shape == (*vol.shape, 2) and u8.dtype == np.uint8


# -- clip/scale, zero-centre ------------------------------------------------------------------


def test_clip_scale_classic_ct_range():
    x = np.array([[[-2000, -1000, -300, 400, 1000]]], np.int16)
    out = run([{"op": "clip_scale", "min": -1000, "max": 400}], Volume(x)).image
    assert out.dtype == np.float32
    np.testing.assert_allclose(out.array.ravel(), [0, 0, 0.5, 1, 1], atol=1e-7)
    out = run([{"op": "clip_scale", "min": -1000, "max": 400, "out": [-1, 1]}], Volume(x)).image
    np.testing.assert_allclose(out.array.ravel(), [-1, -1, 0, 1, 1], atol=1e-6)


def test_clip_scale_then_zero_center_by_given_mean():
    vol = ct_volume()
    res = run([{"op": "clip_scale", "min": -1000, "max": 400}, {"op": "zero_center", "mean": 0.25}], vol)
    expected = (np.clip(vol.array.astype(np.float64), -1000, 400) + 1000) / 1400 - 0.25
    np.testing.assert_allclose(res.image.array, expected, rtol=0, atol=1e-6)
    assert res.provenance["steps"][1]["record"] == {"mean": 0.25}


def test_zero_center_by_dataset_needs_statistics():
    with pytest.raises(RecipeError, match=r"step 1 \(zero_center\): 'mean' is \"dataset\" but no dataset statistics"):
        run([{"op": "zero_center", "mean": "dataset"}], ct_volume())
    res = run([{"op": "zero_center", "mean": "dataset"}], ct_volume(), statistics={"zero_center": {"mean": 100.5}})
    np.testing.assert_allclose(res.image.array, ct_volume().array - 100.5, atol=1e-4)


# -- z-score ----------------------------------------------------------------------------------


def test_zscore_whole_volume():
    vol = ct_volume()
    x = vol.array.astype(np.float64)
    res = run([{"op": "zscore"}], vol)
    np.testing.assert_allclose(res.image.array, (x - x.mean()) / x.std(), rtol=0, atol=2e-6)
    rec = res.provenance["steps"][0]["record"]
    assert rec["mean"] == pytest.approx(x.mean(), rel=1e-14) and rec["std"] == pytest.approx(x.std(), rel=1e-12)


def test_zscore_float_input_and_nonzero_mask_with_fill():
    rng = np.random.default_rng(1)
    x = rng.normal(300.0, 40.0, size=(6, 20, 24)).astype(np.float32)
    x[:, :5] = 0.0  # MR-like zero background
    res = run([{"op": "zscore", "mask": "nonzero"}], Volume(x))
    fg = x[x != 0].astype(np.float64)
    np.testing.assert_allclose(res.image.array, (x - fg.mean()) / fg.std(), rtol=0, atol=2e-5)
    res = run([{"op": "zscore", "mask": "nonzero", "fill_outside": 0}], Volume(x))
    assert np.all(res.image.array[:, :5] == 0)
    np.testing.assert_allclose(res.image.array[:, 5:], ((x - fg.mean()) / fg.std())[:, 5:], atol=2e-5)


def test_zscore_label_and_named_mask():
    vol = ct_volume()
    lab = np.zeros(vol.shape, np.uint8)
    lab[2:6, 10:20, 5:30] = 3
    x = vol.array.astype(np.float64)
    sel = x[lab > 0]
    res = run([{"op": "zscore", "mask": "label"}], vol, Volume(lab, vol.geometry))
    np.testing.assert_allclose(res.image.array, (x - sel.mean()) / sel.std(), atol=2e-6)
    res2 = run([{"op": "zscore", "mask": "organ"}], vol, masks={"organ": Volume(lab, vol.geometry)})
    np.testing.assert_array_equal(res.image.array, res2.image.array)
    with pytest.raises(RecipeError, match=r"step 1 \(zscore\): 'mask' names 'liver'.*given: organ"):
        run([{"op": "zscore", "mask": "liver"}], vol, masks={"organ": Volume(lab, vol.geometry)})
    with pytest.raises(RecipeError, match=r"step 1 \(zscore\).*no label map"):
        run([{"op": "zscore", "mask": "label"}], vol)


def test_zscore_constant_image_only_centres():
    res = run([{"op": "zscore"}], Volume(np.full((3, 4, 5), 7, np.int16)))
    assert np.all(res.image.array == 0)
    assert res.provenance["steps"][0]["record"]["std_was_zero"] is True


def test_zscore_multichannel_is_per_channel():
    rng = np.random.default_rng(5)
    x = np.stack([rng.normal(0, 1, (4, 6, 8)), rng.normal(100, 20, (4, 6, 8))], axis=-1).astype(np.float32)
    out = run([{"op": "zscore"}], Volume(x)).image.array
    for c in range(2):
        xc = x[..., c].astype(np.float64)
        np.testing.assert_allclose(out[..., c], (xc - xc.mean()) / xc.std(), atol=2e-5)


# -- CT normalization ------------------------------------------------------------------------


def test_ct_normalization_with_given_numbers_matches_hand_computation():
    vol = ct_volume()
    props = {"mean": 80.5, "std": 300.25, "percentile_00_5": -990.5, "percentile_99_5": 1500.0}
    res = run([{"op": "ct_normalization", **props}], vol)
    expected = (np.clip(vol.array.astype(np.float64), -990.5, 1500.0) - 80.5) / 300.25
    np.testing.assert_allclose(res.image.array, expected, rtol=0, atol=2e-6)
    assert res.provenance["steps"][0]["record"] == props | {"source": "recipe"}


def test_ct_normalization_without_statistics_says_what_to_do():
    with pytest.raises(RecipeError, match=r"step 1 \(ct_normalization\): needs the dataset's foreground statistics"):
        run([{"op": "ct_normalization"}], ct_volume())


@pytest.mark.consumers
@pytest.mark.parametrize("dtype", [np.int16, np.float32])
def test_ct_normalization_is_bit_identical_to_nnunet(dtype):
    schemes = pytest.importorskip(
        "nnunetv2.preprocessing.normalization.default_normalization_schemes",
        reason="nnunetv2 is not installed (pip install medprep[test-consumers])",
    )
    vol = ct_volume(shape=(7, 64, 80))
    vol = Volume(vol.array.astype(dtype), vol.geometry)
    props = {
        "mean": 83.69158935546875,
        "std": 301.0929870605469,
        "percentile_00_5": -987.0,
        "percentile_99_5": 1493.0349,
    }
    theirs = schemes.CTNormalization(use_mask_for_norm=False, intensityproperties=props).run(vol.array.copy())
    # Through statistics (as from the statistics pass) and as an nnU-Net fingerprint.
    ours = run([{"op": "ct_normalization"}], vol, statistics={"steps": {"1": props}}).image.array
    assert ours.dtype == theirs.dtype == np.float32
    np.testing.assert_array_equal(ours, theirs)
    fingerprint = {"foreground_intensity_properties_per_channel": {"0": props}}
    np.testing.assert_array_equal(run([{"op": "ct_normalization"}], vol, statistics=fingerprint).image.array, theirs)


# -- cast -----------------------------------------------------------------------------------------


def test_cast_rounds_half_to_even_and_refuses_overflow():
    x = Volume(np.array([[[-1.5, -0.4, 2.5, 3.5, 254.6]]], np.float32))
    out = run([{"op": "cast", "dtype": "int16"}], x).image
    assert out.dtype == np.int16 and out.array.ravel().tolist() == [-2, 0, 2, 4, 255]
    with pytest.raises(RecipeError, match=r"step 1 \(cast\): values -1.5..254.6 do not fit uint8"):
        run([{"op": "cast", "dtype": "uint8"}], Volume(np.array([[[-1.5, 254.6]]], np.float32)))
    out = run([{"op": "cast", "dtype": "uint8", "clip": True}], x).image
    assert out.array.ravel().tolist() == [0, 0, 2, 4, 255]
    with pytest.raises(RecipeError, match="NaN"):
        run([{"op": "cast", "dtype": "int16"}], Volume(np.array([[[np.nan, 1.0]]], np.float32)))
    assert run([{"op": "cast", "dtype": "float32"}], ct_volume()).image.dtype == np.float32
    # 255.4 rounds to 255, which fits uint8: no overflow error.
    assert run(
        [{"op": "cast", "dtype": "uint8"}], Volume(np.array([[[255.4, -0.4]]], np.float32))
    ).image.array.ravel().tolist() == [255, 0]


def test_non_finite_voxels_are_refused_by_normalisations():
    x = Volume(np.array([[[1.0, np.inf, 3.0]]], np.float32))
    with pytest.raises(RecipeError, match=r"step 1 \(clip_scale\): the image holds NaN or infinite voxels"):
        run([{"op": "clip_scale", "min": 0, "max": 1}], x)


def test_chained_steps_reuse_their_own_buffer_but_never_the_input():
    vol = ct_volume()
    before = vol.array.copy()
    steps = [{"op": "clip_scale", "min": -1000, "max": 400}, {"op": "zscore"}, {"op": "zero_center", "mean": 0.5}]
    chained = run(steps, vol).image.array
    one_by_one = vol
    for s in steps:
        one_by_one = run([s], one_by_one).image
    np.testing.assert_array_equal(chained, one_by_one.array)
    np.testing.assert_array_equal(vol.array, before)


def test_blocks_do_not_change_results_for_non_contiguous_input():
    base = np.asarray(ct_volume(shape=(8, 40, 60)).array)
    view = base[:, ::2, ::3]  # not C-contiguous: handled slab by slab
    out = run([{"op": "zscore"}], Volume(view)).image.array
    np.testing.assert_array_equal(out, run([{"op": "zscore"}], Volume(np.ascontiguousarray(view))).image.array)


def test_statistics_blocks_larger_than_the_work_buffer(monkeypatch):
    from MedPrepLib.processing import blockwise

    monkeypatch.setattr(blockwise, "BLOCK_VOXELS", 64)  # work buffer smaller than a slab
    base = np.asarray(ct_volume(shape=(5, 30, 40)).array)
    view = base[:, :, ::2]
    x = view.astype(np.float64)
    for arr in (view, view.astype(np.float32)):
        out = run([{"op": "zscore"}], Volume(arr)).image.array
        np.testing.assert_allclose(out, (x - x.mean()) / x.std(), atol=2e-6)


@pytest.mark.parametrize(
    "steps",
    [
        [{"op": "zscore"}],
        [{"op": "zscore", "mask": "label", "fill_outside": 0}],
        [{"op": "clip_scale", "min": -1000, "max": 400}, {"op": "zscore", "mask": "nonzero"}],
        [{"op": "ct_normalization", "mean": 80.5, "std": 300.25, "percentile_00_5": -990.5, "percentile_99_5": 1500.0}],
        [{"op": "window", "windows": ["lung", "bone"], "output": "uint8"}],
        [{"op": "pad_to_air", "padding_value": 7}, {"op": "cast", "dtype": "uint16", "clip": True}],
    ],
)
def test_results_do_not_depend_on_the_number_of_threads(monkeypatch, steps):
    import json

    from MedPrepLib.processing import blockwise

    monkeypatch.setattr(blockwise, "BLOCK_VOXELS", 1000)  # many blocks even for a small volume
    vol = ct_volume()
    lab = Volume((np.arange(vol.array.size).reshape(vol.shape) % 3).astype(np.uint8), vol.geometry)
    results = []
    for threads in ("1", "3"):
        monkeypatch.setenv("MEDPREP_THREADS", threads)
        res = run(steps, vol, lab)
        results.append((res.image.array, json.dumps(res.provenance["steps"])))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    assert results[0][1] == results[1][1]


@pytest.mark.parametrize(
    "step",
    [
        {"op": "pad_to_air"},
        {"op": "clip_scale", "min": -1000, "max": 400},
        {"op": "window", "preset": "lung"},
        {"op": "window", "preset": "lung", "output": "uint8"},
        {"op": "zscore"},
        {"op": "zscore", "mask": "nonzero", "fill_outside": 0},
        {"op": "ct_normalization", "mean": 80.5, "std": 300.25, "percentile_00_5": -990.5, "percentile_99_5": 1500.0},
        {"op": "cast", "dtype": "uint8", "clip": True},
    ],
    ids=lambda s: "-".join(str(v) for v in s.values())[:40],
)
def test_no_full_size_temporaries(step):
    """Issue 4's budget is input + output + one float32 copy; steps stay well under it: the
    traced peak beyond the output is less than half a float32 copy (block buffers only)."""
    import tracemalloc

    vol = ct_volume(shape=(48, 128, 160))  # 983,040 voxels, about 4 blocks
    recipe = Recipe.from_dict({"version": 1, "steps": [step]})
    run_recipe(recipe, vol)  # warm up: per-thread block buffers, imports
    tracemalloc.start()
    try:
        out = run_recipe(recipe, vol).image.array
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < out.nbytes + 2 * vol.array.size, (peak, out.nbytes)
