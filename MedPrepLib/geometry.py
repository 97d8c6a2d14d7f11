"""Image grid geometry in patient space (LPS), with the conventions of DICOM and SimpleITK.

A :class:`Geometry` describes where the voxels of a 3D grid sit in physical space:

* ``size`` — number of voxels along each index axis, in **(x, y, z)** order (``GetSize()``);
* ``spacing`` — distance between voxel centres along each index axis, in **mm**, (x, y, z);
* ``origin`` — physical position of the centre of voxel (0, 0, 0), in **mm, LPS**;
* ``direction`` — a 3x3 matrix whose *columns* are the unit vectors of the index axes
  i, j, k in LPS (``GetDirection()`` read row-major, exactly SimpleITK's meaning).

The index of a voxel ``(i, j, k)`` is in (x, y, z) order; the numpy array that holds the
voxels is indexed ``array[k, j, i]`` — (z, y, x). A physical point is::

    p_LPS = origin + direction @ (spacing * (i, j, k))

Slicer works in RAS: ``RAS = diag(-1, -1, 1) @ LPS``. ``ijk_to_ras()`` is Slicer's IJKToRAS
matrix for the same grid, IJK being the same (x, y, z) index.

Orientation codes (``"LPS"``, ``"RAS"``, ``"PIL"`` ...) name, for each index axis i, j, k,
the anatomical direction that axis points *to*; an identity direction is ``"LPS"`` (as in
SimpleITK's ``DICOMOrientImageFilter``), nibabel's RAS+ canonical image is ``"RAS"``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from .errors import ArgumentError, InvalidImageError

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0])
"""Change of frame between LPS and RAS (its own inverse): the one LPS <-> RAS conversion.

