"""The ``crop_nonzero`` recipe step: Crop to the bounding box of nonzero voxels (any channel), plus ``margin_mm``.

See the class docstring for units and the record; parameters: ``docs/recipes.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import RecipeError
from .box import (
    MarginBoxStep,
    bounding_box,
    grow_box,
)


@dataclass(frozen=True)
class CropNonzero(MarginBoxStep):
    """Crop to the bounding box of nonzero voxels (any channel), plus ``margin_mm``."""

    op = "crop_nonzero"

    def box(self, image, label, ctx, where):
        mask = image.array != 0
        if mask.ndim == 4:
            mask = mask.any(axis=3)
        found = bounding_box(mask)
        if found is None:
            raise RecipeError(f"{where}: the image has no nonzero voxel to crop to")
        return grow_box(*found, image.geometry, self.margin_mm)
