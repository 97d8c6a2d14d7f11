"""Slice-stack geometry: measuring gantry tilt and uneven spacing, and regularizing them.

A stack of parallel slices is described by its slice positions ``P_k`` (ImagePositionPatient,
LPS mm, sorted along the slice normal ``n``). Written relative to the first slice,
``P_k - P_0 = d_k * n + l_k``: ``d_k`` is the distance along the normal and ``l_k`` the
sideways (in-plane) drift. A regular stack has equal steps in ``d`` and no drift; a gantry
tilt shows as a drift growing linearly with ``d`` (derived from positions against the
orientation, never from the GantryDetectorTilt tag); missing slices or uneven spacing show as
unequal steps in ``d``.

Regularization resamples onto an orthogonal, equidistant grid in physical space: each slice
is shifted in-plane by its drift (linear interpolation), then slices are interpolated
linearly along the normal onto equal steps. Voxels with no data take the ``air`` value.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

TOL_MM = 0.01
"""Largest sideways drift (mm) of a slice position still treated as untilted."""

STEP_TOL_FRACTION = 0.01
"""Largest deviation of a slice from equal steps, as a fraction of the step (at least
``TOL_MM``), still treated as evenly spaced: rounding jitter of ImagePositionPatient must
not trigger resampling; a missing slice deviates by a whole step."""

EXACT_MM = 1e-3
"""Deviations above this (mm) but below the thresholds above are reported, not corrected."""


@dataclass(frozen=True)
class StackGeometry:
    """Measured geometry of a sorted slice stack (all distances in mm, LPS).

    ``distances``: d_k along the normal from the first slice; ``drifts``: l_k, shape (n, 3);
    ``step``: the mean step along the normal; ``tilt_deg``: angle between the slice-to-slice
    step and the normal; ``max_step_error``: largest |d_k - k * step|; ``max_drift_error``:
    largest deviation of l_k from a straight (tilted) line.
    """

    distances: np.ndarray
    drifts: np.ndarray
    step: float
    tilt_deg: float
    drift_per_step: np.ndarray
    max_step_error: float
    max_drift_error: float

    @property
    def tilted(self) -> bool:
        return float(np.abs(self.drifts).max(initial=0.0)) > TOL_MM

    @property
    def uneven(self) -> bool:
        return self.max_step_error > max(TOL_MM, STEP_TOL_FRACTION * abs(self.step))

    @property
    def max_deviation(self) -> float:
        """Largest distance (mm) of a slice from the regular grid through the first and last slice."""
        return max(self.max_step_error, self.max_drift_error, float(np.abs(self.drifts).max(initial=0.0)))

    @property
    def irregular_drift(self) -> bool:
        return self.max_drift_error > TOL_MM

    @property
    def regular(self) -> bool:
        return not (self.tilted or self.uneven or self.irregular_drift)


def measure(positions: np.ndarray, normal: np.ndarray) -> StackGeometry:
    """Measure a stack from its sorted slice positions (n, 3) and unit slice normal."""
    p = np.asarray(positions, dtype=np.float64)
    rel = p - p[0]
    d = rel @ normal
    drifts = rel - np.outer(d, normal)
    n = len(p)
    if n < 2:
        return StackGeometry(d, drifts, 0.0, 0.0, np.zeros(3), 0.0, 0.0)
    step = float(d[-1] / (n - 1))
    k = np.arange(n)
    step_error = float(np.abs(d - k * step).max())
    # Drift along a straight line through the first and last slice, parametrised by d
    per_mm = drifts[-1] / d[-1] if d[-1] != 0 else np.zeros(3)
    drift_error = float(np.linalg.norm(drifts - np.outer(d, per_mm), axis=1).max())
    drift_per_step = per_mm * step
    tilt = math.degrees(math.atan2(float(np.linalg.norm(drift_per_step)), step)) if step else 0.0
    return StackGeometry(d, drifts, step, tilt, drift_per_step, step_error, drift_error)


def describe_problem(g: StackGeometry, names: list[str]) -> str:
    """One sentence naming the tilt angle or the gap, and the files around it."""
    parts = []
    if g.tilted:
        # per *typical* step: with a missing slice the mean step is not a step of the stack
        typical = float(np.median(np.diff(g.distances))) if len(g.distances) > 1 else g.step
        per_step = float(np.linalg.norm(g.drift_per_step)) / g.step * typical if g.step else 0.0
        parts.append(
            f"gantry tilt of {g.tilt_deg:.2f} degrees (slice positions drift "
            f"{per_step:.3f} mm sideways per {typical:.3f} mm slice step, "
            f"{np.abs(g.drifts).max():.2f} mm in total from {_name(names, 0)} to {_name(names, -1)})"
        )
    if g.uneven:
        steps = np.diff(g.distances)
        typical = float(np.median(steps))
        worst = int(np.argmax(np.abs(steps - typical)))
        parts.append(
            f"uneven slice spacing: {steps[worst]:.3f} mm between {_name(names, worst)} and "
            f"{_name(names, worst + 1)} where the usual step is {typical:.3f} mm "
            f"(steps range {steps.min():.3f} to {steps.max():.3f} mm)"
        )
    if g.irregular_drift and not g.tilted:
        parts.append(f"slices drift sideways irregularly (up to {g.max_drift_error:.3f} mm)")
    return "; ".join(parts)


def _name(names: list[str], k: int) -> str:
    return os.path.basename(names[k]) if names else f"slice {k}"


MAX_GAP_STEPS = 4.0
"""Widest gap (in regular slice steps) that ``resample`` bridges by interpolation: up to three
consecutive missing slices. A wider gap means separate ranges (two acquisitions, a scout
series sharing the UID...): interpolating across it would invent anatomy, so it is refused."""


def gap_in_steps(g: StackGeometry) -> float:
    """The widest slice-to-slice distance in units of the regular grid step (1.0 when even)."""
    steps = np.diff(g.distances)
    if len(steps) == 0 or not g.uneven:
        return 1.0
    return float(steps.max() / target_step(g))


def target_step(g: StackGeometry) -> float:
    """Slice step (mm) of the regular grid: the smallest step, so no slice is lost."""
    steps = np.diff(g.distances)
    if len(steps) == 0:
        return 0.0
    if not g.uneven:
        return g.step
    return float(steps.min())


def regularize(
    array: np.ndarray,
    g: StackGeometry,
    row_dir: np.ndarray,
    col_dir: np.ndarray,
    spacing_xy: tuple[float, float],
    air: float,
) -> tuple[np.ndarray, float, tuple[int, int]]:
    """Resample a (z, y, x[, t]) stack onto an orthogonal, equidistant grid aligned with its first slice.

    ``spacing_xy`` is (column spacing, row spacing) in mm. The in-plane field of view grows so
    that no acquired voxel is lost (the sideways drift of a tilt widens it). Returns the new
    array (same dtype, rounded when integer), its slice step in mm, and the (x, y) index of the
    first slice's first pixel in the new grid's *negative* offset: the new origin is
    ``P_0 + offset_x * col_spacing * row_dir + offset_y * row_spacing * col_dir`` (offsets <= 0).
    """
    from scipy import ndimage

    shifts_x = g.drifts @ row_dir / spacing_xy[0]
    shifts_y = g.drifts @ col_dir / spacing_xy[1]
    ox, oy = int(math.floor(shifts_x.min() + 1e-6)), int(math.floor(shifts_y.min() + 1e-6))
    ex, ey = int(math.ceil(shifts_x.max() - 1e-6)), int(math.ceil(shifts_y.max() - 1e-6))
    ny, nx = array.shape[1], array.shape[2]
    out_ny, out_nx = ny + ey - oy, nx + ex - ox
    dz = target_step(g)
    n_out = int(round(g.distances[-1] / dz)) + 1 if dz > 0 else 1
    if n_out > 1:
        dz = float(g.distances[-1] / (n_out - 1))
    z_out = np.arange(n_out) * dz
    extra = array.shape[3:]
    out = np.empty((n_out, out_ny, out_nx, *extra), dtype=array.dtype)
    is_int = np.issubdtype(array.dtype, np.integer)

    def shifted(k: int) -> np.ndarray:
        canvas = np.full((out_ny, out_nx, *extra), air, dtype=np.float32)
        canvas[-oy : -oy + ny, -ox : -ox + nx] = array[k]
        sx, sy = shifts_x[k], shifts_y[k]
        if abs(sx) < 1e-6 and abs(sy) < 1e-6:
            return canvas
        shift = (sy, sx, 0) if extra else (sy, sx)
        return ndimage.shift(canvas, shift, order=1, mode="constant", cval=air)

    cache: dict[int, np.ndarray] = {}

    def get(k: int) -> np.ndarray:
        if k not in cache:
            if len(cache) > 2:
                cache.pop(min(cache))
            cache[k] = shifted(k)
        return cache[k]

    d = g.distances
    for i, z in enumerate(z_out):
        k = int(np.clip(np.searchsorted(d, z + 1e-6) - 1, 0, len(d) - 1))
        if k >= len(d) - 1 or abs(z - d[k]) < 1e-6:
            value = get(k)
        else:
            w = (z - d[k]) / (d[k + 1] - d[k])
            value = (1 - w) * get(k) + w * get(k + 1)
        out[i] = np.rint(value) if is_int else value
    return out, dz, (ox, oy)
