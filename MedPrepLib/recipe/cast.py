"""The ``cast`` recipe step: Convert voxels to ``dtype`` (units unchanged).

See the class docstring for units and the record; parameters: ``docs/recipes.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import RecipeError
from ..processing.blockwise import blockwise, scratch_buffer
from .base import Param, Step

_CAST_TYPES = ("uint8", "int8", "uint16", "int16", "uint32", "int32", "float16", "float32", "float64")


@dataclass(frozen=True)
class Cast(Step):
    """Convert voxels to ``dtype`` (units unchanged).

    Integer targets round to the nearest integer (ties to even, ``np.rint``). Values outside
    the target's range are an error unless ``"clip": true``, which saturates them; NaN cannot
    become an integer and is always an error.
    """

    op = "cast"
    parameters = (
        Param("dtype", "one of", doc="the voxel type of the output", choices=_CAST_TYPES),
        Param("clip", "true/false", False, "", "saturate values outside the type's range instead of failing"),
    )
    dtype: str = "float32"
    clip: bool = False



    def apply(self, image, label, ctx):
        target = np.dtype(self.dtype)
        a = image.array
        info = np.iinfo(target) if target.kind in "iu" else np.finfo(target)
        lo, hi = float(info.min), float(info.max)
        vmin, vmax = _finite_range(a, ctx.where, allow_nan=target.kind == "f")
        rounding = target.kind in "iu" and a.dtype.kind == "f"
        clipped = (np.rint(vmin) if rounding else vmin) < lo or (np.rint(vmax) if rounding else vmax) > hi
        if clipped and not self.clip:
            raise RecipeError(
                f"{ctx.where}: values {vmin:g}..{vmax:g} do not fit {self.dtype} ({lo:g}..{hi:g})",
                hint='add "clip": true to saturate them, or scale the image first',
            )
        record = {"from": str(a.dtype), "to": self.dtype, "clipped": bool(clipped), "range": [vmin, vmax]}
        if a.dtype == target:  # nothing to convert: the same voxels, not a copy of them
            return image, label, record
        out = np.empty(a.shape, target)

        def fn(src, dst):
            if rounding or clipped:
                work = scratch_buffer(src.size, np.float64).reshape(src.shape)
                np.copyto(work, src, casting="unsafe")
                if rounding:
                    np.rint(work, out=work)
                if clipped:
                    np.clip(work, lo, hi, out=work)
                np.copyto(dst, work, casting="unsafe")
            else:
                np.copyto(dst, src, casting="unsafe")

        blockwise(fn, a, out)
        return image.with_array(out), label, record


def _finite_range(a: np.ndarray, where: str, *, allow_nan: bool) -> tuple[float, float]:
    def fn(b):
        if b.dtype.kind == "f":
            if not allow_nan and np.isnan(b).any():
                raise RecipeError(f"{where}: the image holds NaN voxels, which no integer type can hold")
            return float(np.nanmin(b)) if b.size else np.inf, float(np.nanmax(b)) if b.size else -np.inf
        return float(b.min()), float(b.max())

    parts = blockwise(fn, a)
    return min(p[0] for p in parts), max(p[1] for p in parts)
