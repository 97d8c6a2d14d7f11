"""The statistics pass: nnU-Net's fingerprint numbers exactly, dataset means, dependent steps."""

from __future__ import annotations

import numpy as np
import pytest

from MedPrepLib.errors import RecipeError
from MedPrepLib.imageio import write_image
from MedPrepLib.recipe import Recipe, compute_statistics, run_recipe
from MedPrepLib.recipe.base import RunContext
from MedPrepLib.volume import Volume


def make_cases(n=3, empty_foreground_case=False):
    """CT-like cases with labels; case 0 has zero-valued slabs around it (nnU-Net crops those)
    and a labelled voxel inside the zero slab, which nnU-Net's crop leaves out."""
    rng = np.random.default_rng(11)
    cases = []
    for k in range(n):
        shape = (8 + k, 30, 26)
        img = rng.integers(-1024, 1800, size=shape).astype(np.int16)
        lab = np.zeros(shape, np.uint8)
        lab[2:6, 8 : 20 + k, 5:18] = 1
        lab[3, 10:12, 4:9] = 2
        if k == 0:
            img[:2] = 0
            img[:, :, -3:] = 0
            lab[0, 5, 5] = 1  # outside the nonzero box: excluded by nnU-Net
        if empty_foreground_case and k == n - 1:
            lab[:] = 0
        geom = dict(spacing=(0.9, 0.9, 2.0 + k), origin=(1.0 * k, -2.0, 3.0))
        cases.append((Volume(img, **geom), Volume(lab, **geom)))
    return cases


def nnunet_fingerprint(tmp_path, cases, num_samples):
    """nnunetv2's own per-case extraction (analyze_case on files, its SimpleITK reader) and the
    aggregation of DatasetFingerprintExtractor.run (which needs a full dataset folder and a
    process pool, so its few aggregation lines are repeated here verbatim)."""
    fe = pytest.importorskip(
        "nnunetv2.experiment_planning.dataset_fingerprint.fingerprint_extractor",
        reason="nnunetv2 is not installed (pip install medprep[test-consumers])",
    )
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    results = []
    for k, (img, lab) in enumerate(cases):
        ip = write_image(img, tmp_path / f"case{k}_0000.nii.gz")
        lp = write_image(lab, tmp_path / f"case{k}.nii.gz")
        results.append(fe.DatasetFingerprintExtractor.analyze_case([str(ip)], str(lp), SimpleITKIO, num_samples))
    foreground = [np.concatenate([r[2][i] for r in results]) for i in range(len(results[0][2]))]
    foreground = np.array(foreground)
    p005, median, p995 = np.percentile(foreground[0], np.array((0.5, 50.0, 99.5)))
    return {
        "mean": float(np.mean(foreground[0])),
        "median": float(median),
        "std": float(np.std(foreground[0])),
        "min": float(np.min(foreground[0])),
        "max": float(np.max(foreground[0])),
        "percentile_99_5": float(p995),
        "percentile_00_5": float(p005),
    }


@pytest.mark.consumers
@pytest.mark.parametrize("empty_case", [False, True])
def test_ct_statistics_equal_nnunet_fingerprint(tmp_path, empty_case):
    cases = make_cases(empty_foreground_case=empty_case)
    recipe = Recipe.from_dict({"version": 1, "steps": [{"op": "ct_normalization", "samples_per_case": 5000}]})
    ours = compute_statistics(recipe, cases)
    theirs = nnunet_fingerprint(tmp_path, cases, 5000)
    got = ours["steps"]["1"]
    assert {k: got[k] for k in theirs} == theirs  # exact: same sample, same float32/float64 arithmetic
    assert got["samples"] == 5000 * (len(cases) - empty_case)
    assert ours["cases"] == len(cases)


def test_ct_statistics_hand_check_without_sampling_noise():
    """With one foreground value per case the sample is that value, whatever the draw."""
    cases = []
    for value in (-100, 300):
        img = np.full((4, 5, 6), 50, np.int16)
        lab = np.zeros_like(img, dtype=np.uint8)
        img[1:3, 1:4, 2:5] = value
        lab[1:3, 1:4, 2:5] = 1
        cases.append((Volume(img), Volume(lab)))
    recipe = Recipe.from_dict({"version": 1, "steps": [{"op": "ct_normalization", "samples_per_case": 10}]})
    s = compute_statistics(recipe, cases)["steps"]["1"]
    assert (s["mean"], s["std"], s["min"], s["max"]) == (100.0, 200.0, -100.0, 300.0)
    assert s["percentile_00_5"] == -100.0 and s["percentile_99_5"] == 300.0


