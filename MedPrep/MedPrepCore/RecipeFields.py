"""The recipe editor's fields, derived from the steps' own parameter declarations. No Qt.

Each common step (:data:`COMMON_STEPS`) becomes a :class:`StepFields` and each of its declared
parameters (:class:`MedPrepLib.recipe.base.Param`) a :class:`Field` whose ``kind`` says which
widget it needs: ``number``, ``integer``, ``bool``, ``choice``, ``numbers`` / ``integers``
(one box per axis) or ``text`` (anything else: a JSON value or plain text). The panel only maps
kinds to widgets (``MedPrepGui.RecipeWidgets``), so a parameter added to a step's declaration
appears in the panel without new widget code, and an unknown kind still gets a text field.

The editor's state is a :data:`FormValues` dict ``{op: {parameter: value}}`` of the ticked
steps, a parameter left out when it is an optional one that is off. :func:`recipeFromValues`
makes the recipe dict from it (steps in :data:`COMMON_STEPS` order), :func:`valuesFromRecipe`
the other way round, with what the form cannot show; :func:`recipeProblem` validates with
:meth:`MedPrepLib.recipe.Recipe.from_dict` itself.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import re
from dataclasses import dataclass
from typing import Any

from MedPrepLib.errors import MedPrepError, RecipeError
from MedPrepLib.recipe import STEP_TYPES, Recipe
from MedPrepLib.recipe.base import Param
from MedPrepLib.recipe.schema import SCHEMA_VERSION
from MedPrepLib.recipe.window import PRESETS

COMMON_STEPS = ("crop_body", "crop_nonzero", "reorient", "resample", "window", "clip_scale", "zscore", "pad_crop")
"""The steps the editor shows, in the order a recipe made by the form runs them: crop to the body
while the image is in HU, then orientation and grid, then intensity, then the fixed shape."""

SUGGESTIONS: dict[tuple[str, str], tuple[str, ...]] = {
    ("window", "preset"): tuple(PRESETS),
    ("reorient", "to"): ("RAS", "LPS", "LAS", "RAI", "LPI"),
    ("zscore", "mask"): ("all", "nonzero", "label"),
}
"""Values a free-text parameter is offered (an editable list: other text is still accepted)."""

STEP_STARTS: dict[str, dict[str, Any]] = {
    "window": {"preset": "abdomen"},
    "resample": {"spacing": [1.0, 1.0, 1.0]},
}
"""What a step whose parameters are alternatives of each other starts with when it is ticked."""

KINDS = ("number", "integer", "bool", "choice", "numbers", "integers", "text")
"""The widget kinds a :class:`Field` may have (``MedPrepGui.RecipeWidgets.WIDGETS`` maps each to a widget)."""

FormValues = dict[str, dict[str, Any]]
"""``{op: {parameter name: value}}`` of the ticked steps (see the module docstring)."""

EMPTY_RECIPE: dict = {"version": SCHEMA_VERSION, "steps": []}

_VECTOR = re.compile(r"\[(.*)\] (numbers|integers)")


@dataclass(frozen=True)
class Field:
    """One parameter's widget: its ``kind``, start value and limits, from the step's declaration."""

    op: str
    name: str
    kind: str
    initial: Any
    optional: bool = False
    """Declared default None: the parameter may be left out; the widget has an on/off box."""
    choices: tuple = ()
    editable: bool = False
    """The choices are suggestions; other text is accepted too."""
    minimum: float | None = None
    positive: bool = False
    axes: tuple[str, ...] = ()
    unit: str = ""
    doc: str = ""

    @property
    def key(self) -> str:
        return f"{self.op}.{self.name}"

    def fromText(self, text: str) -> Any:
        """A ``text`` field's value: its JSON (a number, a list, an object, true...) or the text itself."""
        text = text.strip()
        try:
            return json.loads(text)
        except ValueError:
            return text

    def toText(self, value: Any) -> str:
        return value if isinstance(value, str) else json.dumps(value)


