"""MedPrepCore.RecipeFields, the recipe editor's fields, against the real step declarations.

Every declared parameter of the editor's common steps gets a field of a kind the panel maps to a
widget; the form's values make recipes that ``MedPrepLib.recipe.Recipe.from_dict`` accepts, and
recipe -> values -> recipe keeps the recipe; a parameter added to a declaration appears without
new code; a recipe the form cannot show is listed, not silently changed; recipe files are
validated on load and save. No Slicer needed (RecipeFields is Qt-free).
"""

from __future__ import annotations

import ast
import dataclasses
import json
import re
import sys
from pathlib import Path

import pytest

from MedPrepLib.errors import RecipeError
from MedPrepLib.recipe import STEP_TYPES, Param, Recipe
from MedPrepLib.recipe.zscore import ZScore

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "MedPrep"))

from MedPrepCore import RecipeFields  # noqa: E402

WIDGETS_FILE = REPO / "MedPrep" / "MedPrepGui" / "RecipeWidgets.py"


def _recipe(values) -> Recipe:
    recipe = RecipeFields.recipeFromValues(values)
    assert RecipeFields.recipeProblem(recipe) == "", RecipeFields.recipeProblem(recipe)
    return Recipe.from_dict(recipe)


def test_every_parameter_of_the_common_steps_has_a_field_in_declaration_order():
    steps = RecipeFields.commonSteps()
    assert [s.op for s in steps] == list(RecipeFields.COMMON_STEPS)
    assert {"window", "resample", "reorient", "crop_body", "crop_nonzero", "pad_crop", "zscore"} <= {s.op for s in steps}
    for step in steps:
        declared = STEP_TYPES[step.op].parameters
        assert [f.name for f in step.fields] == [p.name for p in declared], step.op
        for field, param in zip(step.fields, declared):
            assert field.kind in RecipeFields.KINDS, field.key
            assert (field.unit, field.doc, field.minimum, field.positive) == (param.unit, param.doc, param.minimum, param.positive)
            assert field.optional == (not param.required and param.default is None), field.key
            if param.kind == "one of":
                assert field.kind == "choice" and field.choices == tuple(param.choices) and not field.editable
            if field.kind in ("numbers", "integers"):
                assert len(field.axes) == len(field.initial) == len(re.match(r"\[(.*)\]", param.kind).group(1).split(","))
            if field.kind == "choice":
                assert field.initial in field.choices or field.editable
        assert step.title and "module docstring" not in step.title


def test_the_kinds_are_what_the_panel_maps_to_widgets():
    """RecipeWidgets.WIDGETS (the Qt side) has a widget for every kind, and no other."""
    tree = ast.parse(WIDGETS_FILE.read_text())
    mapping = next(
        n.value for n in tree.body if isinstance(n, ast.Assign) and any(getattr(t, "id", "") == "WIDGETS" for t in n.targets)
    )
    assert sorted(ast.literal_eval(k) for k in mapping.keys) == sorted(RecipeFields.KINDS)


def test_the_declared_kinds_map_to_the_expected_widgets():
    kinds = {f.key: f.kind for s in RecipeFields.commonSteps() for f in s.fields}
    assert kinds["resample.spacing"] == "numbers" and kinds["resample.shape"] == "integers"
    assert kinds["resample.interpolation"] == "choice" and kinds["pad_crop.mode"] == "choice"
    assert kinds["crop_body.margin_mm"] == "number" and kinds["window.window_index"] == "integer"
    assert kinds["window.from_series"] == "bool" and kinds["pad_crop.pad_value"] == "text"
    assert kinds["window.preset"] == kinds["reorient.to"] == "choice"  # free text with suggestions
    preset = next(f for f in RecipeFields.stepFields("window").fields if f.name == "preset")
    assert preset.editable and "lung" in preset.choices and preset.optional


@pytest.mark.parametrize("op", RecipeFields.COMMON_STEPS)
def test_each_step_as_ticked_is_a_valid_recipe(op):
    recipe = _recipe({op: RecipeFields.stepStart(op)})
    assert recipe.ops == [op]


