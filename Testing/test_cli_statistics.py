"""``medprep statistics``: the statistics pass from the command line, read back by preprocess."""

from __future__ import annotations

import json

import numpy as np
import pytest

from MedPrepLib.cli import main
from MedPrepLib.imageio import read_image, write_image
from MedPrepLib.recipe import Recipe, compute_statistics, run_recipe
from MedPrepLib.volume import Volume


@pytest.fixture
def cohort(tmp_path):
    rng = np.random.default_rng(3)
    images, labels = [], []
    for k in range(3):
        ct = rng.normal(40 + 10 * k, 80, (12, 20, 24)).astype(np.int16)
        seg = np.zeros(ct.shape, np.uint8)
        seg[3:9, 5:15, 6 + k : 18] = 1
        volume = Volume(ct, spacing=(0.8, 0.8, 2.0))
        images.append(write_image(volume, tmp_path / f"ct{k}.nii.gz"))
        labels.append(write_image(Volume(seg, volume.geometry), tmp_path / f"seg{k}.nii.gz"))
    return tmp_path, images, labels


SAMPLES = 5000  # per case; nnU-Net's default (10e7 / cases) makes the test slow, not stronger
RECIPE = {
    "version": 1,
    "steps": [{"op": "resample", "spacing": [1.0, 1.0, 1.0]}, {"op": "ct_normalization", "samples_per_case": SAMPLES}],
}


def _cases(images, labels):
    return [(read_image(i), read_image(s)) for i, s in zip(images, labels)]


def test_with_a_recipe_equals_the_library_pass_and_preprocess_uses_it(cohort, capsys):
    d, images, labels = cohort
    (d / "r.json").write_text(json.dumps(RECIPE))
    argv = ["statistics", *map(str, images), "--labels", *map(str, labels), "--recipe", str(d / "r.json")]
    assert main([*argv, "-o", str(d / "stats.json")]) == 0
    written = json.loads((d / "stats.json").read_text())
    expected = compute_statistics(Recipe.from_dict(RECIPE), _cases(images, labels))
    assert written == json.loads(json.dumps(expected))
    assert written["steps"]["2"]["op"] == "ct_normalization"
    out = d / "o.nii.gz"
    assert main(["preprocess", str(images[0]), str(out), "--recipe", str(d / "r.json"), "--statistics", str(d / "stats.json")]) == 0
    direct = run_recipe(Recipe.from_dict(RECIPE), read_image(images[0]), statistics=expected).image
    np.testing.assert_array_equal(read_image(out).array, direct.array)
    assert main([*argv, "-o", str(d / "stats.json")]) == 2  # never replaced without --overwrite
    assert "output exists" in capsys.readouterr().err


def test_without_a_recipe_writes_nnunet_foreground_properties(cohort):
    d, images, labels = cohort
    argv = ["statistics", *map(str, images), "--labels", *map(str, labels), "--samples-per-case", str(SAMPLES)]
    assert main([*argv, "-o", str(d / "fp.json")]) == 0
    props = json.loads((d / "fp.json").read_text())["foreground_intensity_properties_per_channel"]["0"]
    one_step = Recipe.from_dict({"version": 1, "steps": [{"op": "ct_normalization", "samples_per_case": SAMPLES}]})
    expected = compute_statistics(one_step, _cases(images, labels))["steps"]["1"]
    assert props == {k: v for k, v in json.loads(json.dumps(expected)).items() if k != "op"}
    # any recipe's ct_normalization step takes them, whatever its position
    (d / "r.json").write_text(json.dumps(RECIPE))
    assert main(["preprocess", str(images[1]), str(d / "o.nii.gz"), "--recipe", str(d / "r.json"), "--statistics", str(d / "fp.json")]) == 0


def test_refusals(cohort, capsys):
    d, images, labels = cohort
    assert main(["statistics", *map(str, images), "--labels", str(labels[0]), "-o", str(d / "s.json")]) == 2
    assert "3 input(s) but 1 label map(s)" in capsys.readouterr().err
    assert main(["statistics", *map(str, images), "-o", str(d / "s.json")]) == 2
    assert "need a label map per case" in capsys.readouterr().err
    (d / "plain.json").write_text(json.dumps({"version": 1, "steps": [{"op": "clip_scale", "min": 0, "max": 1}]}))
    assert main(["statistics", str(images[0]), "--recipe", str(d / "plain.json"), "-o", str(d / "s.json")]) == 2
    assert "nothing to measure" in capsys.readouterr().err
    assert not (d / "s.json").exists()


def test_the_ct_normalization_hint_names_real_commands(cohort, capsys):
    d, images, _ = cohort
    (d / "r.json").write_text(json.dumps(RECIPE))
    assert main(["preprocess", str(images[0]), str(d / "o.nii.gz"), "--recipe", str(d / "r.json")]) == 2
    err = capsys.readouterr().err
    assert "medprep statistics" in err and "medprep preprocess --statistics" in err
    from MedPrepLib.cli import build_parser

    commands = build_parser()._subparsers._group_actions[0].choices
    assert "statistics" in commands
