"""The ``pad_to_air`` recipe step: Set padding and out-of-field voxels to air, in the image's own units (HU for CT).

See the class docstring for units and the record; parameters: ``docs/recipes.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import RecipeError
from ..processing.blockwise import blockwise
from .base import Param, Step, output_array, param_error


def _padding_value(value, where: str) -> float | str:
    if value in ("metadata", "none"):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise param_error(where, "padding_value", f'must be a number, "metadata" or "none"; got {value!r}')
    return float(value)


@dataclass(frozen=True)
class PadToAir(Step):
    """Set padding and out-of-field voxels to air, in the image's own units (HU for CT).

    * voxels equal to the series' PixelPaddingValue, or to ``padding_value`` (image units) if
      given. The DICOM loader keeps PixelPaddingValue as stored (``metadata
      ["pixel_padding_value"]``, one value or a list) with the rescale it applied (``metadata
      ["provenance"]["rescale"]``); it is mapped to image units by ``stored * slope +
      intercept``. A per-slice rescale makes that ambiguous: give ``padding_value`` then;
    * voxels at or below ``threshold`` (default -2000 HU: the out-of-field value of many
      scanners, outside the reconstruction circle), unless ``"out_of_field": false``.

    They become ``air`` (default -1000 HU). The dtype is kept. Labels are untouched.
    """

    op = "pad_to_air"
    parameters = (
        Param("air", "number", -1000.0, "HU", "the value padding and out-of-field voxels get"),
        Param("threshold", "number", -2000.0, "HU", "voxels at or below it are outside the field of view"),
        Param("out_of_field", "true/false", True, "", "also set the voxels at or below 'threshold' to air"),
        Param("padding_value", 'number, "metadata" or "none"', "metadata", "image units",
              'voxels of this value become air; "metadata": the series\' PixelPaddingValue after rescale',
              parse=_padding_value),
    )
    air: float = -1000.0
    threshold: float = -2000.0
    out_of_field: bool = True
    padding_value: float | str = "metadata"



    def apply(self, image, label, ctx):
        pads: list[float] = []
        if self.padding_value == "metadata":
            pads = series_padding_values(image.metadata, ctx.where)
        elif self.padding_value != "none":
            pads = [float(self.padding_value)]
        a = image.array
        out = output_array(image, ctx, a.dtype)
        if a.dtype.kind in "iu" and not np.can_cast(np.min_scalar_type(int(self.air)), a.dtype):
            raise RecipeError(f"{ctx.where}: air value {self.air:g} does not fit the image's {a.dtype}")
        air = a.dtype.type(self.air)

        # a padding value at or below the threshold is already caught by it: one comparison less
        extra = [pad for pad in pads if not (self.out_of_field and pad <= self.threshold)]
        threshold, extra = _in_dtype(a.dtype, self.threshold, extra)

        def fn(src, dst):
            if src is not dst:
                np.copyto(dst, src)
            m = src <= threshold if self.out_of_field and threshold is not None else np.zeros(src.shape, bool)
            for pad in extra:
                m |= src == pad
            np.copyto(dst, air, where=m)
            return int(np.count_nonzero(m))

        replaced = sum(blockwise(fn, a, out))
        record = {"padding_values": pads, "voxels_set_to_air": replaced}
        return image.with_array(out), label, record


def _in_dtype(dtype: np.dtype, threshold: float, pads: list[float]):
    """The threshold and padding values as scalars of an integer image's own dtype, so that
    comparing a block costs no conversion of it to float64 (``src <= -2000.5`` holds exactly
    where ``src <= -2001``; one above the dtype's maximum is its maximum). The threshold becomes
    None when no voxel can be at or below it; padding values no voxel can equal are dropped.
    Float images get them as they are."""
    if dtype.kind not in "iu":
        return threshold, pads
    info = np.iinfo(dtype)
    at_or_below = math.floor(threshold)
    bound = dtype.type(min(at_or_below, info.max)) if at_or_below >= info.min else None
    kept = [dtype.type(int(p)) for p in pads if float(p).is_integer() and info.min <= p <= info.max]
    return bound, kept


def series_padding_values(metadata: dict, where: str) -> list[float]:
    """PixelPaddingValue(s) of a loaded DICOM series in image units (see :class:`PadToAir`)."""
    stored = metadata.get("pixel_padding_value")
    if stored is None:
        return []
    stored = stored if isinstance(stored, list) else [stored]
    rescale = (metadata.get("provenance") or {}).get("rescale") or {}
    slope, intercept = rescale.get("slope", 1.0), rescale.get("intercept", 0.0)
    if isinstance(slope, list) or isinstance(intercept, list):
        raise RecipeError(
            f"{where}: the series' rescale varies per slice, so its PixelPaddingValue has no single value in HU",
            hint='give "padding_value" in image units, or "padding_value": "none"',
        )
    return [float(v) * float(slope) + float(intercept) for v in stored]