def test_every_step_ticked_together_is_valid_and_runs_in_form_order():
    values = {op: RecipeFields.stepStart(op) for op in reversed(RecipeFields.COMMON_STEPS)}
    assert _recipe(values).ops == list(RecipeFields.COMMON_STEPS)


def test_the_alternatives_of_window_and_resample_make_valid_recipes():
    _recipe({"window": {"level": 40.0, "width": 400.0, "output": "uint8"}})
    _recipe({"window": {"from_series": True, "window_index": 1}})
    _recipe({"window": {"windows": RecipeFields.Field("window", "windows", "text", "").fromText('["lung", "bone"]')}})
    _recipe({"resample": {"shape": [64, 64, 32], "interpolation": "nearest", "label_interpolation": "label_linear"}})
    problem = RecipeFields.recipeProblem(RecipeFields.recipeFromValues({"window": {"preset": "lung", "level": 1.0}}))
    assert problem.startswith("step 1 (window)") and "exactly one" in problem  # the library's own message


def test_values_recipe_values_round_trip():
    values = {
        "crop_body": {"threshold_hu": -400.0, "margin_mm": 5.0},
        "reorient": {"to": "LPS"},
        "resample": {"spacing": [0.8, 0.8, 2.5], "interpolation": "bspline", "anisotropy_threshold": 3.0},
        "window": {"preset": "lung", "output": "uint8"},
        "pad_crop": {"shape": [96, 96, 48], "mode": "random", "pad_value": 0},
    }
    recipe = RecipeFields.recipeFromValues(values, extra={"name": "lung 1 mm"})
    assert recipe["name"] == "lung 1 mm" and "anisotropy_threshold" not in recipe["steps"][2]  # its default
    back, extra, problems = RecipeFields.valuesFromRecipe(recipe)
    assert problems == [] and extra == {"name": "lung 1 mm"}
    assert Recipe.from_dict(RecipeFields.recipeFromValues(back, extra)) == Recipe.from_dict(recipe)
    for op, params in values.items():
        for name, value in params.items():
            assert back[op][name] == value


def test_the_librarys_explicit_form_of_a_recipe_round_trips():
    """Recipe.to_dict writes every parameter; the form reads it and makes the same recipe."""
    values = {op: RecipeFields.stepStart(op) for op in RecipeFields.COMMON_STEPS}
    explicit = Recipe.from_dict(RecipeFields.recipeFromValues(values)).to_dict()
    back, _, problems = RecipeFields.valuesFromRecipe(explicit)
    assert problems == []
    assert Recipe.from_dict(RecipeFields.recipeFromValues(back)) == Recipe.from_dict(explicit)


def test_what_the_form_cannot_show_is_listed():
    recipe = {
        "version": 1,
        "steps": [
            {"op": "window", "preset": "lung"},
            {"op": "n4"},
            {"op": "reorient", "to": "RAS", "too": 1},
            {"op": "window", "preset": "bone"},
        ],
    }
    values, _, problems = RecipeFields.valuesFromRecipe(recipe)
    assert values["window"]["preset"] == "lung" and "n4" not in values
    text = "\n".join(problems)
    assert "step 2 (n4) is not one of the form's steps" in text
    assert "step 3 (reorient): 'too' is not a parameter" in text
    assert "step 4 (window) repeats a step" in text
    assert "in this order" in text  # window before reorient


def test_a_parameter_added_to_a_declaration_appears_without_new_code(monkeypatch):
    monkeypatch.setattr(ZScore, "parameters", (*ZScore.parameters, Param("clip_sd", "number", 5.0, "sd", "clip at", minimum=0.0)))
    field = next(f for f in RecipeFields.stepFields("zscore").fields if f.name == "clip_sd")
    assert (field.kind, field.initial, field.minimum, field.unit) == ("number", 5.0, 0.0, "sd")
    assert "clip_sd" not in RecipeFields.recipeFromValues({"zscore": RecipeFields.stepStart("zscore")})["steps"][0]
    changed = RecipeFields.recipeFromValues({"zscore": {"clip_sd": 3.0}})
    assert changed["steps"][0] == {"op": "zscore", "clip_sd": 3.0}


