"""The volume value type: voxels as a numpy array plus their grid in LPS physical space.

A :class:`Volume` is what every MedPrep step consumes and produces. Its ``array`` is indexed
**(z, y, x)** — ``array[k, j, i]`` — exactly as ``SimpleITK.GetArrayFromImage`` returns it; a
multi-channel (vector, or 4D time/echo series) volume has the channels last, **(z, y, x, c)**.
``geometry`` (:class:`~MedPrepLib.geometry.Geometry`) gives spacing (mm), origin (mm, LPS) and
direction in SimpleITK's meaning, all (x, y, z) ordered.

``metadata`` is a free JSON-friendly dict for provenance and warnings; it must never hold
patient identity (names, IDs, birth dates).

Conversions to and from SimpleITK avoid copying where SimpleITK allows it: ``from_sitk`` keeps
a read-only view on the image buffer whose ``.base`` chain holds the image, so the buffer
stays alive as long as the array does; ``to_sitk`` has to copy, as SimpleITK cannot adopt a numpy buffer.

>>> import numpy as np
>>> v = Volume(np.zeros((2, 3, 4), np.int16), spacing=(0.5, 0.5, 2.0))
>>> v.geometry.size, v.shape, v.spacing
((4, 3, 2), (2, 3, 4), (0.5, 0.5, 2.0))
>>> Volume.from_sitk(v.to_sitk()).geometry == v.geometry
True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import InvalidImageError
from .geometry import Geometry


class Volume:
    """A 3D (optionally multi-channel) image: a (z, y, x[, c]) array and its LPS grid.

    Build one from an array and either a ``geometry`` or the loose ``spacing``/``origin``/
    ``direction`` fields (SimpleITK meaning, (x, y, z) order, mm, LPS).
    """

    __slots__ = ("array", "geometry", "metadata")

    def __init__(
        self,
        array: np.ndarray,
        geometry: Geometry | None = None,
        *,
        spacing: Sequence[float] | None = None,
        origin: Sequence[float] | None = None,
        direction=None,
        metadata: dict[str, Any] | None = None,
    ):
        array = np.asarray(array)
        if array.ndim not in (3, 4):
            raise InvalidImageError(f"a volume array must be (z, y, x) or (z, y, x, c), got shape {array.shape}")
        size = tuple(array.shape[:3][::-1])
        if geometry is None:
            geometry = Geometry(
                size=size,
                spacing=spacing if spacing is not None else (1.0, 1.0, 1.0),
                origin=origin if origin is not None else (0.0, 0.0, 0.0),
                direction=direction if direction is not None else np.eye(3),
            )
        elif spacing is not None or origin is not None or direction is not None:
            raise TypeError("give either geometry or spacing/origin/direction, not both")
        if geometry.size != size:
            raise InvalidImageError(f"array shape {array.shape} (z, y, x) does not match geometry size {geometry.size} (x, y, z)")
        self.array = array
        self.geometry = geometry
        self.metadata = dict(metadata) if metadata else {}

    # -- convenient read-only views of the geometry -------------------------------------------
    @property
    def shape(self) -> tuple[int, ...]:
        """The array shape, (z, y, x) or (z, y, x, c)."""
        return self.array.shape

    @property
    def spacing(self) -> tuple[float, float, float]:
        """Voxel spacing in mm, (x, y, z)."""
        return self.geometry.spacing

    @property
    def origin(self) -> tuple[float, float, float]:
        """Centre of voxel (0, 0, 0) in LPS mm."""
        return self.geometry.origin

    @property
    def direction(self) -> np.ndarray:
        """3x3 direction matrix (columns = LPS directions of the i, j, k axes)."""
        return self.geometry.direction

    @property
    def n_channels(self) -> int:
        """1 for a scalar volume, c for a (z, y, x, c) volume."""
        return 1 if self.array.ndim == 3 else self.array.shape[3]

    @property
    def dtype(self) -> np.dtype:
        return self.array.dtype

    # -- derivation -------------------------------------------------------------------------
    def with_array(self, array: np.ndarray, **metadata_updates) -> Volume:
        """Same grid, new voxels (which must have the same (z, y, x) shape)."""
        meta = dict(self.metadata)
        meta.update(metadata_updates)
        return Volume(array, self.geometry, metadata=meta)

    def copy(self) -> Volume:
        """A deep copy with its own writable array."""
        import copy

        return Volume(self.array.copy(), self.geometry, metadata=copy.deepcopy(self.metadata))

    def channel(self, c: int) -> Volume:
        """Channel ``c`` of a multi-channel volume as a scalar volume (a view)."""
        if self.array.ndim == 3:
            if c != 0:
                raise IndexError(f"a scalar volume has only channel 0, not {c}")
            return self
        return Volume(self.array[..., c], self.geometry, metadata=self.metadata)

    def value_range(self) -> tuple[float, float]:
        """(min, max) of the voxels, ignoring NaN."""
        if self.array.size == 0:
            raise InvalidImageError("the volume has no voxels")
        return float(np.nanmin(self.array)), float(np.nanmax(self.array))

    def __repr__(self) -> str:
        return f"Volume(shape={self.shape}, dtype={self.dtype}, {self.geometry!r})"

    # -- SimpleITK --------------------------------------------------------------------------
    @classmethod
    def from_sitk(cls, image, *, copy: bool = False, metadata: dict | None = None) -> Volume:
        """A volume over a 3D SimpleITK image (scalar or vector pixels -> channels last).

        With ``copy=False`` the array is a read-only view on the image's buffer; call
        :meth:`copy` (or pass ``copy=True``) before modifying voxels in place.
        """
        import SimpleITK as sitk

        geometry = Geometry.from_sitk(image)
        if copy:
            return cls(sitk.GetArrayFromImage(image), geometry, metadata=metadata)
        return cls(_view_keeping(sitk.GetArrayViewFromImage(image), image), geometry, metadata=metadata)

    def to_sitk(self):
        """A SimpleITK image with these voxels and geometry (a copy; (z, y, x, c) -> vector)."""
        import SimpleITK as sitk

        array = self.array
        if array.dtype == np.bool_:
            array = array.astype(np.uint8)
        image = sitk.GetImageFromArray(np.ascontiguousarray(array), isVector=array.ndim == 4)
        self.geometry.apply_to_sitk(image)
        return image


class _BufferKeeper:
    """Exposes an array's buffer while holding its owner, so ``np.asarray`` of it keeps the owner alive."""

    def __init__(self, array: np.ndarray, owner: Any):
        self.__array_interface__ = array.__array_interface__
        self._array = array
        self._owner = owner


def _view_keeping(array: np.ndarray, owner: Any) -> np.ndarray:
    """The same view, but one whose ``.base`` chain holds ``owner`` (SimpleITK's views do not:
    ``read_image(path).array`` would otherwise point into freed memory once the Volume is gone)."""
    return np.asarray(_BufferKeeper(array, owner))
