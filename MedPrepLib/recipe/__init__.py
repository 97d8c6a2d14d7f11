"""Preprocessing recipes: declarative, JSON-serialisable lists of steps, replayable and invertible.

>>> from MedPrepLib.recipe import Recipe, run_recipe
>>> import numpy as np
>>> from MedPrepLib.volume import Volume
>>> r = Recipe.from_dict({"version": 1, "steps": [{"op": "clip_scale", "min": -1000, "max": 400}]})
>>> out = run_recipe(r, Volume(np.array([[[-2000, -300, 1000]]], np.int16))).image.array
>>> out.ravel().tolist()
[0.0, 0.5, 1.0]
"""

from .base import STEP_TYPES, RunContext, Step, register
from .recipe import Recipe, RecipeResult, load_statistics, run_recipe, steps_for_restore, write_json
from .statistics import compute_statistics

__all__ = [
    "STEP_TYPES",
    "Recipe",
    "RecipeResult",
    "RunContext",
    "Step",
    "compute_statistics",
    "load_statistics",
    "register",
    "run_recipe",
    "steps_for_restore",
    "write_json",
]
