"""Running a recipe: the step loop, and the provenance that lets ``medprep restore`` undo it.

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

import functools
import os
import platform
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import RecipeError
from ..jsonfiles import read_json
from ..progress import as_progress
from ..volume import Volume
from .base import RunContext, Step
from .schema import SCHEMA_VERSION, Recipe

PROVENANCE_FORMAT = "medprep-provenance"


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


def _installed_version(package: str, module: str) -> str:
    """The installed version of ``package``, read from its metadata (importing a library as
    large as SimpleITK or scipy only for its version costs a tenth of a second)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:  # not installed as a distribution (a source build on sys.path)
        import importlib

        imported = importlib.import_module(module)
        return imported.Version.VersionString() if module == "SimpleITK" else imported.__version__


@functools.lru_cache(maxsize=1)
def _versions() -> tuple[tuple[str, str], ...]:
    from .. import __version__

    return (
        ("medprep", __version__),
        ("numpy", np.__version__),
        ("SimpleITK", _installed_version("SimpleITK", "SimpleITK")),
        ("scipy", _installed_version("scipy", "scipy")),
        ("python", platform.python_version()),
    )


def software_versions() -> dict[str, str]:
    """The versions of what computes a recipe's outputs (recorded in its provenance); read once
    per process."""
    return dict(_versions())


def run_recipe(
    recipe: Recipe,
    image: Volume,
    label: Volume | None = None,
    *,
    statistics: dict | None = None,
    seed: int = 0,
    progress=None,
    masks: dict[str, Volume] | None = None,
    consume_input: bool = False,
) -> RecipeResult:
    """Apply the steps in order to ``image`` (and ``label``); never modifies the inputs, unless
    ``consume_input``: then the caller gives ``image``'s array up and steps may overwrite it
    (one copy less; the export does this with the volumes it loaded).

    ``statistics`` are dataset numbers from :func:`~MedPrepLib.recipe.statistics.compute_statistics`
    (or an nnU-Net fingerprint); ``seed`` drives random steps (a random crop); ``masks`` are named
    mask volumes for steps that take one. The run is deterministic: the same recipe, inputs,
    statistics and seed give byte-identical outputs.
    """
    if label is not None:
        label = label_on_image_grid(label, image)
    ctx = RunContext(statistics=statistics, seed=seed, masks=masks)
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
    ctx.scratch = bool(consume_input and original.flags.writeable)
    n = len(recipe.steps)
    for number, step in enumerate(recipe.steps, 1):
        before = describe(image)
        new_image, new_label, record = apply_step(step, image, label, ctx, number, root.sub((number - 1) / n, number / n))
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
        ctx.scratch = (consume_input or not np.may_share_memory(image.array, original)) and image.array.flags.writeable
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


def apply_step(step: Step, image: Volume, label: Volume | None, ctx: RunContext, number: int, progress):
    """Run one step as step ``number`` of a recipe: sets ``ctx.step_number``, ``ctx.where`` and
    ``ctx.progress``, prefixes the step's errors with where it is, and checks that image and
    label still share a grid. Returns (image, label, record). The step loop of
    :func:`run_recipe` and the statistics pass both run steps through it."""
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


def load_statistics(path: str | os.PathLike) -> dict:
    """Read a statistics JSON file (from the statistics pass, or an nnU-Net fingerprint)."""
    return read_json(path, what="statistics file")
