"""What every segmentation reader returns: named segments as masks on one image grid.

A :class:`Segmentation` is the segments of one object (a DICOM SEG, an RTSTRUCT, a Slicer
``.seg.nrrd``) placed on the grid of the image it belongs to — exactly the grid MedPrep's loader
gives that image (LPS, (z, y, x) arrays, :class:`~MedPrepLib.geometry.Geometry`). Segments stay
separate (they may overlap); :mod:`.label_table` decides how they become one label map.

A segment's mask is kept as its bounding box (``box``: the (z, y, x) start of the box in the
image grid, and a bool ``mask`` of the box's shape), so a hundred organs of a 512 x 512 x 300 CT
do not take a hundred full-size arrays. :meth:`Segment.full` gives the full-grid mask.

>>> import numpy as np
>>> from MedPrepLib.geometry import Geometry
>>> g = Geometry.from_shape((4, 5, 6))
>>> full = np.zeros((4, 5, 6), bool); full[1:3, 2, 3:5] = True
>>> s = Segment.from_full_mask(1, "liver", full)
>>> s.box, s.mask.shape, s.voxels, bool((s.full(g.shape) == full).all())
((1, 2, 3), (2, 1, 2), 4, True)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import ArgumentError
from ..geometry import Geometry


@dataclass(frozen=True, eq=False)
class Segment:
    """One segment (SEG segment, RTSTRUCT ROI, Slicer segment) on the image grid.

    Attributes
    ----------
    number:
        The source's own number: SegmentNumber (SEG), ROINumber (RTSTRUCT), the 1-based position
        of the segment in a ``.seg.nrrd``. Never used as a label value by itself (the label
        table maps names to values).
    name:
        SegmentLabel / ROIName / the Slicer segment name, as stored (anatomy, kept in outputs).
    box:
        (z, y, x) index in the image grid of the first voxel of ``mask``.
    mask:
        bool array: the segment's voxels inside its bounding box. An empty segment has a
        (0, 0, 0) mask.
    fraction:
        For a FRACTIONAL DICOM SEG: float32 fractions in [0, 1] of the same box (``mask`` is
        then fraction >= the reader's threshold); otherwise ``None``.
    terminology:
        The coded segmented property, as (coding scheme, code value, code meaning) triples —
        (category, type) for SEG and Slicer terminology — or ``()``.
    warnings:
        What the reader noticed about this segment (contours off every slice, empty...), never
        identifying.
    """

    number: int
    name: str
    box: tuple[int, int, int]
    mask: np.ndarray
    fraction: np.ndarray | None = None
    terminology: tuple[tuple[str, str, str], ...] = ()
    warnings: tuple[str, ...] = ()

    def __post_init__(self):
        if self.mask.dtype != bool or self.mask.ndim != 3:
            raise ArgumentError(f"segment {self.number} ({self.name!r}): the mask must be a 3D bool array")
        if self.fraction is not None and self.fraction.shape != self.mask.shape:
            raise ArgumentError(f"segment {self.number} ({self.name!r}): fraction and mask differ in shape")

    @classmethod
    def from_full_mask(cls, number: int, name: str, full: np.ndarray, *, fraction: np.ndarray | None = None,
                       terminology=(), warnings=()) -> Segment:  # fmt: skip
        """A segment from a full-grid mask (and fraction map), cropped to its bounding box."""
        full = np.asarray(full, bool)
        nonzero = np.flatnonzero(full.any(axis=(1, 2))), np.flatnonzero(full.any(axis=(0, 2))), np.flatnonzero(full.any(axis=(0, 1)))
        if any(len(n) == 0 for n in nonzero):
            return cls(number, name, (0, 0, 0), np.zeros((0, 0, 0), bool), None if fraction is None else np.zeros((0, 0, 0), np.float32),
                       tuple(terminology), tuple(warnings))  # fmt: skip
        box = tuple(int(n[0]) for n in nonzero)
        crop = tuple(slice(int(n[0]), int(n[-1]) + 1) for n in nonzero)
        frac = None if fraction is None else np.ascontiguousarray(np.asarray(fraction, np.float32)[crop])
        return cls(number, name, box, np.ascontiguousarray(full[crop]), frac, tuple(terminology), tuple(warnings))

    @property
    def voxels(self) -> int:
        return int(np.count_nonzero(self.mask))

    @property
    def empty(self) -> bool:
        return self.voxels == 0

    def slices(self) -> tuple[slice, slice, slice]:
        """Where the box sits in the image array."""
        return tuple(slice(b, b + n) for b, n in zip(self.box, self.mask.shape, strict=True))

    def full(self, shape: tuple[int, int, int]) -> np.ndarray:
        """The mask on the whole image grid of ``shape`` (z, y, x)."""
        out = np.zeros(shape, bool)
        if self.mask.size:
            out[self.slices()] = self.mask
        return out


@dataclass
class Segmentation:
    """The segments of one object on one image grid.

    ``geometry`` is the image's grid (LPS); ``kind`` ``"SEG"``, ``"RTSTRUCT"`` or ``"seg.nrrd"``;
    ``warnings`` what the reader noticed about the object as a whole (never identifying: no
    header field other than segment names and numbers reaches an output).
    """

    geometry: Geometry
    kind: str
    segments: list[Segment] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def names(self) -> list[str]:
        return [s.name for s in self.segments]

    def segment(self, number: int) -> Segment:
        for s in self.segments:
            if s.number == number:
                return s
        raise KeyError(number)
