"""The ``crop_nonzero`` recipe step: crop to the bounding box of nonzero voxels (any channel), plus ``margin_mm``."""

from __future__ import annotations

from dataclasses import dataclass

from .box import MarginBoxStep


@dataclass(frozen=True)
class CropNonzero(MarginBoxStep):
    """Crop to the bounding box of nonzero voxels (any channel), plus ``margin_mm``."""

    op = "crop_nonzero"

    def mask(self, image, label, where):
        nonzero = image.array != 0
        return (nonzero.any(axis=3) if nonzero.ndim == 4 else nonzero), "the image has no nonzero voxel to crop to"
