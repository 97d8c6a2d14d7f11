"""The ``clip_scale`` recipe step: Clip to [``min``, ``max``] (image units, e.g. HU) and map linearly onto ``out`` (default [0, 1]).

See the class docstring for units and the record; parameters: ``docs/recipes.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..processing.blockwise import as_float32, blockwise
from .base import Param, Step, check_finite, output_array, param_error


@dataclass(frozen=True)
class ClipScale(Step):
    """Clip to [``min``, ``max``] (image units, e.g. HU) and map linearly onto ``out`` (default [0, 1]).

    ``y = out[0] + (clip(x, min, max) - min) * (out[1] - out[0]) / (max - min)``, float32.
    """

    op = "clip_scale"
    parameters = (
        Param("min", "number", unit="image units", doc="lower clip bound"),
        Param("max", "number", unit="image units", doc="upper clip bound, greater than 'min'"),
        Param("out", "[low, high] numbers", (0.0, 1.0), "", "the output range min and max map onto"),
    )

    def validate(self, where):
        if self.max <= self.min:
            raise param_error(where, "max", f"must be greater than 'min' ({self.min:g}), got {self.max:g}")
        if self.out[1] == self.out[0]:
            raise param_error(where, "out", f"must be a range of two different numbers, got {list(self.out)}")
    min: float = -1000.0
    max: float = 400.0
    out: tuple[float, float] = (0.0, 1.0)



    def apply(self, image, label, ctx):
        check_finite(image, ctx.where)
        out = output_array(image, ctx)
        lo, hi = np.float32(self.min), np.float32(self.max)
        scale = np.float32((self.out[1] - self.out[0]) / (self.max - self.min))
        offset = np.float32(self.out[0])

        def fn(src, dst):
            as_float32(src, dst)
            np.clip(dst, lo, hi, out=dst)
            np.subtract(dst, lo, out=dst)
            np.multiply(dst, scale, out=dst)
            if offset:
                np.add(dst, offset, out=dst)

        blockwise(fn, image.array, out)
        return image.with_array(out), label, {"min": self.min, "max": self.max, "out": list(self.out)}
