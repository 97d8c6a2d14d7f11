"""Slice-stack geometry: measuring gantry tilt and uneven spacing, and regularizing them.

A stack of parallel slices is described by its slice positions ``P_k`` (ImagePositionPatient,
LPS mm, sorted along the slice normal ``n``). Written relative to the first slice,
``P_k - P_0 = d_k * n + l_k``: ``d_k`` is the distance along the normal and ``l_k`` the
sideways (in-plane) drift. A regular stack has equal steps in ``d`` and no drift; a gantry
tilt shows as a drift growing linearly with ``d`` (derived from positions against the
orientation, never from the GantryDetectorTilt tag); missing slices or uneven spacing show as
unequal steps in ``d``.

The steps in ``d`` are read as *spacing regimes* (:func:`spacing_model`): runs of equal step,
such as a CT reconstructed every 5 mm and then every 2.5 mm. A step longer than the usual
step on both sides is a gap (missing slices, measured in that local step); any other odd
step is a junction where regimes meet.

Regularization resamples onto an orthogonal, equidistant grid in physical space: each slice
is shifted in-plane by its drift (linear interpolation), then slices are interpolated
linearly along the normal onto equal steps: the finest regime's step, placed to hit acquired
slices and never reaching beyond the first or last one. Voxels with no data take the ``air``
value.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property

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

    @cached_property
    def spacing(self) -> SpacingModel:
        """The steps along the normal as regimes, gaps and junctions (see :func:`spacing_model`)."""
        return spacing_model(self.distances)


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


# ----------------------------------------------------------------------------- spacing regimes
MIN_REGIME_STEPS = 2
"""Fewest consecutive equal steps (three slices) that make a spacing regime; a shorter run is
an odd step: a gap (missing slices) or a junction where two regimes meet."""


def same_step(a: float, b: float) -> bool:
    """Whether two slice steps (mm) are the same step up to IPP rounding jitter."""
    return abs(a - b) <= max(2 * TOL_MM, 2 * STEP_TOL_FRACTION * max(abs(a), abs(b)))


@dataclass(frozen=True)
class Regime:
    """Slices ``first`` .. ``last`` (0-based, sorted) stepping ``step`` mm along the normal.

    Gaps and odd steps may lie inside (a regime continues across them when the steps on both
    sides are equal). ``n_slices`` counts the slices it contributes to the stack: a slice shared
    with the regime before it is counted there.
    """

    first: int
    last: int
    step: float
    n_slices: int


@dataclass(frozen=True)
class OddStep:
    """The step from sorted slice ``after`` to ``after + 1``, of ``length`` mm, that belongs to
    no regime. ``local_step`` (mm) is the usual step around it: the coarser of the regimes on
    either side, so that a gap counts in the steps the data there was acquired at."""

    after: int
    length: float
    local_step: float

    @property
    def in_steps(self) -> float:
        return self.length / self.local_step if self.local_step > 0 else math.inf


@dataclass(frozen=True)
class SpacingModel:
    """The steps of a sorted stack as regimes of equal step, gaps and junctions.

    A *gap* is a step longer than the usual step on both sides by more than the jitter
    tolerance (missing slices); any other odd step is a *junction* (where a 5 mm run meets a
    2.5 mm run, a 3.75 mm step often joins them). A junction never sets the resampling grid.
    """

    regimes: tuple[Regime, ...]
    gaps: tuple[OddStep, ...]
    junctions: tuple[OddStep, ...]
    n_slices: int

    @property
    def finest(self) -> float:
        """The smallest regime step (mm): the step of the resampling grid."""
        return min((r.step for r in self.regimes), default=0.0)

    @property
    def simple(self) -> bool:
        """One regime, odd steps only as gaps: the classic stack with missing slices."""
        return len(self.regimes) <= 1 and not self.junctions

    def describe(self, labels: Sequence[str] = ()) -> str:
        """The spacing in words and slice terms (``labels[k]`` names sorted slice k)."""

        def between(k: int) -> str:
            return f"between {_name(labels, k)} and {_name(labels, k + 1)}"

        if self.simple:
            return self._describe_simple(labels)
        if len(self.regimes) == 1:
            text = f"slices every {self.regimes[0].step:.3f} mm"
        else:
            runs = [
                f"{r.n_slices} {'slices ' if i == 0 else ''}every {r.step:.3f} mm" for i, r in enumerate(self.regimes)
            ]
            text = f"{_count_word(len(self.regimes))} spacing regimes: " + ", then ".join(runs)
        if self.junctions:
            where = "where they meet" if len(self.regimes) > 1 else "off the grid"
            odd = [f"{j.length:.3f} mm {between(j.after)}" for j in self.junctions[:3]]
            more = f" and {len(self.junctions) - 3} more" if len(self.junctions) > 3 else ""
            text += f" ({_count_word(len(self.junctions))} odd step{'s' if len(self.junctions) > 1 else ''} {where}: {', '.join(odd)}{more})"
        if self.gaps:
            widest = max(self.gaps, key=lambda s: s.in_steps)
            count = f"{_count_word(len(self.gaps))} gaps, the widest" if len(self.gaps) > 1 else "a gap of"
            text += (
                f"; missing slices: {count} {widest.length:.3f} mm {between(widest.after)} "
                f"({widest.in_steps:.1f} steps of {widest.local_step:.3f} mm)"
            )
        return text

    def _describe_simple(self, labels: Sequence[str]) -> str:
        steps = self._steps
        usual = self.finest
        if self.gaps:
            worst = max(self.gaps, key=lambda s: s.in_steps).after
        else:
            worst = int(np.argmax(np.abs(steps - usual)))
        return (
            f"{steps[worst]:.3f} mm between {_name(labels, worst)} and {_name(labels, worst + 1)} "
            f"where the usual step is {usual:.3f} mm (steps range {steps.min():.3f} to {steps.max():.3f} mm)"
        )

    _steps: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False, compare=False)


def spacing_model(distances: np.ndarray) -> SpacingModel:
    """Segment the steps between sorted slice distances (mm along the normal) into regimes.

    Runs of at least ``MIN_REGIME_STEPS`` equal steps are regimes, and so are shorter runs
    with the step of the regime beside them; runs of equal step separated only by odd steps are
    one regime (with gaps or odd steps inside). When no run is that long,
    the smallest step stands for the usual one. Each remaining step is a gap when it is longer
    than the regime step on both sides (by more than the tolerance), else a junction.
    """
    d = np.asarray(distances, dtype=np.float64)
    steps = np.diff(d)
    if len(steps) == 0:
        return SpacingModel((), (), (), len(d), steps)
    runs: list[tuple[int, int]] = []  # [a, b): steps a .. b-1, i.e. slices a .. b
    i = 0
    while i < len(steps):
        j = i + 1
        while j < len(steps) and same_step(steps[j], float(steps[i:j].mean())):
            j += 1
        runs.append((i, j))
        i = j
    long = [r for r in runs if r[1] - r[0] >= MIN_REGIME_STEPS]
    if not long:
        k = int(np.argmin(steps))
        long = [(k, k + 1)]
    # a short run with the step of the regime next to it belongs to it (a gap lies between them)
    members = list(long)
    for a, b in runs:
        if (a, b) in long:
            continue
        beside = [r for r in long if r[1] <= a][-1:] + [r for r in long if r[0] >= b][:1]
        if any(same_step(float(steps[a:b].mean()), float(steps[x:y].mean())) for x, y in beside):
            members.append((a, b))
    # runs of one step joined across the odd steps between them: [(first slice, last slice, [runs])]
    merged: list[list] = []
    for a, b in sorted(members):
        step = float(steps[a:b].mean())
        if merged and same_step(merged[-1][2], step):
            merged[-1][1] = b
            merged[-1][3].append((a, b))
            member = np.concatenate([steps[x:y] for x, y in merged[-1][3]])
            merged[-1][2] = float(member.mean())
        else:
            merged.append([a, b, step, [(a, b)]])
    in_regime = np.zeros(len(steps), dtype=bool)
    for *_, runs_of_regime in merged:
        for a, b in runs_of_regime:
            in_regime[a:b] = True
    gaps, junctions = [], []
    for s in np.flatnonzero(~in_regime):
        inside = [m[2] for m in merged if m[0] <= s < m[1]]  # an odd step within one regime
        around = inside or [m[2] for m in merged if m[1] <= s][-1:] + [m[2] for m in merged if m[0] > s][:1]
        local = max(around)
        length = float(steps[s])
        if length > local and not same_step(length, local):
            gaps.append(OddStep(int(s), length, local))
        else:
            junctions.append(OddStep(int(s), length, local))
    # Every slice counted once, so that the counts of a description add up to the stack: a
    # slice shared by two regimes goes to the first, slices reached across a junction to the next.
    regimes, start = [], 0
    for n, (a, b, step, _) in enumerate(merged):
        end = b if n < len(merged) - 1 else len(d) - 1
        regimes.append(Regime(a, b, step, end - start + 1))
        start = end + 1
    return SpacingModel(tuple(regimes), tuple(gaps), tuple(junctions), len(d), steps)


def _count_word(n: int) -> str:
    return {1: "one", 2: "two", 3: "three", 4: "four", 5: "five"}.get(n, str(n))


def describe_problem(g: StackGeometry, labels: Sequence[str] = ()) -> str:
    """One sentence naming the tilt angle and the spacing problem (gaps, regimes), in slice terms.

    ``labels[k]`` names sorted slice k (``"slice 17 of 54 (instance 18)"``); never a file name:
    the sentence ends up in written provenance.
    """
    parts = []
    model = g.spacing
    if g.tilted:
        # per usual step: with a missing slice the mean step is not a step of the stack
        typical = model.finest if g.uneven else g.step
        per_step = float(np.linalg.norm(g.drift_per_step)) / g.step * typical if g.step else 0.0
        parts.append(
            f"gantry tilt of {g.tilt_deg:.2f} degrees (slice positions drift "
            f"{per_step:.3f} mm sideways per {typical:.3f} mm slice step, "
            f"{np.abs(g.drifts).max():.2f} mm in total from {_name(labels, 0)} to {_name(labels, -1)})"
        )
    if g.uneven:
        parts.append("uneven slice spacing: " + model.describe(labels))
    if g.irregular_drift and not g.tilted:
        parts.append(f"slices drift sideways irregularly (up to {g.max_drift_error:.3f} mm)")
    return "; ".join(parts)


def _name(labels: Sequence[str], k: int) -> str:
    if labels:
        return labels[k]
    return "the last slice" if k == -1 else f"slice {k + 1}"


MAX_GAP_STEPS = 4.0
"""Widest gap (in the local regime's slice steps) that ``resample`` bridges by interpolation:
up to three consecutive missing slices. A wider gap means separate ranges (two acquisitions,
a scout series sharing the UID...): interpolating across it would invent anatomy, so it is
refused."""


def gap_in_steps(g: StackGeometry) -> float:
    """The widest gap in steps of the regime around it (1.0 when there is none)."""
    if not g.uneven:
        return 1.0
    return max((s.in_steps for s in g.spacing.gaps), default=1.0)


def target_step(g: StackGeometry) -> float:
    """Slice step (mm) of the regular grid: the finest regime's step (never a junction's)."""
    if len(g.distances) < 2:
        return 0.0
    if not g.uneven:
        return g.step
    return g.spacing.finest


def resample_grid(g: StackGeometry) -> tuple[float, float, np.ndarray]:
    """The regular grid along the normal: (first position, step, sample positions), mm from slice 0.

    An even stack, or one regime with missing slices, keeps its first and last slice and the
    step that spans them in whole steps (the classic case). Several regimes, or odd junction
    steps, get the finest regime's step, placed to hit as many acquired slices as possible and
    kept within the first and last slice (nothing is extrapolated). Sample positions equal the
    acquired distances where the grid hits a slice (within the jitter tolerance), so that those
    slices are copied, not interpolated.
    """
    d = g.distances
    if len(d) < 2:
        return 0.0, 0.0, np.zeros(1)
    dz = target_step(g)
    if not g.uneven or g.spacing.simple:
        n = int(round(d[-1] / dz)) + 1 if dz > 0 else 1
        if n > 1:
            dz = float(d[-1] / (n - 1))
        return 0.0, dz, np.arange(n) * dz
    tol = max(TOL_MM, STEP_TOL_FRACTION * dz)
    # phase of each slice on a grid of step dz; the phase hit by most slices wins (ties: the
    # first slice of the finest regime, so its slices are all kept)
    finest = min(g.spacing.regimes, key=lambda r: (r.step, r.first))
    phase = np.mod(d - d[finest.first], dz)
    diff = np.abs(phase[:, None] - phase[None, :])
    diff = np.minimum(diff, dz - diff)
    hits = (diff <= tol).sum(axis=1)
    best = int(np.argmax(np.where(np.arange(len(d)) == finest.first, hits + 0.5, hits)))
    anchor = float(d[best])
    z0 = anchor - math.floor((anchor - d[0]) / dz + tol / dz) * dz
    n = int(math.floor((d[-1] - z0) / dz + tol / dz)) + 1
    z = z0 + np.arange(n) * dz
    nearest = np.clip(np.searchsorted(d, z), 1, len(d) - 1)
    nearest = np.where(np.abs(d[nearest - 1] - z) <= np.abs(d[nearest] - z), nearest - 1, nearest)
    samples = np.where(np.abs(d[nearest] - z) <= tol, d[nearest], z)
    return float(z0), float(dz), samples


def regularize(
    array: np.ndarray,
    g: StackGeometry,
    row_dir: np.ndarray,
    col_dir: np.ndarray,
    spacing_xy: tuple[float, float],
    air: float,
) -> tuple[np.ndarray, float, float, tuple[int, int]]:
    """Resample a (z, y, x[, t]) stack onto an orthogonal, equidistant grid aligned with its first slice.

    ``spacing_xy`` is (column spacing, row spacing) in mm. The in-plane field of view grows so
    that no acquired voxel is lost (the sideways drift of a tilt widens it). Returns the new
    array (same dtype, rounded when integer), its slice step in mm, the distance ``z0`` (mm
    along the normal from the first acquired slice) of its first slice (see
    :func:`resample_grid`), and the (x, y) index of the first slice's first pixel in the new
    grid's *negative* offset: the new origin is
    ``P_0 + z0 * normal + offset_x * col_spacing * row_dir + offset_y * row_spacing * col_dir``
    (offsets <= 0).
    """
    from scipy import ndimage

    shifts_x = g.drifts @ row_dir / spacing_xy[0]
    shifts_y = g.drifts @ col_dir / spacing_xy[1]
    ox, oy = int(math.floor(shifts_x.min() + 1e-6)), int(math.floor(shifts_y.min() + 1e-6))
    ex, ey = int(math.ceil(shifts_x.max() - 1e-6)), int(math.ceil(shifts_y.max() - 1e-6))
    ny, nx = array.shape[1], array.shape[2]
    out_ny, out_nx = ny + ey - oy, nx + ex - ox
    z0, dz, z_out = resample_grid(g)
    n_out = len(z_out)
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
    return out, dz, z0, (ox, oy)