Everything that changes frame uses it: :meth:`Geometry.affine_ras` / :meth:`Geometry.ijk_to_ras`,
:meth:`Geometry.from_affine_ras`, :func:`lps_to_ras` and the Slicer module's volume-node glue.
"""

_LPS_TO_RAS_4X4 = np.eye(4)
_LPS_TO_RAS_4X4[:3, :3] = LPS_TO_RAS
LPS_TO_RAS.flags.writeable = False
_LPS_TO_RAS_4X4.flags.writeable = False

_AXIS_LETTERS = {  # LPS unit vectors and the letter of the direction they point to
    0: ("L", "R"),
    1: ("P", "A"),
    2: ("S", "I"),
}
_OPPOSITE = {"L": "R", "R": "L", "P": "A", "A": "P", "S": "I", "I": "S"}


def _as_direction(direction) -> np.ndarray:
    d = np.asarray(direction, dtype=np.float64)
    if d.size != 9:
        raise InvalidImageError(f"direction must have 9 elements, got {d.size}")
    return d.reshape(3, 3)


@dataclass(frozen=True)
class Geometry:
    """The grid of a 3D image in LPS physical space (see the module docstring).

    All sequences are (x, y, z) ordered; ``direction`` is a 3x3 numpy array whose columns are
    the LPS directions of the index axes. Instances are immutable and hashable by value.
    """

    size: tuple[int, int, int]
    spacing: tuple[float, float, float] = (1.0, 1.0, 1.0)
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))

    def __post_init__(self):
        size = tuple(int(s) for s in self.size)
        spacing = tuple(float(s) for s in self.spacing)
        origin = tuple(float(o) for o in self.origin)
        if len(size) != 3 or len(spacing) != 3 or len(origin) != 3:
            raise InvalidImageError("size, spacing and origin must each have 3 values (x, y, z)")
        if any(s <= 0 for s in spacing) or not all(np.isfinite(spacing)):
            raise InvalidImageError(f"spacing must be positive and finite, got {spacing} mm")
        direction = _as_direction(self.direction).copy()
        direction.setflags(write=False)
        object.__setattr__(self, "size", size)
        object.__setattr__(self, "spacing", spacing)
        object.__setattr__(self, "origin", origin)
        object.__setattr__(self, "direction", direction)

    # -- value semantics -------------------------------------------------------------
    def __eq__(self, other) -> bool:
        if not isinstance(other, Geometry):
            return NotImplemented
        return (
            self.size == other.size
            and self.spacing == other.spacing
            and self.origin == other.origin
            and np.array_equal(self.direction, other.direction)
        )

    def __hash__(self) -> int:
        return hash((self.size, self.spacing, self.origin, tuple(self.direction.ravel())))

    def __repr__(self) -> str:
        d = np.array2string(self.direction, precision=4, separator=", ").replace("\n", "")
        return (
            f"Geometry(size={self.size}, spacing={self.spacing}, origin={self.origin}, "
            f"direction={d}, orientation='{self.orientation}')"
        )

    def isclose(self, other: Geometry, *, atol_mm: float = 1e-4, atol_dir: float = 1e-6) -> bool:
        """Same size, and spacing/origin within ``atol_mm`` mm, direction within ``atol_dir``."""
        return (
            self.size == other.size
            and np.allclose(self.spacing, other.spacing, rtol=0, atol=atol_mm)
            and np.allclose(self.origin, other.origin, rtol=0, atol=atol_mm)
            and np.allclose(self.direction, other.direction, rtol=0, atol=atol_dir)
        )

    def replace(self, **changes) -> Geometry:
        """A copy with some fields changed, e.g. ``g.replace(spacing=(1, 1, 1))``."""
        values = {"size": self.size, "spacing": self.spacing, "origin": self.origin, "direction": self.direction}
        values.update(changes)
        return Geometry(**values)

    # -- shapes ------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int]:
        """The numpy array shape for this grid, (z, y, x)."""
        return self.size[::-1]

    @classmethod
    def from_shape(cls, shape_zyx: Sequence[int], **kwargs) -> Geometry:
        """A geometry for a (z, y, x) numpy shape; other fields as keyword arguments."""
        return cls(size=tuple(int(s) for s in shape_zyx[:3][::-1]), **kwargs)

    # -- matrices ----------------------------------------------------------------------
    @property
    def matrix(self) -> np.ndarray:
        """3x3 matrix ``direction @ diag(spacing)``: index (i, j, k) steps to LPS mm."""
        return self.direction @ np.diag(self.spacing)

    def affine_lps(self) -> np.ndarray:
        """4x4 matrix mapping a homogeneous (i, j, k, 1) index to LPS mm."""
        a = np.eye(4)
        a[:3, :3] = self.matrix
        a[:3, 3] = self.origin
        return a

    def affine_ras(self) -> np.ndarray:
        """4x4 matrix mapping (i, j, k, 1) to RAS mm — NIfTI's sform for an (x, y, z) array."""
        return _LPS_TO_RAS_4X4 @ self.affine_lps()

    def ijk_to_ras(self) -> np.ndarray:
        """Slicer's IJKToRAS matrix for this grid (IJK = (x, y, z) voxel index)."""
        return self.affine_ras()

    @classmethod
    def from_affine_lps(cls, affine: np.ndarray, size: Sequence[int]) -> Geometry:
        """Geometry from a 4x4 index-to-LPS affine (no shear allowed) and an (x, y, z) size."""
        a = np.asarray(affine, dtype=np.float64)
        m = a[:3, :3]
        spacing = np.linalg.norm(m, axis=0)
        if np.any(spacing <= 0):
            raise InvalidImageError("affine has a zero-length axis")
        direction = m / spacing
        if not np.allclose(direction.T @ direction, np.eye(3), atol=1e-4):
            raise InvalidImageError(
                "affine is sheared (its axes are not orthogonal); a volume needs an orthogonal grid",
                hint="resample the image onto an orthogonal grid first",
            )
        return cls(size=tuple(size), spacing=tuple(spacing), origin=tuple(a[:3, 3]), direction=direction)

    @classmethod
    def from_affine_ras(cls, affine: np.ndarray, size: Sequence[int]) -> Geometry:
        """Geometry from a 4x4 index-to-RAS affine (NIfTI sform, Slicer IJKToRAS)."""
        return cls.from_affine_lps(_LPS_TO_RAS_4X4 @ np.asarray(affine, float), size)

    # -- point transforms -----------------------------------------------------------------
    def index_to_physical(self, index) -> np.ndarray:
        """Continuous (i, j, k) index, shape (..., 3), to LPS mm, shape (..., 3)."""
        idx = np.asarray(index, dtype=np.float64)
        return idx @ self.matrix.T + np.asarray(self.origin)

    def physical_to_index(self, point) -> np.ndarray:
        """LPS mm, shape (..., 3), to continuous (i, j, k) index, shape (..., 3)."""
        p = np.asarray(point, dtype=np.float64) - np.asarray(self.origin)
        return p @ np.linalg.inv(self.matrix).T

    def corners(self) -> np.ndarray:
        """The 8 corner voxel centres in LPS mm, shape (8, 3)."""
        n = np.array(self.size) - 1
        idx = np.array([[i, j, k] for k in (0, n[2]) for j in (0, n[1]) for i in (0, n[0])], float)
        return self.index_to_physical(idx)

    def center(self) -> np.ndarray:
        """Physical centre of the field of view (mid-point of the corner voxel centres), LPS mm."""
        return self.index_to_physical((np.array(self.size, float) - 1) / 2)

    def extent_mm(self) -> np.ndarray:
        """Field of view along each index axis, (x, y, z), in mm (voxel edges to edges)."""
        return np.array(self.size) * np.array(self.spacing)

    # -- orientation ------------------------------------------------------------------
    @property
    def orientation(self) -> str:
        """Axis code such as ``"LPS"`` or ``"RAS"``: where each index axis (i, j, k) points to."""
        return orientation_code(self.direction)

    def is_oblique(self, tol: float = 1e-6) -> bool:
        """True when any index axis is not parallel to a patient axis."""
        return not np.allclose(np.abs(self.direction).max(axis=0), 1.0, atol=tol)

    # -- SimpleITK ------------------------------------------------------------------------
    @classmethod
    def from_sitk(cls, image) -> Geometry:
        """The geometry of a 3D SimpleITK image (vector images: per-voxel components ignored)."""
        if image.GetDimension() != 3:
            raise InvalidImageError(f"expected a 3D image, got {image.GetDimension()}D")
        return cls(
            size=image.GetSize(),
            spacing=image.GetSpacing(),
            origin=image.GetOrigin(),
            direction=np.array(image.GetDirection()).reshape(3, 3),
        )

    def apply_to_sitk(self, image) -> None:
        """Set spacing, origin and direction of a SimpleITK image (size must already match)."""
        if tuple(image.GetSize()) != self.size:
            raise InvalidImageError(f"image size {image.GetSize()} differs from geometry size {self.size}")
        image.SetSpacing(self.spacing)
        image.SetOrigin(self.origin)
        image.SetDirection(tuple(self.direction.ravel()))

    def to_dict(self) -> dict:
        """JSON-friendly description (lists, LPS, (x, y, z) order)."""
        return {
            "size": list(self.size),
            "spacing": list(self.spacing),
            "origin": list(self.origin),
            "direction": self.direction.ravel().tolist(),
            "orientation": self.orientation,
        }

    @classmethod
    def from_dict(cls, d: dict) -> Geometry:
        """Inverse of :meth:`to_dict`."""
        return cls(size=d["size"], spacing=d["spacing"], origin=d["origin"], direction=d["direction"])