def test_a_new_step_of_any_declared_kind_gets_fields(monkeypatch):
    @dataclasses.dataclass(frozen=True)
    class Demo(ZScore):
        op = "demo_step"
        parameters = (
            Param("a", "number", 1.5),
            Param("b", "integer", None, minimum=2),
            Param("c", "true/false", False),
            Param("d", "one of", "p", choices=("p", "q")),
            Param("e", "[x, y, z] numbers", None, positive=True),
            Param("f", "[low, high] numbers", (0.0, 1.0)),
            Param("g", "something new", "auto", parse=lambda v, where: v),
        )

    monkeypatch.setitem(STEP_TYPES, "demo_step", Demo)
    fields = {f.name: f for f in RecipeFields.stepFields("demo_step").fields}
    assert {n: f.kind for n, f in fields.items()} == {
        "a": "number", "b": "integer", "c": "bool", "d": "choice", "e": "numbers", "f": "numbers", "g": "text",
    }  # fmt: skip
    assert fields["b"].initial == 2 and fields["b"].optional and fields["e"].initial == [1.0, 1.0, 1.0]
    assert fields["f"].axes == ("low", "high") and fields["f"].initial == [0.0, 1.0]


def test_text_fields_read_json_or_plain_text():
    field = next(f for f in RecipeFields.stepFields("pad_crop").fields if f.name == "pad_value")
    assert field.fromText(" auto ") == "auto" and field.fromText("-1000") == -1000
    assert field.fromText('["lung", {"level": 40, "width": 400}]') == ["lung", {"level": 40, "width": 400}]
    assert field.toText("auto") == "auto" and field.toText(-1000) == "-1000" and field.toText([1, 2]) == "[1, 2]"


def test_json_text_and_the_recipe_for_a_run():
    assert RecipeFields.fromJson(RecipeFields.toJson(RecipeFields.EMPTY_RECIPE)) == RecipeFields.EMPTY_RECIPE
    assert RecipeFields.recipeForRun(RecipeFields.toJson(RecipeFields.EMPTY_RECIPE)) is None  # the export's default
    window = {"version": 1, "steps": [{"op": "window", "preset": "lung"}]}
    assert RecipeFields.recipeForRun(json.dumps(window)) == window
    for bad in ("{", "[1, 2]"):
        with pytest.raises(RecipeError):
            RecipeFields.fromJson(bad)


def test_recipe_files_are_validated_on_save_and_load(tmp_path):
    recipe = RecipeFields.recipeFromValues({"resample": {"spacing": [2.0, 2.0, 2.0]}, "window": {"preset": "bone"}})
    path = RecipeFields.saveRecipeFile(recipe, tmp_path / "r.json")
    assert RecipeFields.loadRecipeFile(path) == recipe
    RecipeFields.saveRecipeFile(RecipeFields.EMPTY_RECIPE, path)  # the save dialog asked: replaced
    assert RecipeFields.loadRecipeFile(path) == RecipeFields.EMPTY_RECIPE
    bad = {"version": 1, "steps": [{"op": "clip_scale", "min": 5, "max": 1}]}
    with pytest.raises(RecipeError, match="'max' must be greater"):
        RecipeFields.saveRecipeFile(bad, tmp_path / "bad.json")
    assert not (tmp_path / "bad.json").exists()
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(RecipeError, match="'max' must be greater"):
        RecipeFields.loadRecipeFile(tmp_path / "bad.json")


def test_a_relative_reference_in_a_recipe_file_is_read_from_its_folder(tmp_path):
    import numpy as np

    from MedPrepLib.imageio import write_image
    from MedPrepLib.volume import Volume

    (tmp_path / "grids").mkdir()
    write_image(Volume(np.zeros((4, 5, 6), np.int16)), tmp_path / "grids" / "ref.nrrd")
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"version": 1, "steps": [{"op": "resample", "reference": "grids/ref.nrrd"}]}))
    loaded = RecipeFields.loadRecipeFile(path)
    assert Path(loaded["steps"][0]["reference"]) == tmp_path / "grids" / "ref.nrrd"
    assert RecipeFields.recipeProblem(loaded) == ""
