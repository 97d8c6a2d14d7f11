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

import itertools
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import RecipeError
from ..threads import default_threads
from ..volume import Volume
from .base import Param, RunContext, Step, param_error, register, step_statistics

BLOCK_VOXELS = 1 << 18
"""Voxels per block (1 MB of float32): fits the L2 cache of current CPUs."""


def blockwise(fn: Callable[..., Any], *arrays: np.ndarray, block: int | None = None) -> list:
    """Call ``fn`` on matching blocks of arrays of one (z, y, x[, c]) shape; returns the results.

    C-contiguous arrays are cut into flat runs of ``block`` voxels (default
    :data:`BLOCK_VOXELS`); otherwise into slabs of whole z-slices. Blocks may run on several
    threads (:func:`block_threads`), so ``fn`` must only write its own block and use
    :func:`scratch_buffer` for temporaries; results come back in block order, so reductions
    combine identically whatever the number of threads.
    """
    block = block or BLOCK_VOXELS
    shape = arrays[0].shape
    if any(a.shape != shape for a in arrays):
        raise ValueError(f"blockwise needs arrays of one shape, got {[a.shape for a in arrays]}")
    if all(a.flags.c_contiguous for a in arrays):
        flats = [a.reshape(-1) for a in arrays]
        n = flats[0].size
        pieces = [tuple(f[s : s + block] for f in flats) for s in range(0, n, block)]
    else:
        per_slice = int(np.prod(shape[1:])) or 1
        step = max(1, block // per_slice)
        pieces = [tuple(a[z : z + step] for a in arrays) for z in range(0, shape[0], step)]
    workers = block_threads()
    if workers > 1 and len(pieces) >= 4 * workers:
        # Each worker takes the next block from a shared counter (atomic under the GIL): one task
        # per worker instead of one per block, whose dispatch cost as much as the work on a block
        # of this size, and a busy core simply takes fewer blocks.
        results: list = [None] * len(pieces)
        counter = itertools.count()

        def worker() -> None:
            while (i := next(counter)) < len(pieces):
                results[i] = fn(*pieces[i])

        for future in [_executor(workers).submit(worker) for _ in range(workers)]:
            future.result()
        return results
    return [fn(*args) for args in pieces]


block_threads = default_threads  # the name the intensity steps and their tests use


_EXECUTORS: dict[tuple[int, int], Any] = {}
_LOCAL = threading.local()


def _executor(workers: int):
    # Keyed by process id: a pool inherited through fork() has no threads behind it.
    key = (os.getpid(), workers)
    if key not in _EXECUTORS:
        from concurrent.futures import ThreadPoolExecutor

        _EXECUTORS[key] = ThreadPoolExecutor(workers, thread_name_prefix="medprep-blocks")
    return _EXECUTORS[key]


def scratch_buffer(size: int, dtype) -> np.ndarray:
    """A per-thread temporary of ``size`` elements, reused from block to block (never zeroed)."""
    dtype = np.dtype(dtype)
    buffers = getattr(_LOCAL, "buffers", None)
    if buffers is None:
        buffers = _LOCAL.buffers = {}
    buf = buffers.get(dtype.str)
    if buf is None or buf.size < size:
        buf = buffers[dtype.str] = np.empty(max(size, BLOCK_VOXELS), dtype)
    return buf[:size]


def output_array(image: Volume, ctx: RunContext | None, dtype=np.float32, shape=None) -> np.ndarray:
    """The array a step writes into: the image's own array when the recipe owns it, else new."""
    dtype = np.dtype(dtype)
    shape = image.shape if shape is None else tuple(shape)
    a = image.array
    if (
        ctx is not None
        and getattr(ctx, "scratch", False)
        and a.dtype == dtype
        and a.shape == shape
        and a.flags.writeable
        and a.flags.c_contiguous
    ):
        return a
    return np.empty(shape, dtype)


def as_float32(src: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Copy ``src`` into the float32 block ``out`` (no-op when they are the same memory)."""
    if src is not out:
        np.copyto(out, src, casting="unsafe")
    return out


def check_finite(image: Volume, where: str) -> None:
    """Raise a RecipeError if a float image holds NaN or infinity (they poison every statistic)."""
    a = image.array
    if a.dtype.kind == "f" and not all(blockwise(lambda b: bool(np.isfinite(b).all()), a)):
        raise RecipeError(f"{where}: the image holds NaN or infinite voxels", hint="fix or mask them before this step")


def is_nonzero(m: np.ndarray) -> np.ndarray:
    """The default mask test: voxels whose value is not 0."""
    return m != 0


_COLUMNS = 2048
"""Width of the rows whose column sums :func:`_wrapfree_sum` accumulates."""


def _wrapfree_sum(v: np.ndarray, bound: int, limit: int, total_dtype) -> int:
    """Exact sum of the flat int32 / uint32 array ``v`` whose values are at most ``bound`` in size.

    Rows of :data:`_COLUMNS` values are added column-wise in ``v``'s own dtype (vectorised row
    additions: several times faster than a reduction widening to 64 bits), as many rows at a
    time as cannot exceed ``limit`` (the dtype's range); the column sums then add up in
    ``total_dtype`` (64 bits). When too few rows fit, it widens directly.
    """
    rows = limit // max(bound, 1)
    full = v.size - v.size % _COLUMNS
    if rows < 16 or full == 0:
        return int(v.sum(dtype=total_dtype))
    step = rows * _COLUMNS
    total = int(v[full:].sum(dtype=total_dtype))
    for start in range(0, full, step):
        part = v[start : min(start + step, full)].reshape(-1, _COLUMNS)
        total += int(np.add.reduce(part, axis=0, dtype=v.dtype).sum(dtype=total_dtype))
    return total


def _small_int_moments(values: np.ndarray) -> tuple[int, int]:
    """Exact (sum, sum of squares) of integers of at most 16 bits, as Python integers.

    The values are widened to int32 once; squares (at most 65535**2 < 2**32) are read as uint32,
    so nothing wraps. Both sums use :func:`_wrapfree_sum`: the values bounded by their dtype, the
    squares by the block's largest square.
    """
    q = scratch_buffer(values.size, np.int32)
    np.copyto(q, values.reshape(-1), casting="unsafe")
    if q.size == 0:
        return 0, 0
    info = np.iinfo(values.dtype) if values.dtype.kind in "iu" else np.iinfo(np.uint8)
    s1 = _wrapfree_sum(q, max(-int(info.min), int(info.max)), 2**31 - 1, np.int64)
    np.multiply(q, q, out=q)
    squares = q.view(np.uint32)
    return s1, _wrapfree_sum(squares, int(squares.max()), 2**32 - 1, np.uint64)


def exact_sum(
    a: np.ndarray, mask: np.ndarray | None = None, test: Callable[[np.ndarray], np.ndarray] | None = None
) -> tuple[float, float, int]:
    """(sum, sum of squares about the mean, count) of ``a`` (optionally where ``mask``), float64.

    ``mask`` is an array of ``a``'s shape; ``test`` turns a block of it into booleans (default
    :func:`is_nonzero`), so no full-size boolean array is ever made. Integer images are summed
    exactly (Python integers); float images in two deterministic block-ordered passes (mean, then
    squared deviations), so the result never depends on threads or memory layout. An integer
    image that is its own mask with the default test (its nonzero voxels) is summed whole: its
    zeros add nothing, so only the count needs the test.
    """
    test = test or is_nonzero

    def select(b, m):
        return b if m is None else b[test(m)]

    # Sums run on a float64 copy of each block (no BLAS: its threads stall on a busy machine).
    def as_f64(b):
        f = scratch_buffer(b.size, np.float64)
        np.copyto(f, b.reshape(-1), casting="unsafe")
        return f

    small_int = a.dtype.kind in "iub" and a.dtype.itemsize <= 2
    own_nonzero = mask is a and test is is_nonzero and a.dtype.kind in "iub"

    def int_moments(b, m=None):
        if own_nonzero:
            count = int(np.count_nonzero(b))
            m = None
        else:
            b = select(b, m)
            count = b.size
        if small_int:
            return *_small_int_moments(b), count
        f = as_f64(b)
        s1 = int(f.sum())  # integer-valued partial sums below 2**53 are exact in float64
        np.multiply(f, f, out=f)
        return s1, int(f.sum()), count

    def float_sum(b, m=None):
        return float(as_f64(select(b, m)).sum()), b.size if m is None else int(np.count_nonzero(test(m)))

    arrays = (a,) if mask is None or own_nonzero else (a, mask)
    if a.dtype.kind in "iub":
        # Exact integer sums do not depend on the blocks: larger ones halve the per-call overhead.
        parts = blockwise(int_moments, *arrays, block=4 * BLOCK_VOXELS)
        s1 = sum(p[0] for p in parts)
        s2 = sum(p[1] for p in parts)
        n = sum(p[2] for p in parts)
        if n == 0:
            return 0.0, 0.0, 0
        # n * (sum of squared deviations) = n * s2 - s1^2, exact in integers.
        return float(s1), (n * s2 - s1 * s1) / n, n
    parts = blockwise(float_sum, *arrays)
    n = sum(p[1] for p in parts)
    if n == 0:
        return 0.0, 0.0, 0
    total = float(np.sum(np.array([p[0] for p in parts], dtype=np.float64)))
    mean = total / n

    def squared_deviations(b, m=None):
        f = as_f64(select(b, m))
        np.subtract(f, mean, out=f)
        np.multiply(f, f, out=f)
        return float(f.sum())

    sq = blockwise(squared_deviations, *arrays)
    return total, float(np.sum(np.array(sq, dtype=np.float64))), n


def mean_std(a: np.ndarray, mask: np.ndarray | None = None, test=None) -> tuple[float, float, int]:
    """Mean, population standard deviation (ddof=0) and count, in float64 (see :func:`exact_sum`)."""
    total, sq, n = exact_sum(a, mask, test)
    if n == 0:
        return 0.0, 0.0, 0
    return total / n, float(np.sqrt(max(sq, 0.0) / n)), n


def describe_array(a: np.ndarray) -> dict:
    return {"shape": list(a.shape), "dtype": str(a.dtype)}


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