def test_default_sample_size_is_nnunets_rule():
    img, lab = make_cases(1)[0]
    step = Recipe.from_dict({"version": 1, "steps": [{"op": "ct_normalization"}]}).steps[0]
    ctx = RunContext()
    ctx.where = "step 1 (ct_normalization)"
    ctx.n_cases = 25_000  # int(10e7 // 25000) = 4000 samples per case
    assert len(step.collect_statistics(img, lab, ctx)) == 4000
    ctx.n_cases = None
    with pytest.raises(RecipeError, match="'samples_per_case' is not set and the number of cases is unknown"):
        step.collect_statistics(img, lab, ctx)


def test_statistics_then_run_uses_them_and_records_them():
    cases = make_cases()
    recipe = Recipe.from_dict({"version": 1, "steps": [{"op": "ct_normalization", "samples_per_case": 2000}]})
    stats = compute_statistics(recipe, cases)
    s = stats["steps"]["1"]
    img = cases[1][0]
    out = run_recipe(recipe, img, statistics=stats)
    x = img.array.astype(np.float64)
    expected = (np.clip(x, s["percentile_00_5"], s["percentile_99_5"]) - s["mean"]) / s["std"]
    np.testing.assert_allclose(out.image.array, expected, atol=1e-5)
    assert out.provenance["steps"][0]["record"]["source"] == "statistics"
    assert out.provenance["statistics"] == stats


def test_dataset_mean_after_earlier_steps_and_dependent_statistics():
    cases = make_cases()
    recipe = Recipe.from_dict(
        {
            "version": 1,
            "steps": [
                {"op": "clip_scale", "min": -1000, "max": 400},
                {"op": "zero_center", "mean": "dataset"},
                {"op": "ct_normalization", "samples_per_case": 100},
                {"op": "zero_center", "mean": "dataset"},
            ],
        }
    )
    stats = compute_statistics(recipe, cases)
    assert sorted(stats["steps"]) == ["2", "3", "4"]
    scaled = [(np.clip(img.array.astype(np.float64), -1000, 400) + 1000) / 1400 for img, _ in cases]
    hand = np.concatenate([s.ravel() for s in scaled]).mean()
    assert stats["steps"]["2"]["mean"] == pytest.approx(hand, rel=1e-6)
    # Step 4's mean is measured on what step 4 sees: the output of steps 1-3 with their statistics.
    outputs = [run_recipe(Recipe(recipe.steps[:3]), img, lab, statistics=stats).image.array for img, lab in cases]
    hand4 = np.concatenate([o.ravel().astype(np.float64) for o in outputs]).mean()
    assert stats["steps"]["4"]["mean"] == pytest.approx(hand4, rel=1e-9, abs=1e-9)
    with pytest.raises(RecipeError, match="pass them as a list or a function returning a fresh iterator"):
        compute_statistics(recipe, iter(cases))
    assert compute_statistics(recipe, lambda: iter(cases)) == stats


def test_statistics_need_labels_and_cases():
    recipe = Recipe.from_dict({"version": 1, "steps": [{"op": "ct_normalization", "samples_per_case": 10}]})
    img, _ = make_cases(1)[0]
    with pytest.raises(RecipeError, match=r"step 1 \(ct_normalization\): the statistics pass needs a label map"):
        compute_statistics(recipe, [(img, None)])
    with pytest.raises(RecipeError, match="got no cases"):
        compute_statistics(recipe, [])
    assert compute_statistics(Recipe.from_dict({"version": 1, "steps": [{"op": "zscore"}]}), []) == {}


def test_statistics_of_another_recipe_are_refused():
    cases = make_cases(2)
    stats = compute_statistics(
        Recipe.from_dict({"version": 1, "steps": [{"op": "zero_center", "mean": "dataset"}]}), cases
    )
    other = Recipe.from_dict({"version": 1, "steps": [{"op": "ct_normalization"}]})
    with pytest.raises(
        RecipeError, match=r"step 1 \(ct_normalization\): the statistics given for step 1 are for 'zero_center'"
    ):
        run_recipe(other, cases[0][0], statistics=stats)
