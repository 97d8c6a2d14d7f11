"""Stacks whose slice step changes part-way (spacing regimes), with and without tilt and gaps.

Some CT series are reconstructed in two or more spacing regimes (a run of 5 mm steps, then a
run of 2.5 mm steps, often with one odd step where they meet). A gap is measured against the
step usual on both sides of it, a junction between regimes is no gap, and resampling puts the
stack on the finest regime's step, hitting the acquired slices of that regime exactly.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("pydicom")

from dicom_factory import write_stack  # noqa: E402

from MedPrepLib.dicom.regularize import MAX_GAP_STEPS  # noqa: E402
from MedPrepLib.errors import GeometryError  # noqa: E402
from MedPrepLib.sources import load_files, load_path  # noqa: E402

pytestmark = pytest.mark.pydicom_dependent

ROWS, COLS = 12, 14
PIXEL_SPACING = (0.7, 0.8)  # (row spacing, column spacing) mm
ORIGIN = np.array([-11.0, -11.0, 0.0])


def _distances(*runs: tuple[int, float], joins: tuple[float | None, ...] = ()) -> list[float]:
    """Table positions (mm): ``runs`` of (slices, step), joined by ``joins[i]`` mm (None: the next
    run's step follows directly from the last slice of the run before)."""
    out: list[float] = []
    for i, (n, step) in enumerate(runs):
        if not out:
            out = [0.0]
            n -= 1
        else:
            join = joins[i - 1] if i - 1 < len(joins) and joins[i - 1] is not None else step
            out.append(out[-1] + join)
            n -= 1
        out += [out[-1] + step * (k + 1) for k in range(n)]
    return out


def _write(folder, table, *, tilt_deg: float = 0.0, drop=()) -> list[tuple[np.ndarray, np.ndarray]]:
    """One file per table position (names shuffled, InstanceNumber reversed); slices whose index
    is in ``drop`` are not written. Returns [(position, stored)] of the written slices.

    With a tilt the column direction leans and the positions still step along z (a sheared
    stack, as scanners write tilted CT): steps along the slice normal are ``step * cos(tilt)``.
    """
    t = math.radians(tilt_deg)
    orientation = (1.0, 0.0, 0.0, 0.0, math.cos(t), -math.sin(t))
    positions = [ORIGIN + np.array([0.0, 0.0, z]) for z in table]
    return write_stack(
        folder, positions, rows=ROWS, cols=COLS, skip=drop, orientation=orientation, pixel_spacing=PIXEL_SPACING
    )


def _hit_slices(volume, truth, *, tilt_deg: float = 0.0) -> list[int]:
    """Indices (into ``truth``) of the acquired slices the resampled grid hits; each of them
    holds its acquired values (HU = stored - 1024) at every interior pixel centre: exactly
    when untilted, within rounding of the in-plane shift when tilted (the values are linear in
    the pixel index, so linear interpolation is exact up to rounding)."""
    from scipy import ndimage

    g = volume.geometry
    t = math.radians(tilt_deg)
    row, col = np.array([1.0, 0.0, 0.0]), np.array([0.0, math.cos(t), -math.sin(t)])  # as acquired
    j, i = np.mgrid[1 : ROWS - 1, 1 : COLS - 1]
    data = volume.array.astype(np.float64)
    hits = []
    for n, (position, stored) in enumerate(truth):
        points = position + np.multiply.outer(i * PIXEL_SPACING[1], row) + np.multiply.outer(j * PIXEL_SPACING[0], col)
        idx = np.array([g.physical_to_index(p) for p in points.reshape(-1, 3)])
        k = idx[:, 2]
        if np.abs(k - np.round(k)).max() > 1e-6 or not 0 <= round(k[0]) < g.size[2]:
            continue
        hits.append(n)
        expected = (stored[1:-1, 1:-1] - 1024).ravel()
        if tilt_deg == 0.0:
            assert np.abs(idx - np.round(idx)).max() < 1e-6
            z, y, x = (np.round(idx[:, a]).astype(int) for a in (2, 1, 0))
            np.testing.assert_array_equal(data[z, y, x], expected)
        else:
            got = ndimage.map_coordinates(data, [idx[:, 2], idx[:, 1], idx[:, 0]], order=1, mode="nearest")
            np.testing.assert_allclose(got, expected, atol=0.51)
    return hits


def _assert_interpolated_along_z(volume, truth):
    """Untilted stacks: every resampled slice is the linear interpolation, along z, of the two
    acquired slices around it (rounded to the integer type), and lies within the acquired range."""
    z_acquired = np.array([p[2] for p, _ in truth])
    hu = np.array([stored - 1024 for _, stored in truth], dtype=np.float64)
    z_grid = volume.origin[2] + np.arange(volume.shape[0]) * volume.spacing[2]
    assert z_grid[0] >= z_acquired[0] - 1e-6 and z_grid[-1] <= z_acquired[-1] + 1e-6  # nothing invented
    for n, z in enumerate(z_grid):
        k = int(np.clip(np.searchsorted(z_acquired, z + 1e-6) - 1, 0, len(z_acquired) - 2))
        w = (z - z_acquired[k]) / (z_acquired[k + 1] - z_acquired[k])
        expected = (1 - w) * hu[k] + w * hu[k + 1]
        assert np.abs(volume.array[n].astype(np.float64) - expected).max() <= 0.5 + 1e-6, f"grid slice {n}"


# --------------------------------------------------------------------------- two regimes
def test_two_regimes_with_a_tiny_junction_are_resampled_on_the_finest_step(tmp_path):
    # 8 slices every 5 mm, a 1 mm step, then 12 every 2.5 mm: measured against the smallest
    # step (1 mm) every 5 mm step looked like a gap of five slices and the stack was refused
    table = _distances((8, 5.0), (12, 2.5), joins=(1.0,))
    truth = _write(tmp_path, table)
    volume = load_path(tmp_path)
    assert volume.metadata["regularized"]
    assert volume.spacing[2] == pytest.approx(2.5)  # the finest regime, never the 1 mm junction
    # the grid keeps the 2.5 mm slices where they are: it starts where it hits the first slice
    # at or after the first acquired one (1 mm past it: 36 mm is not a multiple of 2.5 mm)
    fine_start = table[8]
    z0 = fine_start - math.floor(fine_start / 2.5) * 2.5
    assert volume.origin == pytest.approx(tuple(ORIGIN + [0, 0, z0]), abs=1e-6)
    assert volume.shape[0] == int(math.floor((table[-1] - z0) / 2.5 + 1e-6)) + 1
    assert _hit_slices(volume, truth) == list(range(8, 20))  # finest regime: copied
    _assert_interpolated_along_z(volume, truth)  # coarser regime: interpolated, nothing invented
    warning = " ".join(volume.metadata["warnings"])
    assert "two spacing regimes: 8 slices every 5.000 mm, then 12 every 2.500 mm" in warning
    assert "1.000 mm between slice 8 of 20" in warning and "usual step" not in warning
    assert "20 slices" not in warning and f"{volume.shape[0]} slices every 2.500 mm" in warning
    with pytest.raises(GeometryError) as exc:
        load_path(tmp_path, geometry_policy="reject")
    message = str(exc.value)
    assert "two spacing regimes: 8 slices every 5.000 mm, then 12 every 2.500 mm" in message
    assert "gap" not in message and "usual step" not in message


def test_two_regimes_meeting_with_an_odd_step_hit_the_fine_slices(tmp_path):
    table = _distances((8, 5.0), (12, 2.5), joins=(3.75,))
    truth = _write(tmp_path, table)
    volume = load_path(tmp_path)
    assert volume.spacing[2] == pytest.approx(2.5)
    assert volume.origin[2] == pytest.approx(1.25)  # 38.75 - 15 * 2.5: on the fine slices
    assert volume.shape[0] == 27  # 1.25 .. 66.25 mm: nothing beyond the acquired range
    assert _hit_slices(volume, truth) == list(range(8, 20))
    _assert_interpolated_along_z(volume, truth)
    assert "one odd step where they meet: 3.750 mm" in " ".join(volume.metadata["warnings"])


def test_two_regimes_without_junction_and_tilted(tmp_path):
    tilt = 15.0
    table = _distances((6, 5.0), (9, 2.5))
    truth = _write(tmp_path, table, tilt_deg=tilt)
    raw = load_files(sorted(tmp_path.iterdir()), regularize=False)
    assert raw.shape[0] == 15 and not raw.metadata["regularized"]
    volume = load_path(tmp_path)
    cos = math.cos(math.radians(tilt))
    assert volume.spacing[2] == pytest.approx(2.5 * cos)
    np.testing.assert_allclose(volume.geometry.direction.T @ volume.geometry.direction, np.eye(3), atol=1e-9)
    # the direct change keeps both regimes on one grid (5 mm = two fine steps): 25 + 9 * 2.5 mm
    assert volume.shape[0] == 20
    assert _hit_slices(volume, truth, tilt_deg=tilt) == list(range(15))
    warning = " ".join(volume.metadata["warnings"])
    assert "15.00 degrees" in warning and f"per {2.5 * cos:.3f} mm slice step" in warning
    assert f"two spacing regimes: 6 slices every {5 * cos:.3f} mm, then 9 every {2.5 * cos:.3f} mm" in warning
    with pytest.raises(GeometryError, match=r"15\.00 degrees.*two spacing regimes"):
        load_path(tmp_path, geometry_policy="reject")


# --------------------------------------------------------------------------- three regimes
@pytest.mark.parametrize("tilt", [0.0, 12.0])
def test_three_regimes(tmp_path, tilt):
    table = _distances((5, 5.0), (6, 2.5), (5, 1.25), joins=(3.75, 1.0))
    truth = _write(tmp_path, table, tilt_deg=tilt)
    volume = load_path(tmp_path)
    cos = math.cos(math.radians(tilt))
    assert volume.spacing[2] == pytest.approx(1.25 * cos)  # the finest regime; not the 1 mm junction
    # the phase hit by most slices wins: the 5 mm and 2.5 mm slices lie on one 1.25 mm grid
    assert _hit_slices(volume, truth, tilt_deg=tilt) == list(range(11))
    if tilt == 0.0:
        _assert_interpolated_along_z(volume, truth)
    warning = " ".join(volume.metadata["warnings"])
    regimes = (
        f"three spacing regimes: 5 slices every {5 * cos:.3f} mm, then 6 every {2.5 * cos:.3f} mm, "
        f"then 5 every {1.25 * cos:.3f} mm"
    )
    assert regimes in warning and "two odd steps where they meet" in warning
    with pytest.raises(GeometryError) as exc:
        load_path(tmp_path, geometry_policy="reject")
    assert regimes in str(exc.value)


# --------------------------------------------------------------------------- real gaps inside a regime
@pytest.mark.parametrize("tilt", [0.0, 10.0])
def test_missing_slice_inside_the_fine_regime_is_a_gap_of_that_regime(tmp_path, tilt):
    table = _distances((8, 5.0), (12, 2.5), joins=(3.75,))
    truth = _write(tmp_path, table, tilt_deg=tilt, drop=(13,))  # one 2.5 mm slice missing
    volume = load_path(tmp_path)
    cos = math.cos(math.radians(tilt))
    assert volume.spacing[2] == pytest.approx(2.5 * cos)
    assert _hit_slices(volume, truth, tilt_deg=tilt) == list(range(8, 19))  # the fine regime, less one
    if tilt == 0.0:
        _assert_interpolated_along_z(volume, truth)
    warning = " ".join(volume.metadata["warnings"])
    assert "two spacing regimes: 8 slices every" in warning and "then 11 every" in warning
    assert f"missing slices: a gap of {5 * cos:.3f} mm between slice 13 of 19" in warning
    assert f"(2.0 steps of {2.5 * cos:.3f} mm)" in warning


def test_a_gap_is_measured_against_its_own_regime(tmp_path):
    # 15 mm without slices: three 5 mm steps in the coarse regime (bridged), but six 2.5 mm
    # steps in the fine regime (more than MAX_GAP_STEPS: refused)
    assert 15.0 / 5.0 <= MAX_GAP_STEPS < 15.0 / 2.5
    coarse = tmp_path / "coarse"
    table = _distances((10, 5.0), (12, 2.5), joins=(3.75,))
    _write(coarse, table, drop=(3, 4))
    volume = load_path(coarse)
    assert volume.spacing[2] == pytest.approx(2.5)
    assert "missing slices: a gap of 15.000 mm between slice 3 of 20" in " ".join(volume.metadata["warnings"])
    assert "(3.0 steps of 5.000 mm)" in " ".join(volume.metadata["warnings"])
    fine = tmp_path / "fine"
    table = _distances((8, 5.0), (16, 2.5), joins=(3.75,))
    _write(fine, table, drop=(12, 13, 14, 15, 16))
    with pytest.raises(GeometryError) as exc:
        load_path(fine)
    message = str(exc.value)
    assert "gap of 15.000 mm" in message and "(6.0 steps of 2.500 mm)" in message
    assert "the widest gap spans 6.0 slice steps" in message and "separate ranges" in message


def test_single_regime_gap_keeps_its_classic_grid(tmp_path):
    # one regime with a missing slice: first and last slice kept, the gap restored on the step
    table = _distances((9, 2.5))
    truth = _write(tmp_path, table, drop=(4,))
    volume = load_path(tmp_path)
    assert volume.shape[0] == 9 and volume.spacing[2] == pytest.approx(2.5)
    assert volume.origin == pytest.approx(tuple(ORIGIN))
    assert _hit_slices(volume, truth) == list(range(8))
    _assert_interpolated_along_z(volume, truth)
    assert "where the usual step is 2.500 mm" in " ".join(volume.metadata["warnings"])


def test_scan_describes_the_regimes_as_the_loader_does(tmp_path):
    """The header-only scan warns about spacing in the loader's own words (regimes, not a
    'median step' that belongs to neither run)."""
    from MedPrepLib.dicom.scan import scan, stack_summary

    _write(tmp_path, _distances((6, 5.0), (8, 2.5), joins=(3.75,)))
    (warning,) = [w for w in stack_summary(scan(tmp_path, cache=False).stacks[0])["warnings"] if "spacing" in w]
    assert "two spacing regimes" in warning and "every 5.000 mm" in warning and "every 2.500 mm" in warning
    assert "median" not in warning
