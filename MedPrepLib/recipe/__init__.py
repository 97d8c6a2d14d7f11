"""Preprocessing recipes: declarative, JSON-serialisable lists of steps, replayable and invertible.

>>> from MedPrepLib.recipe import Recipe, run_recipe
>>> import numpy as np
>>> from MedPrepLib.volume import Volume
>>> r = Recipe.from_dict({"version": 1, "steps": [{"op": "clip_scale", "min": -1000, "max": 400}]})
>>> out = run_recipe(r, Volume(np.array([[[-2000, -300, 1000]]], np.int16))).image.array
>>> out.ravel().tolist()
[0.0, 0.5, 1.0]

The rooms: :mod:`.base` (the step contract and parameter declarations), :mod:`.steps` (the
registry), one module per step named after its ``op`` (:mod:`.box` holds what the crop steps
share), :mod:`.schema` (validation and JSON), :mod:`.run` (the step loop and provenance),
:mod:`.statistics` (the dataset statistics pass), :mod:`.invert` (undoing geometric steps),
:mod:`.reference` (``docs/recipes.md``).
"""

from ..jsonfiles import write_json
from .base import Param, RunContext, Step
from .run import RecipeResult, label_on_image_grid, load_statistics, run_recipe, steps_for_restore
from .schema import Recipe
from .statistics import compute_statistics
from .steps import STEP_TYPES, register

__all__ = [
    "STEP_TYPES",
    "Param",
    "Recipe",
    "RecipeResult",
    "RunContext",
    "Step",
    "compute_statistics",
    "label_on_image_grid",
    "load_statistics",
    "register",
    "run_recipe",
    "steps_for_restore",
    "write_json",
]
