"""A recipe: an ordered list of steps in plain JSON — its schema, validation, defaults and file form.

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

The steps and their parameters: ``docs/recipes.md`` (:mod:`.reference`). Running a recipe and
its provenance: :mod:`.run`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import RecipeError
from ..jsonfiles import read_json, write_json
from .base import Step, did_you_mean
from .steps import STEP_TYPES

SCHEMA_VERSION = 1


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
            guess = did_you_mean(next((k for k in d if k not in ("version", "steps")), None), ["steps"])
            raise RecipeError(f"the recipe's 'steps' must be a list of step objects{guess}", path=path)
        steps = []
        for number, params in enumerate(steps_json, 1):
            if not isinstance(params, dict):
                raise RecipeError(f"step {number}: must be a JSON object with an 'op', got {params!r}", path=path)
            op = params.get("op")
            if not isinstance(op, str) or op not in STEP_TYPES:
                known = ", ".join(sorted(STEP_TYPES))
                what = "has no 'op'" if op is None else f"'op' {op!r} is not a known step"
                guess = did_you_mean(op, STEP_TYPES)
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
