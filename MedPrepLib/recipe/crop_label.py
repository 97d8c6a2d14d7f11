"""The ``crop_label`` recipe step: crop to the bounding box of the label's nonzero voxels, plus ``margin_mm``."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import RecipeError
from .box import MarginBoxStep


@dataclass(frozen=True)
class CropLabel(MarginBoxStep):
    """Crop to the bounding box of the label's nonzero voxels, plus ``margin_mm``."""

    op = "crop_label"

    def mask(self, image, label, where):
        if label is None:
            raise RecipeError(f"{where}: crop_label needs a label map", hint="pass a label, or use crop_body")
        return label.array != 0, "the label map is empty (all 0), there is nothing to crop to"
