"""The ``crop_label`` recipe step: Crop to the bounding box of the label's nonzero voxels, plus ``margin_mm``.

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
class CropLabel(MarginBoxStep):
    """Crop to the bounding box of the label's nonzero voxels, plus ``margin_mm``."""

    op = "crop_label"

    def box(self, image, label, ctx, where):
        if label is None:
            raise RecipeError(f"{where}: crop_label needs a label map", hint="pass a label, or use crop_body")
        found = bounding_box(label.array != 0)
        if found is None:
            raise RecipeError(f"{where}: the label map is empty (all 0), there is nothing to crop to")
        return grow_box(*found, image.geometry, self.margin_mm)
