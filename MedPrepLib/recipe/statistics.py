"""The statistics pass: dataset numbers some steps need before they can run on any case.

``ct_normalization`` needs the training set's foreground mean, std and 0.5/99.5 percentiles
(nnU-Net's fingerprint); ``zero_center`` with ``"mean": "dataset"`` the mean over all voxels.
:func:`compute_statistics` runs the recipe on every case up to each such step, lets the step
measure its input there, and combines the cases. The numbers describe exactly what the step
will see at run time (after any resampling or cropping that precedes it).

The result is a JSON-friendly dict, passed to :func:`~MedPrepLib.recipe.run.run_recipe`
as ``statistics`` and stored in provenance::

    {"format": "medprep-statistics", "version": 1, "cases": 12,
     "steps": {"3": {"op": "ct_normalization", "mean": ..., "std": ..., ...}}}

Steps are numbered from 1, as in recipe error messages.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ..errors import RecipeError
from ..progress import as_progress
from ..volume import Volume
from .base import RunContext
from .run import apply_step
from .schema import Recipe

STATISTICS_FORMAT = "medprep-statistics"

Case = tuple[Volume, "Volume | None"]


def steps_needing_statistics(recipe: Recipe) -> list[int]:
    """1-based numbers of the steps that need dataset statistics."""
    return [n for n, s in enumerate(recipe.steps, 1) if s.needs_statistics()]


def compute_statistics(
    recipe: Recipe,
    cases: Iterable[Case] | Callable[[], Iterable[Case]],
    *,
    n_cases: int | None = None,
    seed: int = 0,
    progress=None,
) -> dict[str, Any]:
    """Measure the dataset statistics every step of ``recipe`` needs, over ``cases``.

    ``cases`` yields ``(image, label)`` pairs (label may be None where no step needs one); a
    list, or a function returning a fresh iterator, so that a recipe with several dependent
    statistics (``ct_normalization`` then ``zero_center`` by dataset) can be walked once per
    such step. ``n_cases`` is needed by nnU-Net's sample-size rule when ``cases`` has no length.
    Returns ``{}`` when no step needs statistics.
    """
    pending = steps_needing_statistics(recipe)
    stats: dict[str, Any] = {"format": STATISTICS_FORMAT, "version": 1, "cases": None, "steps": {}}
    if not pending:
        return {}
    if n_cases is None and hasattr(cases, "__len__"):
        n_cases = len(cases)  # type: ignore[arg-type]
    root = as_progress(progress)
    one_shot = not callable(cases) and iter(cases) is cases  # type: ignore[arg-type]
    if one_shot and len(pending) > 1:
        raise RecipeError(
            f"steps {', '.join(map(str, pending))} each need dataset statistics, so the cases are read "
            "once per step; pass them as a list or a function returning a fresh iterator"
        )
    for k, number in enumerate(pending):
        step = recipe.steps[number - 1]
        ctx = RunContext(statistics=stats, seed=seed)
        ctx.n_cases = n_cases
        parts = []
        progress_k = root.sub(k / len(pending), (k + 1) / len(pending))
        count = 0
        for image, label in cases() if callable(cases) else cases:
            for m, earlier in enumerate(recipe.steps[: number - 1], 1):
                image, label, _ = apply_step(earlier, image, label, ctx, m, progress_k.sub(0, 0))
                ctx.scratch = False  # never let an earlier step's output alias a caller's array
            ctx.step_number, ctx.where = number, f"step {number} ({step.op})"
            parts.append(step.collect_statistics(image, label, ctx))
            count += 1
            progress_k.update(f"statistics for step {number} ({step.op})", count / n_cases if n_cases else 0.0)
        if count == 0:
            raise RecipeError(f"step {number} ({step.op}): the statistics pass got no cases")
        if n_cases is not None and count != n_cases:
            raise RecipeError(f"the statistics pass was told of {n_cases} cases but read {count}")
        stats["steps"][str(number)] = step.reduce_statistics(parts, ctx)
        stats["cases"] = count
    return stats
