"""Map a label map predicted in preprocessed space back onto the original image grid.

:func:`restore_label` reads the provenance that :func:`~MedPrepLib.recipe.run.run_recipe`
recorded (``{"format": "medprep-provenance", "recipe": ..., "steps": [{"op", "params", "input",
"output", "record"}, ...], "input": ..., "output": ...}``) and undoes the geometric steps in
reverse order: crop/pad (the label goes back into a zero map of the input size), reorientation
(the inverse axis permutation, exact) and resampling (nearest neighbour onto the recorded input
grid). Intensity steps are skipped. The result is exact when no resolution was lost (reorient,
crop, pad, resampling to the same grid); after a real resampling it is the nearest-neighbour
label of the preprocessed grid at each original voxel centre.

A bare ``{"steps": [{"op": ..., "params": ..., "record": ...}, ...]}`` (no recipe, no format) is
accepted too, the steps being rebuilt from their ``params``.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from ..errors import MedPrepError, RecipeError
from ..geometry import Geometry
from ..progress import as_progress
from ..volume import Volume
from .base import Step
from .run import PROVENANCE_FORMAT, steps_for_restore
from .steps import STEP_TYPES

log = logging.getLogger(__name__)

GRID_TOLERANCE_MM = 1e-2
"""Spacing/origin tolerance when matching a prediction to the preprocessed grid (float32 file headers)."""


def check_provenance(provenance: Any) -> list[tuple[Step, dict]]:
    """The (step, record) pairs of a provenance dict, or a :class:`RecipeError` saying what is
    wrong with it (a recipe or a statistics file given instead, a geometric step without the
    record of its input grid)."""
    hint = "pass the .provenance.json that medprep preprocess wrote beside its output"
    if not isinstance(provenance, dict) or not isinstance(provenance.get("steps"), list):
        raise RecipeError("the provenance has no 'steps' list", hint=hint)
    if (
        "format" not in provenance
        and "version" in provenance
        and not any(isinstance(e, dict) and "record" in e for e in provenance["steps"])
    ):
        raise RecipeError("this is a recipe, not the provenance of a run", hint=hint)
    steps = _steps(provenance)
    for number, (step, record) in enumerate(steps, 1):
        if not step.geometric:
            continue
        try:
            Geometry.from_dict(record["input_geometry"])
        except (KeyError, TypeError, ValueError, MedPrepError) as exc:
            raise RecipeError(
                f"provenance step {number} ({step.op}): its record has no usable 'input_geometry' ({exc!r})",
                hint=hint,
            ) from None
    return steps


def _steps(provenance: dict) -> list[tuple[Step, dict]]:
    if provenance.get("format") == PROVENANCE_FORMAT:
        return [(step, record) for step, record, _ in steps_for_restore(provenance)]
    steps = []
    for number, entry in enumerate(provenance["steps"], 1):
        if not isinstance(entry, dict):
            raise RecipeError(f"provenance step {number}: must be a JSON object, got {entry!r}")
        params = dict(entry.get("params") or {})
        op = entry.get("op") or params.get("op")
        if op not in STEP_TYPES:
            raise RecipeError(f"provenance step {number}: unknown op {op!r}")
        params.pop("op", None)
        steps.append(
            (STEP_TYPES[op].from_params(params, f"provenance step {number} ({op})"), entry.get("record") or {})
        )
    return steps


def _grid(description: Any) -> Geometry | None:
    """The geometry of a provenance volume description (or a bare geometry dict)."""
    if not isinstance(description, dict):
        return None
    if "geometry" in description:
        description = description["geometry"]
    return Geometry.from_dict(description) if "size" in description else None


def _on_expected_grid(pred: Volume, expected: Geometry) -> Volume:
    """``pred`` on exactly ``expected``, or a :class:`RecipeError` naming both grids.

    A prediction another tool stored in another axis order (LPS instead of RAS, say) holds the
    same voxel centres: it is permuted back (no interpolation) when that makes the grids agree.
    """
    g = pred.geometry
    if g.size != expected.size or not g.isclose(expected, atol_mm=GRID_TOLERANCE_MM, atol_dir=1e-4):
        from ..processing.reorient import reorient

        turned = reorient(pred, expected.orientation)
        if turned.geometry.isclose(expected, atol_mm=GRID_TOLERANCE_MM, atol_dir=1e-4):
            log.info(
                "the prediction is stored as %s, the preprocessed image as %s: axes permuted back",
                g.orientation,
                expected.orientation,
            )
            pred, g = turned, turned.geometry
    if g.size != expected.size:
        raise RecipeError(
            f"the prediction's grid has {g.size} voxels (x, y, z) but the preprocessed image had {expected.size}",
            hint="restore a label map predicted on the preprocessed image this provenance belongs to",
        )
    if not g.isclose(expected, atol_mm=GRID_TOLERANCE_MM, atol_dir=1e-4):
        raise RecipeError(
            f"the prediction's grid (spacing {g.spacing} mm, origin {g.origin} mm LPS, {g.orientation}) differs "
            f"from the preprocessed image's (spacing {expected.spacing} mm, origin {expected.origin} mm LPS, "
            f"{expected.orientation})",
            hint="the prediction must be on the preprocessed image's grid",
        )
    return Volume(pred.array, expected, metadata=pred.metadata)


def restore_label(pred: Volume, provenance: dict, *, progress=None) -> Volume:
    """The label map ``pred`` (on the preprocessed grid) mapped onto the original image's grid.

    ``pred`` must be a scalar (z, y, x) label map whose grid matches the provenance's output
    within :data:`GRID_TOLERANCE_MM` (stored in any axis order: a permutation is undone
    exactly); the returned volume has exactly the original grid (LPS mm, as recorded) and
    ``pred``'s dtype.
    """
    progress = as_progress(progress)
    if pred.array.ndim != 3:
        raise RecipeError(
            f"the prediction must be a scalar label map (z, y, x), got shape {pred.shape}",
            hint="take the argmax of class probabilities first",
        )
    steps = check_provenance(provenance)
    numbers = {id(step): n for n, (step, _) in enumerate(steps, 1)}
    geometric = [(step, record) for step, record in steps if step.geometric]
    expected = _grid((provenance.get("output") or {}).get("image"))
    if expected is None and geometric:
        expected = _grid(geometric[-1][1].get("output_geometry"))
    label = pred
    if expected is not None:
        label = _on_expected_grid(pred, expected)
    for n, (step, record) in enumerate(reversed(geometric)):
        progress.update(f"undoing {step.op}", n / max(len(geometric), 1))
        try:
            label = step.invert_label(label, record)
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise RecipeError(
                f"provenance step {numbers[id(step)]} ({step.op}): its record cannot be undone ({exc!r})",
                hint="pass the .provenance.json that medprep preprocess wrote beside its output",
            ) from None
    original = _grid((provenance.get("input") or {}).get("image"))
    if original is not None:
        if label.geometry.size != original.size:
            raise RecipeError(f"restoring ended on a {label.geometry.size} grid, not the original {original.size}")
        label = Volume(np.ascontiguousarray(label.array), original, metadata=label.metadata)
    progress.update("restored", 1.0)
    return label
