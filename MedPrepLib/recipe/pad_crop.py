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


def _shape(value, where: str) -> tuple[int, int, int]:
    return tuple(parse_shape(value, where))


def _pad_value(value, where: str) -> float | str:
    if value != "auto" and (isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value)):
        raise param_error(where, "pad_value", f'must be a number or "auto", got {value!r}')
    return value


@dataclass(frozen=True)
class PadCrop(BoxStep):
    """Pad or crop every axis to a fixed ``shape`` (voxels, (x, y, z)), centred or random."""

    op = "pad_crop"
    parameters = (
        Param("shape", "[x, y, z] integers", unit="voxels", doc="the output size", parse=_shape),
        Param("mode", "one of", "center", "", "where the box sits: centred, or random (seeded)", ("center", "random")),
        Param("pad_value", 'number or "auto"', "auto", "image units", '"auto": the image minimum (labels get 0)', attribute="pad", parse=_pad_value),
    )

    shape: tuple[int, int, int] = (128, 128, 128)
    mode: str = "center"
    pad: Any = "auto"

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
