"""Blockwise voxel passes: the engine of the intensity steps (window, z-score, CT normalisation...).

A pass calls a function on matching blocks of one or more (z, y, x[, c]) arrays — flat runs of
:data:`BLOCK_VOXELS` voxels, small enough to stay in the CPU cache — so a chain of numpy in-place
ufuncs costs one pass over main memory instead of one per operation, and no full-size
temporary exists beside the output. Blocks run on the shared thread pool
(:mod:`~MedPrepLib.processing.threads`); results come back in block order, and the exact sums
(:func:`exact_sum`, :func:`mean_std`) never depend on the number of threads or the layout.
Values are in the image's own units; nothing here knows about recipes.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from typing import Any

import numpy as np

from .threads import default_threads, shared_executor

BLOCK_VOXELS = 1 << 18
"""Voxels per block (1 MB of float32): fits the L2 cache of current CPUs."""


def blockwise(fn: Callable[..., Any], *arrays: np.ndarray, block: int | None = None) -> list:
    """Call ``fn`` on matching blocks of arrays of one (z, y, x[, c]) shape; returns the results.

    C-contiguous arrays are cut into flat runs of ``block`` voxels (default
    :data:`BLOCK_VOXELS`); otherwise into slabs of whole z-slices. Blocks may run on several
    threads (:func:`~MedPrepLib.processing.threads.default_threads`), so ``fn`` must only write its own block and use
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
    workers = default_threads()
    if workers > 1 and len(pieces) >= 4 * workers:
        # Each worker takes the next block from a shared counter (atomic under the GIL): one task
        # per worker instead of one per block, whose dispatch cost as much as the work on a block
        # of this size, and a busy core simply takes fewer blocks.
        results: list = [None] * len(pieces)
        counter = itertools.count()

        def worker() -> None:
            while (i := next(counter)) < len(pieces):
                results[i] = fn(*pieces[i])

        for future in [shared_executor(workers).submit(worker) for _ in range(workers)]:
            future.result()
        return results
    return [fn(*args) for args in pieces]


_LOCAL = threading.local()


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


def as_float32(src: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Copy ``src`` into the float32 block ``out`` (no-op when they are the same memory)."""
    if src is not out:
        np.copyto(out, src, casting="unsafe")
    return out


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
