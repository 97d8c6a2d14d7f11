"""A recipe: an ordered list of steps in plain JSON, validated, saved, replayed and recorded.

The JSON contract (outside tools write these; names are kept, new ones may be added)::

    {"version": 1,
     "steps": [{"op": "resample", "spacing": [1.0, 1.0, 1.0], "interpolation": "linear"},
               {"op": "window", "preset": "lung"},
               {"op": "clip_scale", "min": -1000, "max": 400},
               {"op": "zscore"},
               {"op": "reorient", "to": "RAS"},
               {"op": "crop_body", "threshold_hu": -500, "margin_mm": 10},
               {"op": "pad_crop", "shape": [128, 128, 128]}]}

Spacing and shape are (x, y, z) like SimpleITK; a relative ``"reference"`` image path in a recipe
file is read from that file's folder. Steps are numbered from 1 in every message
("step 3 (clip_scale): 'max' must be greater than 'min'"). Top-level keys other than
``version`` and ``steps`` (a ``name``, a ``description``) are kept as they are.

Provenance
----------
:func:`run_recipe` returns a :class:`RecipeResult` whose ``provenance`` is a JSON-friendly
dict, the format ``medprep restore`` reads::

    {"format": "medprep-provenance", "version": 1,
     "recipe": {...},                       # Recipe.to_dict(), with every default filled in
     "seed": 0, "statistics": {...} | null, # what the run was given
     "input":  {"image": D, "label": D | null},
     "output": {"image": D, "label": D | null},
     "steps": [{"number": 1, "op": "resample", "params": {...},
                "input": D, "output": D,    # the image before and after this step
                "record": {...}}, ...],     # what the step did / needs to be undone
     "software": {"medprep": ..., "numpy": ..., "SimpleITK": ..., "scipy": ..., "python": ...}}

where ``D = {"geometry": Geometry.to_dict(), "shape": [z, y, x(, c)], "dtype": "int16"}``
(geometry in LPS mm, (x, y, z) order). No patient identity, no time stamp: the same run gives
the same provenance. :func:`steps_for_restore` turns it back into (step, record, input
description) triples for undoing geometric steps in reverse order.
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import RecipeError
from ..jsonfiles import read_json, write_json
from ..progress import as_progress
from ..volume import Volume
from .base import STEP_TYPES, RunContext, Step

SCHEMA_VERSION = 1
PROVENANCE_FORMAT = "medprep-provenance"

# Step modules register their ops on import.
from . import bias, crop, intensity, normalize, orient, resample, window  # noqa: E402, F401


@dataclass
class Recipe:
    """An ordered list of :class:`~MedPrepLib.recipe.base.Step` objects (schema ``version`` 1)."""

    steps: list[Step] = field(default_factory=list)
    version: int = SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    # -- JSON --------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, d: Any, *, source: str | os.PathLike | None = None) -> Recipe:
        """Validate a parsed JSON recipe; raises :class:`RecipeError` naming step and parameter.

        >>> Recipe.from_dict({"version": 1, "steps": [{"op": "zscore"}]}).ops
        ['zscore']
        >>> Recipe.from_dict({"version": 1, "steps": [{"op": "clip_scale", "min": 5, "max": 1}]})
        Traceback (most recent call last):
        ...
        MedPrepLib.errors.RecipeError: step 1 (clip_scale): 'max' must be greater than 'min' (5), got 1
        """
        path = os.fspath(source) if source is not None else None
        if not isinstance(d, dict):
            raise RecipeError(f"a recipe must be a JSON object, got {type(d).__name__}", path=path)
        if "version" not in d:
            raise RecipeError("the recipe has no 'version'", path=path, hint='add "version": 1')
        version = d["version"]
        if isinstance(version, bool) or not isinstance(version, (int, float)):
            raise RecipeError(
                f"'version' must be the number {SCHEMA_VERSION}, got {json.dumps(version)}",
                path=path,
                hint=f'write "version": {SCHEMA_VERSION} (a number, not a string)',
            )
        if version != SCHEMA_VERSION:
            raise RecipeError(
                f"recipe version {d['version']!r} is not supported (this MedPrep reads version {SCHEMA_VERSION})",
                path=path,
            )
        steps_json = d.get("steps")
        if not isinstance(steps_json, list):
            guess = _close_match(next((k for k in d if k not in ("version", "steps")), None), ["steps"])
            raise RecipeError(f"the recipe's 'steps' must be a list of step objects{guess}", path=path)
        steps = []
        for number, params in enumerate(steps_json, 1):
            if not isinstance(params, dict):
                raise RecipeError(f"step {number}: must be a JSON object with an 'op', got {params!r}", path=path)
            op = params.get("op")
            if not isinstance(op, str) or op not in STEP_TYPES:
                known = ", ".join(sorted(STEP_TYPES))
                what = "has no 'op'" if op is None else f"'op' {op!r} is not a known step"
                guess = _close_match(op, STEP_TYPES)
                raise RecipeError(f"step {number}: {what}{guess} (known: {known})", path=path)
            where = f"step {number} ({op})"
            rest = {k: v for k, v in params.items() if k != "op"}
            if path is not None and isinstance(rest.get("reference"), str) and rest["reference"]:
                # a reference image named relative to a recipe file sits beside that file,
                # wherever the command is run from
                reference = Path(rest["reference"])
                if not reference.is_absolute():
                    rest["reference"] = os.fspath(Path(path).parent / reference)
            try:
                steps.append(STEP_TYPES[op].from_params(rest, where))
            except RecipeError as exc:
                if path is not None and exc.path is None:
                    raise RecipeError(exc.message, path=path, hint=exc.hint) from None
                raise
        extra = {k: v for k, v in d.items() if k not in ("version", "steps")}
        return cls(steps=steps, version=SCHEMA_VERSION, extra=extra)

    def to_dict(self) -> dict:
        """The JSON form, every parameter explicit; ``from_dict(to_dict())`` is an equal recipe."""
        return {"version": self.version, **self.extra, "steps": [s.to_params() for s in self.steps]}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def load(cls, path: str | os.PathLike) -> Recipe:
        """Read and validate a recipe JSON file."""
        return cls.from_dict(read_json(path, what="recipe file"), source=Path(path))

    def save(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        """Write the recipe as JSON, atomically; refuses to replace a file unless ``overwrite``."""
        return write_json(self.to_dict(), path, overwrite=overwrite)

    @property
    def ops(self) -> list[str]:
        return [s.op for s in self.steps]

    def __eq__(self, other) -> bool:
        return isinstance(other, Recipe) and self.to_dict() == other.to_dict()


def _close_match(word: Any, options) -> str:
    """`` (did you mean 'resample'?)`` for a near miss (case or a typo), else ``""``."""
    import difflib

    if not isinstance(word, str):
        return ""
    lower = {o.lower(): o for o in options}
    found = difflib.get_close_matches(word.lower(), list(lower), n=1, cutoff=0.75)
    return f" (did you mean '{lower[found[0]]}'?)" if found else ""


# -- running --------------------------------------------------------------------------------------


@dataclass
class RecipeResult:
    """What a run produced: the image, the label map (or None) and the provenance dict."""

    image: Volume
    label: Volume | None
    provenance: dict


def describe(volume: Volume | None) -> dict | None:
    """Geometry (LPS mm, (x, y, z)), array shape (z, y, x[, c]) and dtype of a volume."""
    if volume is None:
        return None
    return {"geometry": volume.geometry.to_dict(), "shape": list(volume.shape), "dtype": str(volume.dtype)}


def software_versions() -> dict[str, str]:
    import scipy
    import SimpleITK as sitk

    from .. import __version__

    return {
        "medprep": __version__,
        "numpy": np.__version__,
        "SimpleITK": sitk.Version.VersionString(),
        "scipy": scipy.__version__,
        "python": platform.python_version(),
    }


def run_recipe(
    recipe: Recipe,
    image: Volume,
    label: Volume | None = None,
    *,
    statistics: dict | None = None,
    seed: int = 0,
    progress=None,
    masks: dict[str, Volume] | None = None,
) -> RecipeResult:
    """Apply the steps in order to ``image`` (and ``label``); never modifies the inputs.

    ``statistics`` are dataset numbers from :func:`~MedPrepLib.recipe.statistics.compute_statistics`
    (or an nnU-Net fingerprint); ``seed`` drives random steps (a random crop); ``masks`` are named
    mask volumes for steps that take one. The run is deterministic: the same recipe, inputs,
    statistics and seed give byte-identical outputs.
    """
    if label is not None:
        label = label_on_image_grid(label, image)
    ctx = _run_context(statistics, seed, masks)
    root = as_progress(progress)
    provenance = {
        "format": PROVENANCE_FORMAT,
        "version": SCHEMA_VERSION,
        "recipe": recipe.to_dict(),
        "seed": seed,
        "statistics": _jsonable(statistics),
        "input": {"image": describe(image), "label": describe(label)},
        "output": None,
        "steps": [],
        "software": software_versions(),
    }
    original = image.array
    n = len(recipe.steps)
    for number, step in enumerate(recipe.steps, 1):
        before = describe(image)
        new_image, new_label, record = _apply(step, image, label, ctx, number, root.sub((number - 1) / n, number / n))
        provenance["steps"].append(
            {
                "number": number,
                "op": step.op,
                "params": step.to_params(),
                "input": before,
                "output": describe(new_image),
                "record": _jsonable(record),
            }
        )
        image, label = new_image, new_label
        # Once a step has produced a fresh array, later steps may overwrite it in place.
        ctx.scratch = not np.may_share_memory(image.array, original) and image.array.flags.writeable
    root.update("recipe done", 1.0)
    provenance["output"] = {"image": describe(image), "label": describe(label)}
    return RecipeResult(image=image, label=label, provenance=provenance)


LABEL_GRID_TOLERANCE_MM = 1e-3
"""How far a label's grid may sit from its image's (spacing/origin, mm) and still count as the
same grid: file formats store geometry with float32 (NIfTI) or printed decimals."""


def label_on_image_grid(label: Volume, image: Volume) -> Volume:
    """The label on exactly the image's grid, when the two grids agree within
    :data:`LABEL_GRID_TOLERANCE_MM`; otherwise a :class:`RecipeError` with both grids."""
    if label.geometry == image.geometry:
        return label
    if not label.geometry.isclose(image.geometry, atol_mm=LABEL_GRID_TOLERANCE_MM, atol_dir=1e-5):
        lg, ig = label.geometry, image.geometry
        raise RecipeError(
            f"the label's grid ({lg.size} voxels (x, y, z), spacing {lg.spacing} mm, origin {lg.origin} mm LPS) "
            f"differs from the image's ({ig.size}, {ig.spacing} mm, {ig.origin} mm)",
            hint="a label must be on its image's grid",
        )
    return Volume(label.array, image.geometry, metadata=label.metadata)


def _run_context(statistics, seed, masks) -> RunContext:
    return RunContext(statistics=statistics, seed=seed, masks=masks)


def _apply(step: Step, image: Volume, label: Volume | None, ctx: RunContext, number: int, progress):
    ctx.step_number = number
    ctx.where = f"step {number} ({step.op})"
    ctx.progress = progress
    progress.update(ctx.where, 0.0)
    try:
        result = step.apply(image, label, ctx)
    except RecipeError as exc:
        if not exc.message.startswith("step "):
            raise RecipeError(f"{ctx.where}: {exc.message}", path=exc.path, hint=exc.hint) from exc
        raise
    new_image, new_label, record = result
    if label is not None and new_label is not None and new_label.geometry != new_image.geometry:
        raise RecipeError(f"{ctx.where}: the step left the label on a grid different from the image's")
    progress.update(ctx.where, 1.0)
    return new_image, new_label, record or {}


def _jsonable(value: Any) -> Any:
    """Numpy scalars and arrays, tuples and paths to plain JSON types."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return value