@dataclass(frozen=True)
class StepFields:
    """A step's title (its docstring's first line) and fields (its declarations, in their order)."""

    op: str
    title: str
    fields: tuple[Field, ...]


def _stepDefault(step: type, param: Param) -> Any:
    """The step class's own default of the attribute holding ``param`` (None if it has none)."""
    name = param.attribute or param.name
    for f in dataclasses.fields(step) if dataclasses.is_dataclass(step) else ():
        if f.name == name and f.default is not dataclasses.MISSING:
            return f.default
    return None


def _initial(kind: str, field: dict, step: type, param: Param) -> Any:
    if param.required:
        value = _stepDefault(step, param)  # the declaration has none: the step class's own
    else:
        value = param.default
    if value is None and field.get("choices"):
        value = field["choices"][0]
    if value is None:
        count = len(field.get("axes", ()))
        value = {
            "number": 0.0 if not param.positive else 1.0,
            "integer": int(param.minimum or 0),
            "bool": True,  # an optional flag: turning it on means true
            "numbers": [1.0] * count,
            "integers": [1] * count,
        }.get(kind, "")
    return list(value) if isinstance(value, tuple) else value


def fieldFor(op: str, param: Param) -> Field:
    """The widget descriptor of one declared parameter of step ``op``."""
    step = STEP_TYPES[op]
    vector = _VECTOR.fullmatch(param.kind)
    extra: dict[str, Any] = {}
    if param.kind == "one of" and param.choices:
        kind, extra["choices"] = "choice", tuple(param.choices)
    elif param.kind == "true/false":
        kind = "bool"
    elif param.kind in ("number", "integer") and param.parse is None:
        kind = param.kind
    elif vector:
        kind, extra["axes"] = vector.group(2), tuple(a.strip() for a in vector.group(1).split(","))
    else:
        kind = "text"
        if (op, param.name) in SUGGESTIONS:
            kind, extra["choices"], extra["editable"] = "choice", SUGGESTIONS[op, param.name], True
    return Field(
        op=op,
        name=param.name,
        kind=kind,
        initial=_initial(kind, extra, step, param),
        optional=not param.required and param.default is None,
        minimum=param.minimum,
        positive=param.positive,
        unit=param.unit,
        doc=param.doc,
        **extra,
    )


def stepFields(op: str) -> StepFields:
    step = STEP_TYPES[op]
    title = (inspect.getdoc(step) or op).splitlines()[0].replace("``", "")
    title = re.sub(r"\s*\(see (the )?module docstring[^)]*\)", "", title)
    return StepFields(op, title, tuple(fieldFor(op, p) for p in step.parameters))


def commonSteps() -> tuple[StepFields, ...]:
    """The editor's steps, in :data:`COMMON_STEPS` order (those this MedPrepLib has)."""
    return tuple(stepFields(op) for op in COMMON_STEPS if op in STEP_TYPES)


def stepStart(op: str) -> dict[str, Any]:
    """The values a step starts with when ticked: every non-optional field, plus :data:`STEP_STARTS`."""
    starts = STEP_STARTS.get(op, {})
    return {f.name: starts.get(f.name, f.initial) for f in stepFields(op).fields if not f.optional or f.name in starts}


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _given(op: str, params: dict[str, Any]) -> dict[str, Any]:
    """The parameters a recipe step needs to say: those not at their declared default (a step
    reads some only with another one, as window's 'window_index' with 'from_series')."""
    declared = {p.name: p for p in STEP_TYPES[op].parameters}
    out = {}
    for name, value in params.items():
        p = declared.get(name)
        if p is None or p.required or p.default is None or _plain(p.default) != _plain(value):
            out[name] = _plain(value)
    return out


