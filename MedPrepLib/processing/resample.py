"""Resampling of volumes and label maps onto new grids, in LPS physical space.

The grid rule (one rule, used for a target spacing and a target shape):

* the output **direction is the input's** — an oblique image stays oblique; resampling happens
  along the index axes in the image's own frame;
* the output **spacing is exactly the target** (mm, (x, y, z));
* the output **size** along each axis is ``floor(n * s / s_new + 0.5)`` (the field of view in
  mm divided by the new spacing, halves rounded up), at least 1;
* the output **origin** is chosen so that the centre of the field of view (mid-point of the first
  and last voxel centres) does not move — as TorchIO does. The output field of view is thus the
  input's within half an output voxel on each side, centred on it.

For a target *shape* (x, y, z) the spacing becomes ``s * n / n_new`` (the field of view from voxel
edge to voxel edge is kept) with the same centred origin; for a *reference grid* the reference's
size, spacing, origin and direction are used as given.

Sample positions outside the input by at most half a voxel (the outer output voxels when
up-sampling) take the value at the nearest edge voxel — never a constant such as 0 (which is
water in HU, SimpleITK's default), and the spacing is never silently changed to align corners
(scipy.ndimage.zoom's behaviour). Farther outside (only possible with a reference grid) voxels
get ``fill_value``.

Speed: when the output grid has the input's direction, the resampling is separable: three
successive 1D interpolations (gather + weighted sum along one axis with precomputed indices and
weights), in float32, split over threads (numpy releases the GIL). With linear or nearest
interpolation the two in-plane passes run slice by slice (rows combined by a sparse matrix
product, the contiguous axis by gathers, in the order that gathers least) and the z pass streams
output slice by output slice, so the input is read once and the output written once with no
intermediate volume. Cubic B-spline interpolation prefilters each axis (recursive filter, mirror boundaries)
just before interpolating along it, shrinking axes first. Other grids (a reference with another
direction) fall back to ``scipy.ndimage.affine_transform`` (a signed permutation of the axes is
handled exactly by permuting first). Per-label linear interpolation of label maps finds the
voxels whose 8 neighbours agree separably and scores only the label boundaries.

Arrays are (z, y, x[, c]); everything else is (x, y, z).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..errors import ArgumentError, InvalidImageError
from ..geometry import Geometry
from ..volume import Volume
from .threads import Workers

IMAGE_INTERPOLATIONS = ("linear", "bspline", "nearest")
LABEL_INTERPOLATIONS = ("nearest", "label_linear")
ANISOTROPIC_AXIS_INTERPOLATIONS = ("linear", "nearest")

_POLE = np.sqrt(3.0) - 2.0  # pole of the cubic B-spline interpolation prefilter
_CHUNK_BYTES = 1 << 20


# -- grid rule -------------------------------------------------------------------------------
def _round_half_up(x: np.ndarray) -> np.ndarray:
    return np.floor(np.asarray(x, float) + 0.5 + 1e-9).astype(int)


def _centred(geometry: Geometry, size, spacing) -> Geometry:
    size = np.maximum(np.asarray(size, int), 1)
    spacing = np.asarray(spacing, float)
    half = spacing * (size - 1) / 2.0
    origin = geometry.center() - geometry.direction @ half
    return geometry.replace(size=tuple(size), spacing=tuple(spacing), origin=tuple(origin))


def grid_for_spacing(geometry: Geometry, spacing: Sequence[float]) -> Geometry:
    """The output grid for a target spacing (mm, (x, y, z)) under the module's grid rule.

    >>> g = grid_for_spacing(Geometry((512, 512, 300), (0.7, 0.7, 2.5)), (1, 1, 1))
    >>> g.size, g.spacing
    ((358, 358, 750), (1.0, 1.0, 1.0))
    """
    spacing = np.asarray(spacing, float)
    if spacing.shape != (3,) or np.any(spacing <= 0) or not np.all(np.isfinite(spacing)):
        raise ArgumentError(f"target spacing must be 3 positive numbers (x, y, z) in mm, got {spacing.tolist()}")
    size = _round_half_up(np.array(geometry.size) * np.array(geometry.spacing) / spacing)
    return _centred(geometry, size, spacing)


def grid_for_shape(geometry: Geometry, size: Sequence[int]) -> Geometry:
    """The output grid for a target size (voxels, (x, y, z)): same field of view and centre.

    >>> grid_for_shape(Geometry((4, 4, 4), (1, 1, 1)), (2, 2, 8)).spacing
    (2.0, 2.0, 0.5)
    """
    size = np.asarray(size)
    if size.shape != (3,) or np.any(size < 1) or np.any(size != np.round(size)):
        raise ArgumentError(f"target shape must be 3 positive integers (x, y, z), got {size.tolist()}")
    size = size.astype(int)
    spacing = np.array(geometry.spacing) * np.array(geometry.size) / size
    return _centred(geometry, size, spacing)


def anisotropic_axes(spacing: Sequence[float], threshold: float = 3.0) -> list[int]:
    """Index axes (0=x, 1=y, 2=z) whose spacing exceeds ``threshold`` times the smallest one.

    >>> anisotropic_axes((0.7, 0.7, 2.5)), anisotropic_axes((0.7, 0.7, 2.0))
    ([2], [])
    """
    s = np.asarray(spacing, float)
    return [int(a) for a in np.flatnonzero(s > threshold * s.min())]


# -- 1D interpolation tables -----------------------------------------------------------------
def _mirror(idx: np.ndarray, n: int) -> np.ndarray:
    if n == 1:
        return np.zeros_like(idx)
    period = 2 * (n - 1)
    idx = np.abs(idx) % period
    return np.where(idx > n - 1, period - idx, idx)


def _axis_table(x: np.ndarray, n: int, kernel: str) -> tuple[np.ndarray, np.ndarray | None]:
    """Input indices (taps, m) and float32 weights (taps, m) sampling positions ``x`` (voxels).

    Positions are clamped to [0, n - 1] first: outside samples take the edge value.
    """
    xc = np.clip(x, 0.0, n - 1.0)
    if kernel == "nearest":
        return np.minimum(np.floor(xc + 0.5), n - 1).astype(np.intp)[None], None
    i = np.floor(xc)
    t = xc - i
    i = i.astype(np.intp)
    if kernel == "linear":
        if n == 1:
            return np.zeros((1, x.size), np.intp), np.ones((1, x.size), np.float32)
        shift = i == n - 1  # the last sample: use the cell [n-2, n-1] with t = 1
        i[shift] -= 1
        t[shift] = 1.0
        return np.stack([i, i + 1]), np.stack([1.0 - t, t]).astype(np.float32)
    if kernel == "cubic":  # cubic B-spline; the prefilter gain 6 is folded into the weights
        t2, t3 = t * t, t * t * t
        w = np.stack([(1 - t) ** 3, 4 - 6 * t2 + 3 * t3, 1 + 3 * t + 3 * t2 - 3 * t3, t3])
        idx = _mirror(np.stack([i - 1, i, i + 1, i + 2]), n)
        return idx, w.astype(np.float32)
    raise ValueError(f"unknown kernel {kernel!r}")


# -- separable passes ----------------------------------------------------------------------
def _chunks(n: int, bytes_per_unit: int, minimum: int) -> list[slice]:
    step = max(1, min(_CHUNK_BYTES // max(bytes_per_unit, 1), -(-n // minimum)))
    return [slice(a, min(a + step, n)) for a in range(0, n, step)]


def _gather_weighted(s: np.ndarray, axis: int, idx: np.ndarray, weights: list | None, o: np.ndarray) -> None:
    """``o = sum_t weights[t] * take(s, idx[t], axis)`` for one cache-sized block (numpy axis 1 or 2)."""
    if weights is None:
        np.take(s, idx[0], axis=axis, out=o, mode="clip")
        return
    buf = np.empty(o.shape, s.dtype)
    np.take(s, idx[0], axis=axis, out=buf, mode="clip")
    np.multiply(buf, weights[0], out=o)
    if len(weights) > 1:
        tmp = np.empty(o.shape, np.float32)
        for t in range(1, len(weights)):
            np.take(s, idx[t], axis=axis, out=buf, mode="clip")
            np.multiply(buf, weights[t], out=tmp)
            o += tmp


def _broadcast_weights(w: np.ndarray | None, axis: int, ndim: int) -> list | None:
    if w is None:
        return None
    shape = [1] * ndim
    shape[axis] = w.shape[1]
    return [w[t].reshape(shape) for t in range(w.shape[0])]


def _interpolate_axis(src: np.ndarray, axis: int, idx: np.ndarray, w: np.ndarray | None, pool: Workers) -> np.ndarray:
    """1D interpolation along numpy ``axis`` (0..2): ``out[.., j, ..] = sum_t w[t, j] * src[.., idx[t, j], ..]``.

    ``w`` None means nearest neighbour (a gather, keeping the dtype); otherwise the result is
    float32.
    """
    m = idx.shape[1]
    shape = list(src.shape)
    shape[axis] = m
    out = np.empty(shape, src.dtype if w is None else np.float32)
    if axis == 0:
        # Planes along z: a python loop over output planes, each a whole-plane ufunc, chunked
        # over rows so that threads share the work and data stays in cache.
        row_bytes = out[0, 0].nbytes
        lerp = w is not None and idx.shape[0] == 2 and np.array_equal(idx[1], idx[0] + 1)

        def work(rows: slice) -> None:
            s, o = src[:, rows], out[:, rows]
            if w is None:
                for j in range(m):
                    o[j] = s[idx[0, j]]
                return
            if lerp:  # o = s[k] + t * (s[k + 1] - s[k]), the difference computed once per interval
                diff = np.empty(o.shape[1:], np.float32)
                current = -1
                for j in range(m):
                    k = idx[0, j]
                    if k != current:
                        np.subtract(s[k + 1], s[k], out=diff, dtype=np.float32)
                        current = k
                    np.multiply(diff, w[1, j], out=o[j])
                    np.add(o[j], s[k], out=o[j], dtype=np.float32)
                return
            tmp = np.empty(o.shape[1:], np.float32)
            for j in range(m):
                np.multiply(s[idx[0, j]], w[0, j], out=o[j])
                for t in range(1, idx.shape[0]):
                    np.multiply(s[idx[t, j]], w[t, j], out=tmp)
                    o[j] += tmp

        pool.run(work, _chunks(src.shape[1], row_bytes * 16, 2 * pool.threads))
        return out
    weights = _broadcast_weights(w, axis, src.ndim)

    def work(planes: slice) -> None:
        _gather_weighted(src[planes], axis, idx, weights, out[planes])

    pool.run(work, _chunks(src.shape[0], out[0].nbytes, 4 * pool.threads))
    return out


_GATHER_COST = 4.0
"""Cost of one output value of a column gather (numpy axis 2, with its weights) in units of one
output value of the sparse row product: measured 3-5x on x86-64; it picks the in-plane order."""


class _InPlane:
    """Both in-plane passes of one slice (numpy axes 1 and 2), the intermediate kept in the cache.

    ``passes`` holds ``(axis, idx, w)`` for axes 1 and 2. With weights (a float result) the row
    pass (axis 1, whole rows combined) runs as one sparse product ``W @ slice`` with a CSR matrix
    of the 1D table (compiled row operations, about 4x cheaper per output value than numpy's
    gathers), and the column pass (axis 2, the contiguous axis) as gathers. The order is the one
    with the least work: for a down-sampling in-plane, rows first so that the costly column gather
    runs on fewer rows. Without weights (nearest: keeping the dtype) both passes are gathers, in
    the given order.
    """

    def __init__(self, src_shape, passes: list, ndim: int):
        tables = {axis: (idx, w) for axis, idx, w in passes}
        (iy, wy), (ix, wx) = tables[1], tables[2]
        self.ny, self.nx = src_shape[1], src_shape[2]
        self.my, self.mx = iy.shape[1], ix.shape[1]
        self.order = passes
        self.rows = None
        if wy is not None and wx is not None:
            from scipy.sparse import csr_matrix

            taps = iy.shape[0]
            rows = np.repeat(np.arange(self.my), taps)
            self.rows = csr_matrix((wy.T.ravel(), (rows, iy.T.ravel())), shape=(self.my, self.ny), dtype=np.float32)
            x_first = _GATHER_COST * self.ny * self.mx + self.my * self.mx
            y_first = self.my * self.nx + _GATHER_COST * self.my * self.mx
            self.y_first = y_first <= x_first
        self.ix = ix
        self.bx = _broadcast_weights(wx, 2, ndim)
        self.gathers = [(axis, idx, _broadcast_weights(w, axis, ndim)) for axis, idx, w in passes]

    def __call__(self, s: np.ndarray, o: np.ndarray) -> None:
        """Resample the input slice ``s`` (y, x[, c]) into ``o`` (y', x'[, c])."""
        tail = s.shape[2:]
        if self.rows is None:
            (a1, i1, b1), (a2, i2, b2) = self.gathers
            mid_shape = [1, *s.shape]
            mid_shape[a1] = i1.shape[1]
            mid = np.empty(mid_shape, s.dtype if b1 is None else np.float32)
            _gather_weighted(s[None], a1, i1, b1, mid)
            _gather_weighted(mid, a2, i2, b2, o[None])
        elif self.y_first:
            mid = self.rows @ s.reshape(self.ny, -1)
            _gather_weighted(mid.reshape((1, self.my, self.nx) + tail), 2, self.ix, self.bx, o[None])
        else:
            mid = np.empty((1, self.ny, self.mx) + tail, np.float32)
            _gather_weighted(s[None], 2, self.ix, self.bx, mid)
            o[...] = (self.rows @ mid.reshape(self.ny, -1)).reshape(o.shape)


def _interpolate_in_plane(src: np.ndarray, passes: list, pool: Workers, dtype) -> np.ndarray:
    """Both in-plane passes (numpy axes 1 and 2, see :class:`_InPlane`) slice by slice.

    ``passes`` holds ``(axis, idx, w)``; the intermediate result of each slice stays in the
    cache instead of making a full-size array.
    """
    shape = list(src.shape)
    for axis, idx, _ in passes:
        shape[axis] = idx.shape[1]
    out = np.empty(shape, dtype)
    plane = _InPlane(src.shape, passes, src.ndim)

    def work(planes: slice) -> None:
        for k in range(planes.start, planes.stop):
            plane(src[k], out[k])

    plane_bytes = int(np.prod(shape[1:])) * np.dtype(dtype).itemsize
    pool.run(work, _chunks(src.shape[0], plane_bytes, 4 * pool.threads))
    return out


def _interpolate_streaming(
    src: np.ndarray, passes: list, z_idx: np.ndarray, z_w: np.ndarray | None, pool: Workers, dtype
) -> np.ndarray:
    """All three passes with z last, output slice by output slice: no full-size intermediate.

    Each thread walks a run of output z-slices in order, resampling in-plane (``passes``, as
    :func:`_interpolate_in_plane`) only the input slices it needs — each once, kept while
    they are still needed — then combining them along z (``z_idx``/``z_w``: 1D tables).
    Memory traffic is one read of the input and one write of the output.
    """
    mz = z_idx.shape[1]
    plane_shape = list(src.shape[1:])
    for axis, idx, _ in passes:
        plane_shape[axis - 1] = idx.shape[1]
    out = np.empty([mz] + plane_shape, dtype)
    resample_plane = _InPlane(src.shape, passes, src.ndim)
    lerp = z_w is not None and z_idx.shape[0] == 2 and np.array_equal(z_idx[1], z_idx[0] + 1)

    def in_plane(k: int) -> np.ndarray:
        plane = np.empty(plane_shape, dtype)
        resample_plane(src[k], plane)
        return plane

    def work(js: slice) -> None:
        cache: dict[int, np.ndarray] = {}
        diff, diff_k = None, -1
        for j in range(js.start, js.stop):
            ks = z_idx[:, j]
            low = int(ks.min())
            for k in [k for k in cache if k < low]:
                del cache[k]
            for k in ks:
                if int(k) not in cache:
                    cache[int(k)] = in_plane(int(k))
            if z_w is None:
                out[j] = cache[int(ks[0])]
            elif lerp:
                k = int(ks[0])
                if diff_k != k:
                    diff = np.subtract(cache[k + 1], cache[k], out=diff)
                    diff_k = k
                np.multiply(diff, z_w[1, j], out=out[j])
                out[j] += cache[k]
            else:
                np.multiply(cache[int(ks[0])], z_w[0, j], out=out[j])
                for t in range(1, len(ks)):
                    out[j] += cache[int(ks[t])] * z_w[t, j]

    runs = max(1, min(mz, 4 * pool.threads))  # a few runs per thread: balance on shared cores
    bounds = np.linspace(0, mz, runs + 1).astype(int)
    pool.run(work, [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a])
    return out


def _prefilter_axis(c: np.ndarray, axis: int, pool: Workers) -> float:
    """Cubic B-spline interpolation prefilter of float32 ``c`` along numpy ``axis``, in place.

    Mirror boundaries (the signal continues as s[-k] = s[k]), as scipy's
    ``spline_filter1d(mode="mirror")``. Returns the gain still to be applied (folded into the
    interpolation weights by the caller): along z and y the recursive filter of Unser et al.
    runs as whole-slice vector operations without its gain 6; along x (contiguous lines) scipy's
    own line filter is faster and includes the gain.
    """
    n = c.shape[axis]
    if n == 1:
        return 1.0
    if axis == c.ndim - 1 or (c.ndim == 4 and axis == 2):
        from scipy.ndimage import spline_filter1d

        def line_work(planes: slice) -> None:
            spline_filter1d(c[planes], 3, axis=axis, output=c[planes], mode="mirror")

        pool.run(line_work, _chunks(c.shape[0], c[0].nbytes, 4 * pool.threads))
        return 1.0
    z = np.float32(_POLE)
    anti = np.float32(_POLE / (_POLE * _POLE - 1.0))
    if n <= 24:  # exact mirror initialisation over a short signal
        full = _POLE ** np.arange(2 * n - 1)
        init = np.zeros(n)
        init[0] = 1.0
        k = np.arange(1, n - 1)
        init[k] = full[k] + full[2 * n - 2 - k]
        init[n - 1] = full[n - 1]
        init /= 1.0 - _POLE ** (2 * n - 2)
    else:  # z**24 < 1e-13: the truncated sum is exact in float32
        init = _POLE ** np.arange(24)
    init = init.astype(np.float32)
    other = 1 if axis == 0 else 0

    def work(part: slice) -> None:
        sl = [slice(None)] * c.ndim
        sl[other] = part
        v = np.moveaxis(c[tuple(sl)], axis, 0)
        # A fixed summation order (not BLAS, whose order follows the chunk shape and so the
        # thread count): the result is the same bytes on any machine.
        first = v[0] * init[0]
        for k in range(1, len(init)):
            first += v[k] * init[k]
        tmp = np.empty_like(first)
        v[0] = first
        for k in range(1, n):
            np.multiply(v[k - 1], z, out=tmp)
            v[k] += tmp
        np.multiply(v[n - 2], z, out=tmp)
        tmp += v[n - 1]
        np.multiply(tmp, anti, out=v[n - 1])
        for k in range(n - 2, -1, -1):
            np.subtract(v[k + 1], v[k], out=v[k])
            v[k] *= z

    pool.run(work, _chunks(c.shape[other], 1, pool.threads))
    return 6.0


# -- label-safe interpolation ------------------------------------------------------------------
def _label_dtype_with_sentinel(array: np.ndarray) -> tuple[np.ndarray, int]:
    """The label array (possibly widened) and a value that no label uses."""
    if array.dtype == np.bool_:
        return array.view(np.uint8), 2
    if not np.issubdtype(array.dtype, np.integer):
        raise InvalidImageError(f"a label map must hold integers, got dtype {array.dtype}")
    high = int(array.max()) if array.size else 0
    if high < np.iinfo(array.dtype).max:
        return array, high + 1
    wider = np.int64 if np.issubdtype(array.dtype, np.signedinteger) or high < 2**62 else None
    if wider is None:
        raise InvalidImageError("label values use the whole uint64 range; renumber them first")
    return array.astype(wider), high + 1


def _mixed_pass(src: np.ndarray, axis: int, i0: np.ndarray, i1: np.ndarray, sentinel, pool: Workers) -> np.ndarray:
    """Gather ``src`` at ``i0`` along ``axis``; where the value at ``i1`` differs, write ``sentinel``."""
    a = _interpolate_axis(src, axis, i0[None], None, pool)
    differs = i0 != i1
    if not differs.any():
        return a
    b = _interpolate_axis(src, axis, i1[None], None, pool)

    def work(planes: slice) -> None:
        aa, bb = a[planes], b[planes]
        np.copyto(aa, sentinel, where=aa != bb, casting="unsafe")

    pool.run(work, _chunks(a.shape[0], a[0].nbytes, 4 * pool.threads))
    return a


def _label_linear_separable(src: np.ndarray, cells: list, order: list[int], pool: Workers) -> np.ndarray:
    """Per-label linear interpolation (one-hot, trilinear, argmax) on an axis-aligned grid.

    ``cells[na] = (i0, i1, t)`` per numpy axis: output sample j lies between input indices i0[j]
    and i1[j] at fraction t[j]. Output voxels whose 8 neighbours share one label take it
    directly (found separably with a sentinel for "mixed"); only the others — the label
    boundaries — are scored: each neighbour's label gets the sum of the trilinear weights of the
    neighbours with that label, the best score wins, ties go to the smaller label (as argmax of
    one-hot channels).
    """
    work_src, sentinel = _label_dtype_with_sentinel(src)
    cur = work_src
    for na in order:
        i0, i1, _ = cells[na]
        cur = _mixed_pass(cur, na, i0, i1, sentinel, pool)
    flat = cur.reshape(-1)
    boundary = np.flatnonzero(flat == sentinel)
    if boundary.size:
        _score_boundary(np.ascontiguousarray(work_src).reshape(-1), work_src.shape, flat, boundary, cells, cur.shape)
    if cur.dtype != src.dtype:
        cur = cur.astype(src.dtype)
    return cur


def _score_boundary(src_flat, src_shape, out_flat, boundary, cells, out_shape) -> None:
    """Per-label linear votes at the output voxels ``boundary`` (flat indices), in place."""
    _, ny, nx = src_shape
    strides = (ny * nx, nx, 1)
    # per numpy axis: flat offset of the lower neighbour, step to the upper one, weight of the upper
    tables = [
        (i0.astype(np.int64) * st, (i1 - i0).astype(np.int64) * st, t.astype(np.float32))
        for (i0, i1, t), st in zip(cells, strides)
    ]
    step = 1 << 16
    for start in range(0, boundary.size, step):
        pos = boundary[start : start + step]
        coords = np.unravel_index(pos, out_shape)
        base = np.zeros(pos.size, np.int64)
        offsets, uppers = [], []
        for (off, d, t), c in zip(tables, coords):
            base += off[c]
            offsets.append(d[c])
            uppers.append(t[c])
        labels, weights = [], []
        for cz in (0, 1):
            wz = uppers[0] if cz else 1.0 - uppers[0]
            for cy in (0, 1):
                wzy = wz * (uppers[1] if cy else 1.0 - uppers[1])
                for cx in (0, 1):
                    idx = base
                    if cz:
                        idx = idx + offsets[0]
                    if cy:
                        idx = idx + offsets[1]
                    if cx:
                        idx = idx + offsets[2]
                    labels.append(np.take(src_flat, idx))
                    weights.append(wzy * (uppers[2] if cx else 1.0 - uppers[2]))
        # Two candidates: the first corner's label a, and another label b seen in the cell. In a
        # cell with two labels their votes add to 1 and decide; cells with more labels (rare
        # junctions) are scored in full below.
        a = labels[0]
        b = a.copy()
        for lab in labels[1:]:
            np.copyto(b, lab, where=lab != a)
        score_a = np.zeros(pos.size, np.float32)
        score_b = np.zeros(pos.size, np.float32)
        for lab, w in zip(labels, weights):
            score_a += np.where(lab == a, w, 0)
            score_b += np.where(lab == b, w, 0)
        result = np.where(score_a > score_b + 1e-6, a, np.where(score_b > score_a + 1e-6, b, np.minimum(a, b)))
        many = np.flatnonzero(score_a + score_b < 1.0 - 1e-4)
        if many.size:
            lab = np.stack([x[many] for x in labels])
            w = np.stack([x[many] for x in weights])
            score = np.zeros(w.shape, np.float32)
            for c in range(8):
                score += np.where(lab == lab[c], w[c], 0)  # score[d] gains w[c] where lab[d] == lab[c]
            candidates = score >= score.max(axis=0) - 1e-6
            big = np.iinfo(np.int64).max
            result[many] = np.where(candidates, lab.astype(np.int64), big).min(axis=0)
        out_flat[pos] = result


def label_values(array: np.ndarray) -> np.ndarray:
    """The sorted distinct values of an integer label array (fast for small non-negative labels)."""
    if array.size == 0:
        return np.zeros(0, array.dtype)
    if array.dtype == np.bool_:
        array = array.view(np.uint8)
    low, high = int(array.min()), int(array.max())
    if low >= 0 and high < (1 << 16) and np.issubdtype(array.dtype, np.integer):
        counts = np.zeros(high + 1, np.int64)
        flat = array.reshape(-1)
        for start in range(0, flat.size, 1 << 20):
            counts += np.bincount(flat[start : start + (1 << 20)], minlength=high + 1)
        return np.flatnonzero(counts).astype(array.dtype)
    return np.unique(array)


# -- driver -----------------------------------------------------------------------------------
def _index_map(source: Geometry, target: Geometry) -> tuple[np.ndarray, np.ndarray]:
    """``A, b`` with source continuous index = A @ target index + b ((x, y, z) indices)."""
    inv = np.linalg.inv(source.matrix)
    return inv @ target.matrix, inv @ (np.asarray(target.origin) - np.asarray(source.origin))


def _signed_permutation(a: np.ndarray, tol: float = 1e-6) -> tuple[list[int], list[bool]] | None:
    """If ``a`` is a positive diagonal times a signed permutation: (perm, flips) that align it."""
    big = np.abs(a) > tol * np.abs(a).max()
    if not (big.sum(axis=0) == 1).all() or not (big.sum(axis=1) == 1).all():
        return None
    perm = [int(np.flatnonzero(big[:, n])[0]) for n in range(3)]
    flips = [bool(a[perm[n], n] < 0) for n in range(3)]
    return perm, flips


def _kernels(interpolation: str, spacing, anisotropic_axis_interpolation: str, threshold: float) -> list[str]:
    """The 1D kernel of each index axis (x, y, z)."""
    base = {"linear": "linear", "bspline": "cubic", "nearest": "nearest", "label_linear": "linear"}[interpolation]
    kernels = [base] * 3
    if base != "nearest":
        for a in anisotropic_axes(spacing, threshold):
            kernels[a] = anisotropic_axis_interpolation
    return kernels


def _outside_slabs(positions: list[np.ndarray], source_size) -> list[np.ndarray]:
    return [(x < -0.5 - 1e-6) | (x > n - 0.5 + 1e-6) for x, n in zip(positions, source_size)]


def resample(
    volume: Volume,
    target: Geometry,
    *,
    interpolation: str = "linear",
    anisotropic_axis_interpolation: str = "linear",
    anisotropy_threshold: float = 3.0,
    fill_value: float | None = None,
    threads: int | None = None,
    progress=None,
) -> Volume:
    """Resample an image (or a label map) onto ``target`` (see the module docstring).

    ``interpolation``: "linear", "bspline" (cubic B-spline), "nearest" for images; "nearest" or
    "label_linear" (per-label linear: one-hot, trilinear, argmax) for label maps. Index axes
    whose input spacing exceeds ``anisotropy_threshold`` times the smallest use
    ``anisotropic_axis_interpolation`` ("linear" or "nearest") instead, as nnU-Net treats the
    low-resolution axis separately (no effect with "nearest").

    Output dtype: the input's for "nearest" and "label_linear", float32 otherwise. Voxels farther
    than half a voxel outside the input (only with a reference grid) get ``fill_value``
    (default: the image minimum; 0 for label interpolations).
    """
    from ..progress import as_progress

    if interpolation not in IMAGE_INTERPOLATIONS + LABEL_INTERPOLATIONS:
        raise ArgumentError(f"unknown interpolation {interpolation!r} (known: {', '.join(IMAGE_INTERPOLATIONS + LABEL_INTERPOLATIONS)})")
    if anisotropic_axis_interpolation not in ANISOTROPIC_AXIS_INTERPOLATIONS:
        raise ArgumentError(
            f"unknown anisotropic_axis_interpolation {anisotropic_axis_interpolation!r} "
            f"(known: {', '.join(ANISOTROPIC_AXIS_INTERPOLATIONS)})"
        )
    progress = as_progress(progress)
    source = volume.geometry
    kernels = _kernels(interpolation, source.spacing, anisotropic_axis_interpolation, anisotropy_threshold)
    a, b = _index_map(source, target)
    aligned = _signed_permutation(a)
    if aligned is not None and (aligned[0] != [0, 1, 2] or any(aligned[1])):
        from .reorient import permute_axes

        perm, flips = aligned
        volume = permute_axes(volume, perm, flips)
        kernels = [kernels[p] for p in perm]
        source = volume.geometry
        a, b = _index_map(source, target)
    array = volume.array
    if array.dtype == np.bool_ and interpolation not in ("nearest", "label_linear"):
        array = array.astype(np.uint8)
    positions = [b[n] + a[n, n] * np.arange(target.size[n]) for n in range(3)]
    if aligned is None:
        out = _resample_general(array, a, b, target, kernels, interpolation)
    else:
        out = _resample_separable(array, positions, kernels, interpolation, threads, progress)
    slabs = _outside_slabs(positions, source.size) if aligned is not None else None
    if aligned is None or any(s.any() for s in slabs):
        if fill_value is None:
            fill_value = 0 if interpolation == "label_linear" or volume.metadata.get("is_label") else volume.array.min()
        _fill_outside(out, a, b, source.size, slabs, fill_value)
    progress.update("resampling", 1.0)
    return Volume(out, target, metadata=volume.metadata)


def _resample_separable(array, positions, kernels, interpolation, threads, progress) -> np.ndarray:
    n_in = array.shape[:3][::-1]
    # process shrinking axes first: the least data flows through the later passes
    order = sorted(range(3), key=lambda n: positions[n].size / n_in[n])
    identity = [
        positions[n].size == n_in[n] and np.allclose(positions[n], np.arange(n_in[n]), atol=1e-9) for n in range(3)
    ]
    pool = Workers(threads)
    if interpolation == "label_linear":
        if array.ndim != 3:
            raise InvalidImageError("label maps must be scalar (z, y, x) volumes")
        cells = [None, None, None]
        for n in range(3):
            x = positions[n]
            if kernels[n] == "nearest" or n_in[n] == 1:
                i0 = _axis_table(x, n_in[n], "nearest")[0][0]
                cells[2 - n] = (i0, i0, np.zeros(x.size))
            else:
                idx, w = _axis_table(x, n_in[n], "linear")
                cells[2 - n] = (idx[0], idx[1], w[1].astype(np.float64))
        return _label_linear_separable(array, cells, [2 - n for n in order], pool)
    cur = array
    owned = False
    todo = [n for n in order if not identity[n]]  # every kernel is exact at the input samples
    if "cubic" not in kernels and 0 in todo and 1 in todo:
        # x and y together, slice by slice; z before them only when it shrinks the data most
        z_first = 2 in todo and todo[0] == 2
        if z_first:
            idx, w = _axis_table(positions[2], n_in[2], kernels[2])
            cur, owned = _interpolate_axis(cur, 0, idx, w, pool), True
        passes = []
        for n in [n for n in todo if n != 2]:
            idx, w = _axis_table(positions[n], n_in[n], kernels[n])
            if w is None and interpolation != "nearest":
                w = np.ones(idx.shape, np.float32)  # a nearest axis inside a float interpolation
            passes.append((2 - n, idx, w))
        out_dtype = cur.dtype if interpolation == "nearest" else np.float32
        if 2 in todo and not z_first:
            z_idx, z_w = _axis_table(positions[2], n_in[2], kernels[2])
            return _interpolate_streaming(cur, passes, z_idx, z_w, pool, out_dtype)
        cur, owned = _interpolate_in_plane(cur, passes, pool, out_dtype), True
        progress.update("resampling", 0.6)
        todo = []
    for step, n in enumerate(todo):
        progress.update("resampling", step / 3)
        na = 2 - n
        idx, w = _axis_table(positions[n], n_in[n], kernels[n])
        if kernels[n] == "cubic":
            if not owned or cur.dtype != np.float32:
                cur = cur.astype(np.float32)
            w = w * np.float32(_prefilter_axis(cur, na, pool) / 6.0)
        if w is None and interpolation != "nearest" and cur.dtype != np.float32:
            cur = cur.astype(np.float32)  # a nearest axis inside a float interpolation
        cur = _interpolate_axis(cur, na, idx, w, pool)
        owned = True
    if interpolation != "nearest" and cur.dtype != np.float32:
        cur = cur.astype(np.float32)
    elif not owned:
        cur = cur.copy()
    return cur


def _resample_general(array, a, b, target: Geometry, kernels, interpolation) -> np.ndarray:
    """Any grid to any grid with scipy (numpy (z, y, x) order), edge values outside."""
    from scipy.ndimage import affine_transform

    matrix = a[::-1, ::-1]
    offset = b[::-1]
    shape = target.shape
    order = {"nearest": 0, "linear": 1, "cubic": 3}[kernels[0] if "cubic" not in kernels else "cubic"]
    if interpolation == "nearest":
        order = 0
    if interpolation == "label_linear":
        values = label_values(array)
        best = np.full(shape, -1.0, np.float32)
        out = np.zeros(shape, array.dtype)
        for v in values:
            score = affine_transform((array == v).astype(np.float32), matrix, offset, shape, order=1, mode="nearest")
            better = score > best + 1e-6
            out[better] = v
            best[better] = score[better]
        return out
    channels = [array] if array.ndim == 3 else [array[..., c] for c in range(array.shape[3])]
    results = []
    for ch in channels:
        if order == 0:
            results.append(affine_transform(ch, matrix, offset, shape, order=0, mode="nearest"))
        else:
            results.append(affine_transform(ch.astype(np.float32), matrix, offset, shape, order=order, mode="nearest"))
    return results[0] if array.ndim == 3 else np.stack(results, axis=-1)


def _fill_outside(out: np.ndarray, a, b, source_size, slabs, fill_value) -> None:
    if slabs is not None:
        for n, slab in enumerate(slabs):
            if slab.any():
                index = [slice(None)] * out.ndim
                index[2 - n] = slab
                out[tuple(index)] = fill_value
        return
    # general grids: voxels whose continuous source index is beyond the half-voxel border,
    # one output plane at a time to keep memory small
    ny, nx = out.shape[1:3]
    jj, ii = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
    for k in range(out.shape[0]):
        outside = np.zeros((ny, nx), bool)
        for n in range(3):
            coord = b[n] + a[n, 0] * ii + a[n, 1] * jj + a[n, 2] * k
            outside |= (coord < -0.5 - 1e-6) | (coord > source_size[n] - 0.5 + 1e-6)
        out[k][outside] = fill_value
