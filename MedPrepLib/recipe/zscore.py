"""The ``zscore`` recipe step: Z-score: ``y = (x - mean) / std`` (float32, unitless), mean and population std (ddof=0).

See the class docstring for units and the record; parameters: ``docs/recipes.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import RecipeError
from ..processing.blockwise import as_float32, blockwise, is_nonzero, mean_std
from ..volume import Volume
from .base import Param, RunContext, Step, check_finite, mask_name, output_array, param_error


def _positive(m: np.ndarray) -> np.ndarray:
    return m > 0



@dataclass(frozen=True)
class ZScore(Step):
    """Z-score: ``y = (x - mean) / std`` (float32, unitless), mean and population std (ddof=0).

    ``"mask"`` says which voxels the mean and std are computed over:

    * ``"all"`` (default) — the whole volume;
    * ``"nonzero"`` — voxels whose value is not 0 (MR with a zero background);
    * ``"label"`` — voxels where the label map is > 0;
    * any other name — a mask volume given to the run (``run_recipe(..., masks={name: vol})``),
      voxels > 0, on the image's grid at this step.

    All voxels are transformed with those numbers (as TorchIO's ``ZNormalization``); with
    ``"fill_outside": v`` the voxels outside the mask are set to ``v`` instead (nnU-Net keeps
    its zero background this way). A constant region (std 0) is only centred: the divisor
    becomes 1 and the record says ``"std_was_zero": true``. Multi-channel images are normalised
    per channel.
    """

    op = "zscore"
    parameters = (
        Param("mask", "text", "all", "", '"all", "nonzero", "label" or a mask name: the voxels mean and std are measured over',
              parse=mask_name("all", "nonzero", "label")),
        Param("fill_outside", "number", None, "", "the value of voxels outside the mask (needs a mask)"),
    )

    def validate(self, where):
        if self.fill_outside is not None and self.mask == "all":
            raise param_error(where, "fill_outside", 'needs a "mask" other than "all"')
    mask: str = "all"
    fill_outside: float | None = None



    def _mask_source(self, image: Volume, label: Volume | None, ctx: RunContext, channel: np.ndarray):
        if self.mask == "all":
            return None, None
        if self.mask == "nonzero":
            return channel, is_nonzero
        if self.mask == "label":
            if label is None:
                raise RecipeError(f"{ctx.where}: 'mask' is \"label\" but no label map was given")
            source = label.array
        else:
            if self.mask not in ctx.masks:
                known = ", ".join(sorted(ctx.masks)) or "none"
                raise RecipeError(
                    f"{ctx.where}: 'mask' names {self.mask!r}, which is not a mask given to the run (given: {known})"
                )
            source = ctx.masks[self.mask].array
        if source.shape[:3] != image.shape[:3]:
            raise RecipeError(
                f"{ctx.where}: the mask's shape {source.shape} does not match the image's {image.shape[:3]} (z, y, x)"
            )
        return source, _positive

    def apply(self, image, label, ctx):
        check_finite(image, ctx.where)
        a = image.array
        out = output_array(image, ctx)
        channels = [slice(None)] if a.ndim == 3 else [(Ellipsis, c) for c in range(a.shape[3])]
        records = []
        for c in channels:
            src, dst = a[c], out[c]
            mask, test = self._mask_source(image, label, ctx, src)
            mean, std, n = mean_std(src, mask, test)
            if n == 0:
                raise RecipeError(f"{ctx.where}: the mask {self.mask!r} selects no voxels")
            divisor = std if std > 0 else 1.0
            m32, s32 = np.float32(mean), np.float32(1.0 / divisor)
            fill = None if self.fill_outside is None else np.float32(self.fill_outside)

            def fn(s, d, m=None, m32=m32, s32=s32, fill=fill, test=test):
                as_float32(s, d)
                if fill is not None:
                    outside = ~test(m)
                np.subtract(d, m32, out=d)
                np.multiply(d, s32, out=d)
                if fill is not None:
                    np.copyto(d, fill, where=outside)

            arrays = (src, dst) if mask is None else (src, dst, mask)
            # The mask source may be the source itself ("nonzero"): test it before overwriting.
            blockwise(fn, *arrays)
            records.append({"mean": mean, "std": std, "voxels": n, "std_was_zero": std == 0})
        record = {"mask": self.mask, **records[0]} if len(records) == 1 else {"mask": self.mask, "channels": records}
        return image.with_array(out), label, record
