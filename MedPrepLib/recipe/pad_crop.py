"""The ``pad_crop`` recipe step: Pad or crop every axis to a fixed ``shape`` (voxels, (x, y, z)), centred or random.

See the class docstring for units and the record; parameters: ``docs/recipes.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..volume import Volume
from .base import Param, check_output_grid, param_error, parse_shape
from .box import (
    BoxStep,
)


@dataclass(frozen=True)
class PadCrop(BoxStep):
    """Pad or crop every axis to a fixed ``shape`` (voxels, (x, y, z)), centred or random."""

    op = "pad_crop"
    parameters = (
        Param("shape", "[x, y, z] integers", unit="voxels", doc="the output size"),
        Param("mode", "one of", "center", "", "where the box sits: centred, or random (seeded)", ("center", "random")),
        Param("pad_value", 'number or "auto"', "auto", "image units", '"auto": the image minimum (labels get 0)', attribute="pad"),
    )

    shape: tuple[int, int, int] = (128, 128, 128)
    mode: str = "center"
    pad: Any = "auto"

    @classmethod
    def from_params(cls, params: dict[str, Any], where: str) -> PadCrop:
        p = cls.read(params, where)
        shape = parse_shape(p.raw("shape"), where)
        pad = p.raw("pad_value")
        if pad != "auto" and (isinstance(pad, bool) or not isinstance(pad, (int, float)) or not np.isfinite(pad)):
            raise param_error(where, "pad_value", f'must be a number or "auto", got {pad!r}')
        step = cls(shape=tuple(shape), mode=p.choice("mode"), pad=pad)
        p.finish()
        return step

    def pad_value(self, image: Volume) -> float | list[float]:
        if self.pad != "auto":
            return self.pad
        ct = str(image.metadata.get("modality", "")).upper() == "CT"
        a = image.array
        # each channel is padded with its own minimum: stacked windows have different "air"
        lows = [float(a.min())] if a.ndim == 3 else [float(v) for v in a.min(axis=(0, 1, 2))]
        values = [-1000.0 if ct and low <= -1000 else low for low in lows]
        return values[0] if a.ndim == 3 else values

    def box(self, image, label, ctx, where):
        check_output_grid(where, "shape", self.shape, image.n_channels)
        size = np.array(self.shape)
        n = np.array(image.geometry.size)
        diff = n - size  # > 0: crop, < 0: pad
        if self.mode == "center":
            start = np.where(diff >= 0, diff // 2, -((-diff) // 2))
        else:
            rng = np.random.default_rng(ctx.seed)
            start = np.array([rng.integers(min(d, 0), max(d, 0) + 1) for d in diff])
        return start, size