def recipeFromValues(values: FormValues, extra: dict | None = None) -> dict:
    """The recipe dict of the form: ``{"version": 1, **extra, "steps": [...]}``, steps in form
    order, each parameter at its declared default left out (it means the same)."""
    steps = [{"op": op, **_given(op, values[op])} for op in COMMON_STEPS if op in values]
    return {"version": SCHEMA_VERSION, **(extra or {}), "steps": steps}


def valuesFromRecipe(recipe: dict) -> tuple[FormValues, dict, list[str]]:
    """(form values, the recipe's other top-level keys, what the form cannot show) of a recipe dict.

    The form shows each common step once, in :data:`COMMON_STEPS` order; a step of another op,
    a repeated one, another order or an undeclared parameter is listed (the form shows the rest).
    Non-optional parameters the recipe leaves out are shown at their declared defaults.
    """
    values: FormValues = {}
    problems: list[str] = []
    extra = {k: v for k, v in recipe.items() if k not in ("version", "steps")}
    order = [s.get("op") for s in recipe.get("steps", []) if isinstance(s, dict)]
    for number, step in enumerate(recipe.get("steps", []), 1):
        op = step.get("op") if isinstance(step, dict) else None
        if op not in COMMON_STEPS or op not in STEP_TYPES:
            problems.append(f"step {number} ({op}) is not one of the form's steps")
            continue
        if op in values:
            problems.append(f"step {number} ({op}) repeats a step; the form shows the first")
            continue
        fields = {f.name: f for f in stepFields(op).fields}
        given = {k: v for k, v in step.items() if k != "op"}
        for name in sorted(set(given) - set(fields)):
            problems.append(f"step {number} ({op}): '{name}' is not a parameter of this step")
        shown = {n: f.initial for n, f in fields.items() if not f.optional and f.initial is not None}
        shown.update({k: _plain(v) for k, v in given.items() if k in fields and v is not None})
        values[op] = shown
    known = [op for op in order if op in values]
    if known != [op for op in COMMON_STEPS if op in known]:
        problems.append("the form runs its steps in this order: " + ", ".join(COMMON_STEPS))
    return values, extra, problems


def recipeProblem(recipe: dict) -> str:
    """``""`` when MedPrepLib accepts the recipe, else its error message (what, where, what to do)."""
    try:
        Recipe.from_dict(recipe)
    except MedPrepError as exc:
        return str(exc)
    return ""


def toJson(recipe: dict) -> str:
    return json.dumps(recipe, indent=2)


def fromJson(text: str) -> dict:
    """The recipe dict of JSON text; a RecipeError when it is not a JSON object."""
    try:
        recipe = json.loads(text)
    except ValueError as exc:
        raise RecipeError(f"the recipe is not valid JSON ({exc})") from None
    if not isinstance(recipe, dict):
        raise RecipeError(f"a recipe must be a JSON object, got {type(recipe).__name__}")
    return recipe


def recipeForRun(text: str) -> dict | None:
    """The recipe of the editor's JSON for the logic: the dict, or None when it has no steps (the
    export then uses its default recipe per modality)."""
    recipe = fromJson(text)
    return recipe if recipe.get("steps") else None


def loadRecipeFile(path: str | os.PathLike) -> dict:
    """A recipe file's dict as written in it, after MedPrepLib has validated it (RecipeError if not)."""
    from MedPrepLib.jsonfiles import read_json

    Recipe.load(path)
    recipe = read_json(path, what="recipe file")
    for step in recipe["steps"]:  # a reference image named relative to the file sits beside it
        reference = step.get("reference")
        if isinstance(reference, str) and reference and not os.path.isabs(reference):
            step["reference"] = os.path.join(os.path.dirname(os.path.abspath(path)), reference)
    return recipe


def saveRecipeFile(recipe: dict, path: str | os.PathLike):
    """Validate and write the recipe as JSON (replacing ``path``: the save dialog has asked)."""
    from MedPrepLib.jsonfiles import write_json

    Recipe.from_dict(recipe)
    return write_json(recipe, path, overwrite=True)
