"""The ``crop_body`` recipe step: Crop to the body: largest connected component above ``threshold_hu``, plus ``margin_mm``.

See the class docstring for units and the record; parameters: ``docs/recipes.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import RecipeError
from .base import Param
from .box import (
    BoxStep,
    bounding_box,
    grow_box,
)


@dataclass(frozen=True)
class CropBody(BoxStep):
    """Crop to the body: largest connected component above ``threshold_hu``, plus ``margin_mm``."""

    op = "crop_body"
    parameters = (
        Param("threshold_hu", "number", -500.0, "HU", "the body is the largest connected region above it"),
        Param("margin_mm", "number", 10.0, "mm", "kept around the body", minimum=0.0),
    )

    threshold_hu: float = -500.0
    margin_mm: float = 10.0



    def box(self, image, label, ctx, where):
        from scipy import ndimage

        a = image.array if image.array.ndim == 3 else image.array[..., 0]
        mask = a > self.threshold_hu
        components, n = ndimage.label(mask)
        if n == 0:
            raise RecipeError(
                f"{where}: no voxel is above threshold_hu {self.threshold_hu:g}",
                hint="crop_body needs an image in HU: put it before windowing or normalisation",
            )
        if n > 1:
            flat = components.reshape(-1)
            counts = np.zeros(n + 1, np.int64)
            for start in range(0, flat.size, 1 << 22):  # in blocks: bincount casts to int64
                counts += np.bincount(flat[start : start + (1 << 22)], minlength=n + 1)
            counts[0] = 0
            mask = components == int(np.argmax(counts))
        lo, hi = bounding_box(mask)
        return grow_box(lo, hi, image.geometry, self.margin_mm)
