"""Acceptance 1: landmarks (single bright voxels at known physical points) stay within half an
output voxel through resample, reorient and crop/pad — on axis-aligned and oblique grids."""

from __future__ import annotations

import numpy as np
import pytest

from MedPrepLib.geometry import Geometry, direction_from_code
from MedPrepLib.recipe import Recipe, run_recipe
from MedPrepLib.volume import Volume

BRIGHT = 1000.0
BODY = 1.0
LANDMARKS = [(12, 10, 4), (30, 28, 9), (20, 40, 14), (41, 15, 6), (8, 36, 11)]  # voxel index (x, y, z)


def oblique() -> np.ndarray:
    a, b = np.deg2rad(25.0), np.deg2rad(-12.0)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    return ry @ rz @ direction_from_code("LAI")


DIRECTIONS = {"axis-aligned": np.eye(3), "flipped": direction_from_code("RAI"), "oblique": oblique()}


def landmark_image(direction) -> tuple[Volume, np.ndarray]:
    """A 50 x 48 x 18 grid of 0.7 x 0.8 x 2.5 mm: a faint box "body" holding bright single voxels."""
    geometry = Geometry((50, 48, 18), (0.7, 0.8, 2.5), origin=(-12.0, 30.0, -50.0), direction=direction)
    a = np.zeros(geometry.shape, np.float32)
    a[2:16, 5:45, 4:46] = BODY
    for i, j, k in LANDMARKS:
        a[k, j, i] = BRIGHT
    points = geometry.index_to_physical(np.array(LANDMARKS, float))
    return Volume(a, geometry), points


def assert_landmarks_kept(out: Volume, points: np.ndarray, radius_mm: float = 5.0, tolerance=0.5) -> None:
    """Each landmark's peak is within ``tolerance`` (default half an output voxel, per axis) of its
    physical point, and no bright copy of it sits anywhere else."""
    g = out.geometry
    k, j, i = np.indices(g.shape)
    idx = np.stack([i, j, k], axis=-1).astype(float)
    pts = g.index_to_physical(idx)
    near_any = np.zeros(g.shape, bool)
    peaks = []
    for p in points:
        expected = g.physical_to_index(p)
        near = np.linalg.norm(pts - p, axis=-1) <= radius_mm
        assert near.any(), f"landmark {p} fell outside the output grid"
        near_any |= near
        values = np.where(near, out.array, -np.inf)
        peak = np.array(np.unravel_index(np.argmax(values), g.shape)[::-1], float)
        peaks.append(out.array[tuple(peak.astype(int)[::-1])])
        assert np.all(np.abs(peak - expected) <= np.asarray(tolerance) + 1e-6), (p, expected, peak)
    elsewhere = out.array[~near_any].max()
    assert elsewhere < 0.5 * min(peaks), "a landmark left a bright copy away from its place"


def run(steps, image, seed=0) -> Volume:
    return run_recipe(Recipe.from_dict({"version": 1, "steps": steps}), image, seed=seed).image


@pytest.mark.parametrize("direction", DIRECTIONS.values(), ids=DIRECTIONS.keys())
@pytest.mark.parametrize(
    "params",
    [
        {"spacing": [1.0, 1.0, 1.0]},
        {"spacing": [0.5, 0.6, 1.25], "interpolation": "bspline"},
        {"spacing": [1.3, 0.9, 1.25], "interpolation": "bspline", "anisotropic_axis_interpolation": "nearest"},
        {"spacing": [0.35, 0.4, 1.25], "interpolation": "nearest"},
        {"shape": [37, 51, 40]},
    ],
    ids=["linear-1mm", "bspline-up", "bspline-aniso-nearest", "nearest-up", "shape"],
)
def test_landmarks_through_resample(direction, params):
    image, points = landmark_image(direction)
    out = run([{"op": "resample", **params}], image)
    assert_landmarks_kept(out, points)


@pytest.mark.parametrize("direction", DIRECTIONS.values(), ids=DIRECTIONS.keys())
def test_nearest_neighbour_along_a_coarse_axis_keeps_landmarks_within_half_an_input_voxel(direction):
    # Nearest neighbour copies a 2.5 mm input slice onto the 2 mm output slice nearest to it: the
    # bound is half the coarser voxel (1.25 mm = 0.625 output voxel), not half an output voxel.
    image, points = landmark_image(direction)
    steps = [{"op": "resample", "spacing": [1.3, 0.9, 2.0], "interpolation": "bspline",
              "anisotropic_axis_interpolation": "nearest"}]
    assert_landmarks_kept(run(steps, image), points, tolerance=(0.5, 0.5, 1.25 / 2.0))


@pytest.mark.parametrize("direction", DIRECTIONS.values(), ids=DIRECTIONS.keys())
@pytest.mark.parametrize("code", ["RAS", "LPS", "SAL", "PRI"])
def test_landmarks_through_reorient(direction, code):
    image, points = landmark_image(direction)
    out = run([{"op": "reorient", "to": code}], image)
    assert out.geometry.orientation == code
    assert_landmarks_kept(out, points)


@pytest.mark.parametrize("direction", DIRECTIONS.values(), ids=DIRECTIONS.keys())
@pytest.mark.parametrize(
    "steps",
    [
        [{"op": "crop_nonzero", "margin_mm": 3}],
        [{"op": "crop_body", "threshold_hu": 0.5, "margin_mm": 0}],
        [{"op": "pad_crop", "shape": [64, 40, 30]}],
        [{"op": "pad_crop", "shape": [44, 44, 16], "mode": "random"}],
    ],
    ids=["nonzero", "body", "pad-centre", "crop-random"],
)
def test_landmarks_through_crop_and_pad(direction, steps):
    image, points = landmark_image(direction)
    assert_landmarks_kept(run(steps, image, seed=11), points)


@pytest.mark.parametrize("direction", DIRECTIONS.values(), ids=DIRECTIONS.keys())
def test_landmarks_through_a_whole_recipe(direction):
    image, points = landmark_image(direction)
    steps = [
        {"op": "resample", "spacing": [1.0, 1.0, 1.0], "interpolation": "bspline"},
        {"op": "reorient", "to": "RAS"},
        {"op": "crop_body", "threshold_hu": 0.5, "margin_mm": 2},
        {"op": "pad_crop", "shape": [40, 40, 48]},
    ]
    out = run(steps, image)
    assert out.spacing == (1.0, 1.0, 1.0) and out.geometry.orientation == "RAS"
    assert_landmarks_kept(out, points)