def orientation_code(direction) -> str:
    """Axis code of a direction matrix: for each column the letter of the closest patient axis.

    >>> orientation_code(np.eye(3))
    'LPS'
    >>> orientation_code(np.diag([-1.0, -1.0, 1.0]))
    'RAS'
    """
    d = _as_direction(direction)
    letters = []
    used = set()
    # Assign axes greedily by the largest component so that an oblique matrix still yields a
    # permutation (each patient axis used once).
    order = np.argsort(-np.abs(d).max(axis=0))
    chosen = [None, None, None]
    for col in order:
        comps = np.abs(d[:, col])
        for row in np.argsort(-comps):
            if row not in used:
                used.add(row)
                pos, neg = _AXIS_LETTERS[int(row)]
                chosen[col] = pos if d[row, col] > 0 else neg
                break
    letters = "".join(chosen)
    return letters


def direction_from_code(code: str) -> np.ndarray:
    """The axis-aligned direction matrix for an orientation code (columns in LPS).

    >>> direction_from_code("RAS")
    array([[-1.,  0.,  0.],
           [ 0., -1.,  0.],
           [ 0.,  0.,  1.]])
    """
    code = code.upper()
    if len(code) != 3 or set(code) - set(_OPPOSITE):
        raise ArgumentError(f"'{code}' is not an orientation code (three letters from L/R, P/A, S/I)")
    d = np.zeros((3, 3))
    rows_used = set()
    for col, letter in enumerate(code):
        for row, (pos, neg) in _AXIS_LETTERS.items():
            if letter in (pos, neg):
                if row in rows_used:
                    raise ArgumentError(f"orientation code '{code}' names the same patient axis twice")
                rows_used.add(row)
                d[row, col] = 1.0 if letter == pos else -1.0
    return d


def lps_to_ras(points) -> np.ndarray:
    """Flip the first two coordinates: LPS mm to RAS mm (or back), shape (..., 3)."""
    return np.asarray(points, dtype=np.float64) * LPS_TO_RAS.diagonal()


ras_to_lps = lps_to_ras
