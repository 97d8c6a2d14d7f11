"""The ``zero_center`` recipe step: Subtract a mean: ``y = x - mean`` (float32, same units as the input).

See the class docstring for units and the record; parameters: ``docs/recipes.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import RecipeError
from ..processing.blockwise import as_float32, blockwise, exact_sum
from ..volume import Volume
from .base import Param, RunContext, Step, check_finite, output_array, param_error, step_statistics


def _mean(value, where: str) -> float | str:
    """A number, or "dataset" (measured by the statistics pass)."""
    if value == "dataset":
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
        raise param_error(where, "mean", f'must be a number or "dataset", got {value!r}')
    return float(value)


@dataclass(frozen=True)
class ZeroCenter(Step):
    """Subtract a mean: ``y = x - mean`` (float32, same units as the input).

    ``"mean"`` is a number, or ``"dataset"``: the mean over every voxel of every training case
    at this step's input, computed by the statistics pass
    (:func:`~MedPrepLib.recipe.statistics.compute_statistics`) and passed to the run.
    """

    op = "zero_center"
    parameters = (
        Param("mean", 'number or "dataset"', unit="image units",
              doc='the value subtracted; "dataset": the training-set mean (medprep statistics)', parse=_mean),
    )
    mean: float | str = "dataset"



    def needs_statistics(self) -> bool:
        return self.mean == "dataset"

    def collect_statistics(self, image: Volume, label: Volume | None, ctx: RunContext):
        total, _, n = exact_sum(image.array)
        return total, n

    def reduce_statistics(self, parts: list, ctx: RunContext) -> dict:
        n = sum(p[1] for p in parts)
        if n == 0:
            raise RecipeError(f"{ctx.where}: no voxels to compute a mean over")
        return {"op": self.op, "mean": float(sum(p[0] for p in parts) / n), "voxels": n}

    def apply(self, image, label, ctx):
        check_finite(image, ctx.where)
        mean = self.mean
        if mean == "dataset":
            stats = step_statistics(ctx, self.op)
            if not stats or "mean" not in stats:
                raise RecipeError(
                    f"{ctx.where}: 'mean' is \"dataset\" but no dataset statistics were given",
                    hint="measure it over the training set (medprep statistics IMAGES --recipe R.json -o stats.json, "
                    "or compute_statistics), then give that file as statistics (medprep preprocess --statistics stats.json)",
                )
            mean = float(stats["mean"])
        out = output_array(image, ctx)
        m32 = np.float32(mean)

        def fn(src, dst):
            as_float32(src, dst)
            np.subtract(dst, m32, out=dst)

        blockwise(fn, image.array, out)
        return image.with_array(out), label, {"mean": mean}