def steps_for_restore(provenance: dict) -> list[tuple[Step, dict, dict]]:
    """(step, record, input description) of each step of a provenance dict, in run order.

    ``medprep restore`` walks this list backwards, calling ``step.invert_label(label, record)``
    on the geometric steps; the input description holds the grid to return to.
    """
    if not isinstance(provenance, dict) or provenance.get("format") != PROVENANCE_FORMAT:
        raise RecipeError('not a MedPrep provenance record (no "format": "medprep-provenance")')
    recipe = Recipe.from_dict(provenance["recipe"])
    entries = provenance.get("steps", [])
    if len(entries) != len(recipe.steps):
        raise RecipeError(f"the provenance lists {len(entries)} step records for a recipe of {len(recipe.steps)} steps")
    return [(step, e.get("record") or {}, e.get("input") or {}) for step, e in zip(recipe.steps, entries)]


def known_ops() -> list[str]:
    return sorted(STEP_TYPES)


def load_statistics(path: str | os.PathLike) -> dict:
    """Read a statistics JSON file (from the statistics pass, or an nnU-Net fingerprint)."""
    return read_json(path, what="statistics file")


__all__ = [
    "Recipe",
    "RecipeResult",
    "run_recipe",
    "steps_for_restore",
    "write_json",
    "describe",
    "known_ops",
    "load_statistics",
]
