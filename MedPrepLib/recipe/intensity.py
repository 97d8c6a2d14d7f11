"""Voxel-wise intensity steps: padding to air, clip-and-scale, zero-centring, cast — and the
block engine the other intensity steps (window, z-score, CT normalization) share.

Units: CT images arrive in Hounsfield units (the DICOM loader applies RescaleSlope/Intercept),
MR in the scanner's arbitrary units. Each step says what it expects and what it produces;
"normalised" means a unitless float32.

Speed and memory: every step writes one float32 (or target dtype) output and never touches its
input (which may be a read-only view on a SimpleITK buffer). The work runs block by block
(:data:`BLOCK_VOXELS` voxels, small enough to stay in the CPU cache), so a chain of numpy
in-place ufuncs costs one pass over main memory instead of one per operation, and no
full-size temporary exists beside the output. When the image is an intermediate of the running
recipe (``ctx.scratch``), a step of the same dtype writes into it in place.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import RecipeError
from ..processing.blockwise import as_float32, blockwise, exact_sum, scratch_buffer
from ..volume import Volume
from .base import Param, RunContext, Step, check_finite, output_array, param_error, register, step_statistics

# -- steps ----------------------------------------------------------------------------------------


@register
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
        Param("padding_value", 'number, "metadata" or "none"', "metadata", "image units",
              'voxels of this value become air; "metadata": the series\' PixelPaddingValue after rescale'),
        Param("air", "number", -1000.0, "HU", "the value padding and out-of-field voxels get"),
        Param("threshold", "number", -2000.0, "HU", "voxels at or below it are outside the field of view"),
        Param("out_of_field", "true/false", True, "", "also set the voxels at or below 'threshold' to air"),
    )
    air: float = -1000.0
    threshold: float = -2000.0
    out_of_field: bool = True
    padding_value: float | str = "metadata"

    @classmethod
    def from_params(cls, params, where):
        p = cls.read(params, where)
        pv = p.raw("padding_value")
        if pv not in ("metadata", "none") and (isinstance(pv, bool) or not isinstance(pv, (int, float))):
            raise param_error(where, "padding_value", f'must be a number, "metadata" or "none"; got {pv!r}')
        step = cls(
            air=p.number("air"),
            threshold=p.number("threshold"),
            out_of_field=p.boolean("out_of_field"),
            padding_value=pv if isinstance(pv, str) else float(pv),
        )
        p.finish()
        return step

    def to_params(self):
        return {
            "op": self.op,
            "air": self.air,
            "threshold": self.threshold,
            "out_of_field": self.out_of_field,
            "padding_value": self.padding_value,
        }

    def apply(self, image, label, ctx):
        pads: list[float] = []
        if self.padding_value == "metadata":
            pads = series_padding_values(image.metadata, ctx.where)
        elif self.padding_value != "none":
            pads = [float(self.padding_value)]
        a = image.array
        out = output_array(image, ctx, a.dtype)
        air = a.dtype.type(self.air)
        if a.dtype.kind in "iu" and not np.can_cast(np.min_scalar_type(int(self.air)), a.dtype):
            raise RecipeError(f"{ctx.where}: air value {self.air:g} does not fit the image's {a.dtype}")

        def fn(src, dst):
            if src is not dst:
                np.copyto(dst, src)
            m = src <= self.threshold if self.out_of_field else np.zeros(src.shape, bool)
            for pad in pads:
                m |= src == pad
            np.copyto(dst, air, where=m)
            return int(np.count_nonzero(m))

        replaced = sum(blockwise(fn, a, out))
        record = {"padding_values": pads, "voxels_set_to_air": replaced}
        return image.with_array(out), label, record


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


@register
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
    min: float = -1000.0
    max: float = 400.0
    out: tuple[float, float] = (0.0, 1.0)

    @classmethod
    def from_params(cls, params, where):
        p = cls.read(params, where)
        lo, hi = p.number("min"), p.number("max")
        if hi <= lo:
            raise param_error(where, "max", f"must be greater than 'min' ({lo:g}), got {hi:g}")
        out = p.numbers("out", 2)
        if out[1] == out[0]:
            raise param_error(where, "out", f"must be a range of two different numbers, got {list(out)}")
        p.finish()
        return cls(min=lo, max=hi, out=tuple(out))

    def to_params(self):
        return {"op": self.op, "min": self.min, "max": self.max, "out": list(self.out)}

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


@register
@dataclass(frozen=True)
class ZeroCenter(Step):
    """Subtract a mean: ``y = x - mean`` (float32, same units as the input).

    ``"mean"`` is a number, or ``"dataset"``: the mean over every voxel of every training case
    at this step's input, computed by the statistics pass
    (:func:`~MedPrepLib.recipe.statistics.compute_statistics`) and passed to the run.
    """

    op = "zero_center"
    parameters = (
        Param("mean", 'number or "dataset"', unit="image units",
              doc='the value subtracted; "dataset": the training-set mean (medprep statistics)'),
    )
    mean: float | str = "dataset"

    @classmethod
    def from_params(cls, params, where):
        p = cls.read(params, where)
        mean = p.raw("mean")
        if mean != "dataset":
            mean = p.number("mean")
        p.finish()
        return cls(mean=mean)

    def to_params(self):
        return {"op": self.op, "mean": self.mean}

    def needs_statistics(self) -> bool:
        return self.mean == "dataset"

    def collect_statistics(self, image: Volume, label: Volume | None, ctx: RunContext):
        total, _, n = exact_sum(image.array)
        return total, n

    def reduce_statistics(self, parts: list, ctx: RunContext) -> dict:
        n = sum(p[1] for p in parts)
        if n == 0:
            raise RecipeError(f"{ctx.where}: no voxels to compute a mean over")
        return {"op": self.op, "mean": float(sum(p[0] for p in parts) / n), "voxels": n}

    def apply(self, image, label, ctx):
        check_finite(image, ctx.where)
        mean = self.mean
        if mean == "dataset":
            stats = step_statistics(ctx, self.op)
            if not stats or "mean" not in stats:
                raise RecipeError(
                    f"{ctx.where}: 'mean' is \"dataset\" but no dataset statistics were given",
                    hint="measure it over the training set (medprep statistics IMAGES --recipe R.json -o stats.json, "
                    "or compute_statistics), then give that file as statistics (medprep preprocess --statistics stats.json)",
                )
            mean = float(stats["mean"])
        out = output_array(image, ctx)
        m32 = np.float32(mean)

        def fn(src, dst):
            as_float32(src, dst)
            np.subtract(dst, m32, out=dst)

        blockwise(fn, image.array, out)
        return image.with_array(out), label, {"mean": mean}


_CAST_TYPES = ("uint8", "int8", "uint16", "int16", "uint32", "int32", "float16", "float32", "float64")


@register
@dataclass(frozen=True)
class Cast(Step):
    """Convert voxels to ``dtype`` (units unchanged).

    Integer targets round to the nearest integer (ties to even, ``np.rint``). Values outside
    the target's range are an error unless ``"clip": true``, which saturates them; NaN cannot
    become an integer and is always an error.
    """

    op = "cast"
    parameters = (
        Param("dtype", "one of", doc="the voxel type of the output", choices=_CAST_TYPES),
        Param("clip", "true/false", False, "", "saturate values outside the type's range instead of failing"),
    )
    dtype: str = "float32"
    clip: bool = False

    @classmethod
    def from_params(cls, params, where):
        p = cls.read(params, where)
        step = cls(dtype=p.choice("dtype"), clip=p.boolean("clip"))
        p.finish()
        return step

    def to_params(self):
        return {"op": self.op, "dtype": self.dtype, "clip": self.clip}

    def apply(self, image, label, ctx):
        target = np.dtype(self.dtype)
        a = image.array
        info = np.iinfo(target) if target.kind in "iu" else np.finfo(target)
        lo, hi = float(info.min), float(info.max)
        vmin, vmax = _finite_range(a, ctx.where, allow_nan=target.kind == "f")
        rounding = target.kind in "iu" and a.dtype.kind == "f"
        clipped = (np.rint(vmin) if rounding else vmin) < lo or (np.rint(vmax) if rounding else vmax) > hi
        if clipped and not self.clip:
            raise RecipeError(
                f"{ctx.where}: values {vmin:g}..{vmax:g} do not fit {self.dtype} ({lo:g}..{hi:g})",
                hint='add "clip": true to saturate them, or scale the image first',
            )
        out = np.empty(a.shape, target)

        def fn(src, dst):
            if rounding or clipped:
                work = scratch_buffer(src.size, np.float64).reshape(src.shape)
                np.copyto(work, src, casting="unsafe")
                if rounding:
                    np.rint(work, out=work)
                if clipped:
                    np.clip(work, lo, hi, out=work)
                np.copyto(dst, work, casting="unsafe")
            else:
                np.copyto(dst, src, casting="unsafe")

        blockwise(fn, a, out)
        record = {"from": str(a.dtype), "to": self.dtype, "clipped": bool(clipped), "range": [vmin, vmax]}
        return image.with_array(out), label, record


def _finite_range(a: np.ndarray, where: str, *, allow_nan: bool) -> tuple[float, float]:
    def fn(b):
        if b.dtype.kind == "f":
            if not allow_nan and np.isnan(b).any():
                raise RecipeError(f"{where}: the image holds NaN voxels, which no integer type can hold")
            return float(np.nanmin(b)) if b.size else np.inf, float(np.nanmax(b)) if b.size else -np.inf
        return float(b.min()), float(b.max())

    parts = blockwise(fn, a)
    return min(p[0] for p in parts), max(p[1] for p in parts)
