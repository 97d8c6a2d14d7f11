"""Small synthetic volumes on an oblique, anisotropic grid, for the self-test and batch smoke test.

Built from numbers alone (no download, no patient data). The grid is deliberately awkward:
rotated about all three axes, different spacing along each axis and an origin away from 0, so
that any mix-up of LPS/RAS, (x, y, z)/(z, y, x) or rows/columns of the direction shows.
"""

from __future__ import annotations

import numpy as np

from MedPrepLib.geometry import Geometry
from MedPrepLib.volume import Volume


def rotationMatrix(degreesX: float, degreesY: float, degreesZ: float) -> np.ndarray:
    """Rotation about x, then y, then z (angles in degrees); an orthonormal 3x3 matrix."""
    ax, ay, az = np.radians([degreesX, degreesY, degreesZ])
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


def obliqueGeometry(size=(7, 6, 5)) -> Geometry:
    """An oblique grid: (x, y, z) ``size`` voxels, spacing 0.7 x 0.9 x 2.5 mm, origin in LPS mm."""
    return Geometry(
        size=size,
        spacing=(0.7, 0.9, 2.5),
        origin=(-120.25, 33.5, -410.75),
        direction=rotationMatrix(12.0, -7.5, 21.0),
    )


def obliqueVolume(dtype=np.int16, size=(7, 6, 5)) -> Volume:
    """A volume over :func:`obliqueGeometry` whose voxel value encodes its own index.

    Voxel (i, j, k) holds ``i + 10 j + 100 k`` (minus 300 for signed types, so there are
    negative values too), which makes any axis swap or flip visible. The array is (z, y, x).
    """
    geometry = obliqueGeometry(size)
    k, j, i = np.indices(geometry.shape)
    values = i + 10 * j + 100 * k
    if np.dtype(dtype).kind in "if":
        values = values - 300
    if np.dtype(dtype).kind in "iu" and not np.iinfo(dtype).min <= values.min() <= values.max() <= np.iinfo(dtype).max:
        raise ValueError(f"{np.dtype(dtype)} cannot hold the values {values.min()}..{values.max()} of this volume")
    return Volume(values.astype(dtype), geometry)


def obliqueLabelMap(size=(7, 6, 5)) -> Volume:
    """A label map (uint8, labels 0..3) on :func:`obliqueGeometry`: three boxes in a background."""
    geometry = obliqueGeometry(size)
    labels = np.zeros(geometry.shape, np.uint8)
    labels[1:3, 1:4, 1:3] = 1
    labels[3:, :2, 4:] = 2
    labels[0, -1, -1] = 3
    return Volume(labels, geometry)
