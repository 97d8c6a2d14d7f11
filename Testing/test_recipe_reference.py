"""The recipe reference is written from the steps' declarations, and the declarations are what
the parsers really accept: every declared parameter parses, every default is the one applied,
nothing is read that is not declared, and docs/recipes.md is what the code writes today."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from MedPrepLib.cli import main
from MedPrepLib.errors import RecipeError
from MedPrepLib.recipe import STEP_TYPES, Recipe, reference
from MedPrepLib.recipe.base import Param, Params
from MedPrepLib.recipe.window import PRESETS

REPO = Path(__file__).resolve().parents[1]

# For each op: recipes that together give every declared parameter a valid value.
EXAMPLES = {
    "pad_to_air": [{"padding_value": -2000, "air": -1024, "threshold": -3000, "out_of_field": False}],
    "clip_scale": [{"min": -1000, "max": 400, "out": [-1, 1]}],
    "window": [
        {"preset": "lung", "output": "uint8"},
        {"level": 40, "width": 400},
        {"from_series": True, "window_index": 1},
        {"presets": ["lung", {"level": 40, "width": 400}]},
        {"windows": ["bone"]},
    ],
    "zscore": [{"mask": "nonzero", "fill_outside": 0}],
    "ct_normalization": [
        {"mean": 1, "std": 2, "percentile_00_5": -100, "percentile_99_5": 100},
        {"samples_per_case": 10, "seed": 7, "channel": 1},
    ],
    "zero_center": [{"mean": 3.5}, {"mean": "dataset"}],
    "n4": [{"shrink_factor": 2, "iterations": [10, 10], "convergence_threshold": 0.01, "control_points": 5, "mask": "all"}],
    "cast": [{"dtype": "int16", "clip": True}],
    "resample": [
        {"spacing": [1, 1, 2], "interpolation": "bspline", "label_interpolation": "label_linear"},
        {"shape": [8, 8, 8], "anisotropic_axis_interpolation": "nearest", "anisotropy_threshold": 2},
        {"reference": {"size": [4, 4, 4], "spacing": [1, 1, 1], "origin": [0, 0, 0],
                       "direction": [1, 0, 0, 0, 1, 0, 0, 0, 1]}, "fill_value": -1000},
    ],
    "reorient": [{"to": "LPS"}],
    "crop_body": [{"threshold_hu": -300, "margin_mm": 5}],
    "crop_nonzero": [{"margin_mm": 2}],
    "crop_label": [{"margin_mm": 2}],
    "pad_crop": [{"shape": [16, 16, 16], "pad_value": 0, "mode": "random"}],
}
MINIMAL = {"clip_scale": {"min": 0, "max": 1}, "zero_center": {"mean": 0}, "cast": {"dtype": "uint8"},
           "window": {"preset": "lung"}, "resample": {"spacing": [1, 1, 1]}, "pad_crop": {"shape": [4, 4, 4]}}


def test_docs_recipes_md_is_what_the_code_writes():
    written = (REPO / "docs" / "recipes.md").read_text()
    assert written == reference.markdown(), "docs/recipes.md is stale: run `medprep recipe --markdown > docs/recipes.md`"
    assert "docs/recipes.md" in (REPO / "README.md").read_text()


@pytest.mark.parametrize("op", sorted(STEP_TYPES))
def test_every_declared_parameter_parses_and_every_example_uses_declared_names(op):
    step_type = STEP_TYPES[op]
    assert step_type.parameters, f"{op} declares no parameters"
    assert all(isinstance(p, Param) and p.doc and p.kind for p in step_type.parameters)
    declared = {p.name for p in step_type.parameters}
    covered = set()
    for params in EXAMPLES[op]:
        step = step_type.from_params(dict(params), f"step 1 ({op})")  # undeclared reads raise RuntimeError
        covered |= set(params)
        assert Recipe.from_dict({"version": 1, "steps": [step.to_params()]}).steps[0] == step
    assert covered == declared, f"{op}: examples miss {declared - covered} or use undeclared {covered - declared}"


@pytest.mark.parametrize("op", sorted(STEP_TYPES))
def test_declared_defaults_are_the_defaults_applied(op):
    step_type = STEP_TYPES[op]
    written = step_type.from_params(dict(MINIMAL.get(op, {})), f"step 1 ({op})").to_params()
    for p in step_type.parameters:
        if p.required or p.default is None or p.name in MINIMAL.get(op, {}):
            continue
        if p.name in written:
            expected = list(p.default) if isinstance(p.default, tuple) else p.default
            got = list(written[p.name]) if isinstance(written[p.name], tuple) else written[p.name]
            assert got == expected, f"{op}.{p.name}: declared default {expected!r}, applied {got!r}"


def test_an_unknown_parameter_lists_the_declared_ones():
    with pytest.raises(RecipeError, match=r"'treshold_hu' is not a parameter of this step \(did you mean 'threshold_hu'\? known: margin_mm, threshold_hu\)"):
        Recipe.from_dict({"version": 1, "steps": [{"op": "crop_body", "treshold_hu": -300}]})


def test_reading_an_undeclared_parameter_is_a_programming_error():
    p = Params({}, "step 1 (x)", (Param("a", "number", 1.0, doc="a"),))
    assert p.number("a") == 1.0
    with pytest.raises(RuntimeError, match="does not declare"):
        p.number("b", 2.0)


def test_medprep_recipe_list_names_every_op_parameter_and_preset(capsys):
    assert main(["recipe", "--list"]) == 0
    out = capsys.readouterr().out
    for op, step_type in STEP_TYPES.items():
        assert f"  {op}: " in out
        for p in step_type.parameters:
            assert f"      {p.name} (" in out
    for name in PRESETS:
        assert name in out


def test_medprep_recipe_check(tmp_path, capsys):
    good = tmp_path / "r.json"
    good.write_text(json.dumps({"version": 1, "steps": [{"op": "crop_body"}]}))
    assert main(["recipe", "--check", str(good)]) == 0
    assert '"threshold_hu": -500.0' in capsys.readouterr().out  # defaults filled in
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"version": 1, "steps": [{"op": "crop_body", "margin": 3}]}))
    assert main(["recipe", "--check", str(bad)]) == 2
    assert "'margin' is not a parameter" in capsys.readouterr().err
