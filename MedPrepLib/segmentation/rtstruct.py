"""RTSTRUCT contours as segments on an image grid, rasterised by MedPrep itself.

A DICOM RT Structure Set holds, per ROI, polygons in patient space (LPS, mm). This module puts
them on the grid of the image they belong to (:class:`~MedPrepLib.geometry.Geometry`: LPS,
(z, y, x) arrays) as one :class:`~.segments.Segment` per ROI. The rules, all in the image's
continuous **index** space (i, j, k) = (x, y, z), where voxel centres sit at whole numbers:

* **Pairing.** An ROI is named by its StructureSetROISequence item and drawn by the
  ROIContourSequence item whose ReferencedROINumber equals its ROINumber — never by the order of
  the two lists. Contours of an ROI number the structure set does not declare are kept, named
  ``"ROI <n>"``, and reported.
* **Mapping.** Every contour point goes through :meth:`Geometry.physical_to_index`; index
  coordinates within 1e-6 of a whole number are snapped to it (DS rounding of points drawn on
  voxel centres).
* **Slice assignment.** A contour whose points stay within ``PLANAR_TOLERANCE`` (0.1 slice
  spacing) of one plane parallel to the slices lies in the plane at its mean k. It belongs to
  slice ``s = floor(k + 0.5)`` when ``|k - s| <= slice_tolerance`` (default 0.5: the slab of
  slice s's voxels) and ``0 <= s < nz``; else it is **at no image slice** and reported
  ("ROI 3 'GTV': 2 contours at no image slice"), never silently dropped. Contours more than 0.05
  slice from their slice's centre plane are reported too ("between slices").
* **Not in the slice planes.** A contour whose k varies by more than ``PLANAR_TOLERANCE`` is
  tilted to the image's slices (another series' planes, an oblique reformat) or not planar.
  MedPrep does not invent the anatomy between such planes: ``oblique="refuse"`` (the default)
  raises :class:`~MedPrepLib.errors.UnsupportedDicomError` naming the ROIs and the tilt;
  ``oblique="skip"`` leaves those contours out and reports them on their segment.
* **In-plane fill** (:func:`fill_polygons`): on its slice a contour is a polygon in (i, j).
  A voxel is inside when its **centre** is inside by the **even-odd rule** over all contours of
  the plane, so a contour nested in another is a hole (an island in a hole is filled again):
  the XOR that DICOM, SlicerRT and dcmrtstruct2nii mean. Centres exactly on an edge belong to
  the low-index side: a centre on a left (low i) or top (low j) edge is inside, on a right or
  bottom edge outside, so polygons sharing an edge never both claim a voxel and the square from
  index a to b covers exactly b - a voxels per side. Contours from two different planes that
  fall into one slice's slab are each filled, then united (plastimatch's behaviour).
* **Geometric types.** CLOSED_PLANAR (and CLOSEDPLANAR_XOR) contours enclose voxels; POINT,
  OPEN_PLANAR and OPEN_NONPLANAR contours are ignored and reported; a contour without a type is
  read as closed and reported; closed contours with fewer than 3 points are ignored and
  reported. Parts of contours outside the image are clipped and reported.
* **Empty ROIs** (no contours, or none enclosing a voxel centre on this grid) are segments with an
  empty mask and a warning.

Warnings about one ROI are in its segment's ``warnings``; :attr:`Segmentation.warnings` holds
the object-level ones (undeclared or duplicate ROI numbers, no ROI at all). Only ROI numbers and
names reach a message or an output: no UID, patient field or file name (the file is named in
an error's ``detail`` only).

>>> square = np.array([[1, 1], [5, 1], [5, 5], [1, 5]], float)  # (i, j), index units
>>> int(fill_polygons([square], (8, 8)).sum())  # centres 1..4 on both axes
16
>>> int(fill_polygons([square, square / 2 + 1.5], (8, 8)).sum())  # nested: a 2 x 2 hole
12
"""

from __future__ import annotations

import math
import os
from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np

from ..errors import ArgumentError, DicomError, InputError, UnsupportedDicomError
from ..geometry import Geometry
from ..volume import Volume
from .segments import Segment, Segmentation

RTSTRUCT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"
PLANAR_TOLERANCE = 0.1
"""How far (in slice spacings, along k) a contour's points may spread and still lie in one plane
parallel to the image's slices."""
BETWEEN_SLICES = 0.05
"""Contours further than this (in slice spacings) from their slice's centre plane are reported."""
CLOSED_TYPES = ("CLOSED_PLANAR", "CLOSEDPLANAR_XOR")
IGNORED_TYPES = ("POINT", "OPEN_PLANAR", "OPEN_NONPLANAR")
OBLIQUE_POLICIES = ("refuse", "skip")
_SNAP = 1e-6


def read_rtstruct(
    source,
    image: Volume | Geometry,
    *,
    slice_tolerance: float = 0.5,
    oblique: str = "refuse",
) -> Segmentation:
    """The ROIs of an RTSTRUCT as segments on ``image``'s grid (the rules: module docstring).

    Parameters
    ----------
    source:
        The RTSTRUCT file (path), or a pydicom ``Dataset`` already read.
    image:
        The image the contours belong to, or its :class:`Geometry` (LPS, mm).
    slice_tolerance:
        How far, in slice spacings along the slice normal, a contour's plane may be from a slice's
        centre plane and still belong to that slice; in (0, 0.5]. Default 0.5: the slice's slab.
    oblique:
        ``"refuse"`` (default) raises when a closed contour is not parallel to the image's
        slices (or not planar); ``"skip"`` leaves such contours out, reported.

    Returns
    -------
    Segmentation
        kind ``"RTSTRUCT"``, one segment per ROI in the structure set's order, numbered by
        ROINumber, named by ROIName.
    """
    geometry = image.geometry if isinstance(image, Volume) else image
    if not isinstance(geometry, Geometry):
        raise ArgumentError("image must be a Volume or a Geometry")
    if not 0 < float(slice_tolerance) <= 0.5:
        raise ArgumentError(
            f"slice_tolerance must be in (0, 0.5] slice spacings, got {slice_tolerance}",
            hint="0.5 takes every contour within a slice's slab; smaller values report contours between slices",
        )
    if oblique not in OBLIQUE_POLICIES:
        raise ArgumentError(f"oblique must be one of {', '.join(OBLIQUE_POLICIES)}, got {oblique!r}")
    ds, detail = _dataset(source)
    rois, object_warnings = _pair_rois(ds, detail)
    segments, refused = [], []
    for roi in rois:
        segment, tilted = _rasterise_roi(roi, geometry, float(slice_tolerance), oblique)
        segments.append(segment)
        if tilted:
            refused.append(tilted)
    if refused:
        raise UnsupportedDicomError(
            f"RTSTRUCT contours not in the image's slice planes: {'; '.join(refused)}",
            hint="load the image series the structure set was drawn on (its contours lie in that series' slice "
            "planes), or pass oblique='skip' to leave such contours out (reported)",
            detail=detail,
        )
    return Segmentation(geometry, "RTSTRUCT", segments, object_warnings)


def read_rtstruct_on_series(
    source,
    image_path: str | os.PathLike,
    series: str | None = None,
    *,
    geometry_policy: str = "resample",
    slice_tolerance: float = 0.5,
    oblique: str = "refuse",
) -> tuple[Volume, Segmentation]:
    """Load the image series with MedPrep's loader (:func:`MedPrepLib.sources.load_path`:
    ``series`` and ``geometry_policy`` as there) and read the RTSTRUCT onto exactly that grid.

    Returns the volume and the segmentation, so the label and the image share one grid whatever
    the loader did (a gantry tilt or uneven slices resampled, or refused under ``"reject"``).
    """
    from ..sources import load_path

    volume = load_path(image_path, series, geometry_policy=geometry_policy)
    return volume, read_rtstruct(source, volume, slice_tolerance=slice_tolerance, oblique=oblique)


def fill_polygons(polygons, shape: tuple[int, int]) -> np.ndarray:
    """The (rows, cols) bool mask of the voxel centres inside ``polygons`` by the even-odd rule.

    Each polygon is an (N, 2) array of continuous (i, j) = (column, row) index coordinates,
    closed implicitly (last point to first). Centres on an edge follow the low-index rule of the
    module docstring. Vectorised scanline fill: crossings of every edge with every row, a parity
    count along each row.
    """
    rows, cols = int(shape[0]), int(shape[1])
    out = np.zeros((rows, cols), bool)
    filled = _fill_box([np.asarray(p, float) for p in polygons], rows, cols)
    if filled is not None:
        (j0, i0), mask = filled
        out[j0 : j0 + mask.shape[0], i0 : i0 + mask.shape[1]] = mask
    return out


# -- reading and pairing ---------------------------------------------------------------------------


@dataclass
class _Roi:
    number: int
    name: str
    contours: list = field(default_factory=list)  # ContourSequence items
    terminology: tuple = ()
    warnings: list[str] = field(default_factory=list)
    has_contour_item: bool = False

    @property
    def label(self) -> str:
        return f"ROI {self.number} {self.name!r}"


def _dataset(source):
    """The pydicom dataset of ``source`` and the detail (file name) errors may carry."""
    import pydicom

    if isinstance(source, pydicom.Dataset):
        ds, detail = source, None
    else:
        detail = os.fspath(source)
        try:
            ds = pydicom.dcmread(detail, force=True)
        except FileNotFoundError:
            raise InputError("RTSTRUCT file not found", hint="check the path", detail=detail) from None
        except OSError as exc:
            raise InputError(f"cannot read the RTSTRUCT file ({exc.strerror or 'read error'})", detail=detail) from None
        except Exception as exc:  # pydicom raises many types on damaged files
            raise DicomError(
                f"not a readable DICOM file ({type(exc).__name__})", hint="give an RTSTRUCT file", detail=detail
            ) from None
    sop_class = str(ds.get("SOPClassUID", "") or getattr(getattr(ds, "file_meta", None), "MediaStorageSOPClassUID", ""))
    if str(ds.get("Modality", "")).upper() != "RTSTRUCT" and sop_class != RTSTRUCT_SOP_CLASS:
        raise UnsupportedDicomError(
            f"not an RT Structure Set (modality {str(ds.get('Modality', '') or 'missing')})",
            hint="give an RTSTRUCT object; DICOM SEG objects are read by MedPrepLib.segmentation.dicom_seg",
            detail=detail,
        )
    return ds, detail


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _pair_rois(ds, detail) -> tuple[list[_Roi], list[str]]:
    """ROIs in the structure set's order, each with the contour items whose ReferencedROINumber
    is its ROINumber."""
    warnings: list[str] = []
    rois: dict[int, _Roi] = {}
    for item in ds.get("StructureSetROISequence", None) or []:
        number = _int(item.get("ROINumber"))
        if number is None:
            warnings.append("a StructureSetROISequence item has no ROINumber; its ROI is left out")
            continue
        name = str(item.get("ROIName", "") or "").strip() or f"ROI {number}"
        if number in rois:
            raise DicomError(
                f"ROI number {number} is declared twice ({rois[number].name!r} and {name!r}): "
                "its contours cannot be told apart",
                hint="fix the structure set's ROI numbers",
                detail=detail,
            )
        rois[number] = _Roi(number, name)
    for item in ds.get("RTROIObservationsSequence", None) or []:
        roi = rois.get(_int(item.get("ReferencedROINumber")))
        codes = item.get("RTROIIdentificationCodeSequence", None) or []
        if roi is not None and codes:
            roi.terminology = tuple(
                (str(c.get("CodingSchemeDesignator", "")), str(c.get("CodeValue", "")), str(c.get("CodeMeaning", "")))
                for c in codes
            )
    for item in ds.get("ROIContourSequence", None) or []:
        number = _int(item.get("ReferencedROINumber"))
        if number is None:
            warnings.append("an ROIContourSequence item has no ReferencedROINumber; its contours are left out")
            continue
        roi = rois.get(number)
        if roi is None:
            roi = rois[number] = _Roi(number, f"ROI {number}")
            warnings.append(f"ROI {number}: contours for an ROI number the structure set does not declare (no name)")
        roi.has_contour_item = True
        roi.contours.extend(item.get("ContourSequence", None) or [])
    if not rois:
        warnings.append("the structure set declares no ROI")
    return list(rois.values()), warnings


# -- one ROI -----------------------------------------------------------------------------------------


@dataclass
class _Counts:
    ignored: dict = field(default_factory=lambda: defaultdict(int))
    untyped: int = 0
    degenerate: int = 0
    off_slice: int = 0
    between: int = 0
    most_between: float = 0.0
    clipped: int = 0
    tilted: int = 0
    most_tilt: float = 0.0
    nonplanar: int = 0


def _rasterise_roi(roi: _Roi, geometry: Geometry, tolerance: float, oblique: str) -> tuple[Segment, str]:
    """The segment of one ROI, and a refusal reason ('' when none) for contours off the slice planes."""
    nx, ny, nz = geometry.size
    counts = _Counts()
    planes: dict[int, list[tuple[float, np.ndarray]]] = defaultdict(list)  # slice -> [(k, (N, 2) i, j)]
    for item in roi.contours:
        index = _closed_contour_index(item, geometry, counts)
        if index is None:
            continue
        k = index[:, 2]
        if k.max() - k.min() > PLANAR_TOLERANCE:
            _count_off_plane(item, geometry, counts)
            continue
        plane = float(k.mean())
        s = math.floor(plane + 0.5)
        offset = abs(plane - s)
        if not 0 <= s < nz or offset > tolerance:
            counts.off_slice += 1
            continue
        if offset > BETWEEN_SLICES:
            counts.between += 1
            counts.most_between = max(counts.most_between, offset)
        i, j = index[:, 0], index[:, 1]
        if i.min() < -0.5 or j.min() < -0.5 or i.max() > nx - 0.5 or j.max() > ny - 0.5:
            counts.clipped += 1
        planes[s].append((plane, index[:, :2]))
    pieces = [(s, *_fill_slice(planes[s], ny, nx)) for s in sorted(planes)]
    segment = _segment(roi, [p for p in pieces if p[1] is not None])
    refusal = ""
    if (counts.tilted or counts.nonplanar) and oblique == "refuse":
        refusal = f"{roi.label}: {_off_plane_text(counts)}"
    return _with_warnings(segment, roi, counts), refusal


def _closed_contour_index(item, geometry: Geometry, counts: _Counts) -> np.ndarray | None:
    """A closed contour's points as continuous (i, j, k) index, (N, 3); None when it encloses nothing."""
    kind = str(item.get("ContourGeometricType", "") or "").strip().upper()
    if kind in IGNORED_TYPES or (kind and kind not in CLOSED_TYPES):
        counts.ignored[kind] += 1
        return None
    data = item.get("ContourData", None)
    points = np.asarray([] if data is None else list(data), dtype=np.float64)
    if points.size % 3 or points.size < 9 or not np.isfinite(points).all():
        counts.degenerate += 1
        return None
    if not kind:
        counts.untyped += 1
    index = geometry.physical_to_index(points.reshape(-1, 3))
    nearest = np.round(index)
    return np.where(np.abs(index - nearest) < _SNAP, nearest, index)


def _count_off_plane(item, geometry: Geometry, counts: _Counts) -> None:
    """Tell a contour in a plane tilted to the slices from one that is not planar at all."""
    points = np.asarray(list(item.ContourData), np.float64).reshape(-1, 3)
    centred = points - points.mean(axis=0)
    _, sv, vt = np.linalg.svd(centred, full_matrices=False)
    slice_mm = geometry.spacing[2]
    if len(sv) == 3 and sv[2] / math.sqrt(len(points)) > PLANAR_TOLERANCE * slice_mm:
        counts.nonplanar += 1
        return
    normal = geometry.direction[:, 2]
    tilt = math.degrees(math.acos(min(1.0, abs(float(vt[-1] @ normal)))))
    counts.tilted += 1
    counts.most_tilt = max(counts.most_tilt, tilt)


def _off_plane_text(counts: _Counts) -> str:
    parts = []
    if counts.tilted:
        parts.append(f"{_n(counts.tilted)} tilted up to {counts.most_tilt:.1f} degrees to the image's slices")
    if counts.nonplanar:
        parts.append(f"{_n(counts.nonplanar)} not planar")
    return " and ".join(parts)


def _n(count: int) -> str:
    return f"{count} contour" + ("" if count == 1 else "s")


def _with_warnings(segment: Segment, roi: _Roi, counts: _Counts) -> Segment:
    notes = list(roi.warnings)
    if not roi.contours:
        notes.append("no contours" if roi.has_contour_item else "no contours (no ROIContourSequence item refers to it)")
    for kind, n in sorted(counts.ignored.items()):
        notes.append(
            f"{n} {kind or 'untyped'} contour{'s' if n > 1 else ''} ignored (only closed contours enclose voxels)"
        )
    if counts.untyped:
        notes.append(f"{_n(counts.untyped)} without ContourGeometricType, read as closed")
    if counts.degenerate:
        notes.append(f"{_n(counts.degenerate)} with fewer than 3 points or unreadable point data ignored")
    if counts.off_slice:
        notes.append(f"{_n(counts.off_slice)} at no image slice (not within the slab of any slice of the image)")
    if counts.between:
        notes.append(
            f"{_n(counts.between)} between slices (up to {counts.most_between:.2f} slice from a slice's plane), "
            "put on the nearest slice"
        )
    if counts.tilted or counts.nonplanar:
        notes.append(f"{_off_plane_text(counts)}: left out")
    if counts.clipped:
        notes.append(f"{_n(counts.clipped)} reaching outside the image, clipped to it")
    if roi.contours and segment.empty:
        notes.append("empty on this image (no contour encloses a voxel centre)")
    if not notes:
        return segment
    return Segment(segment.number, segment.name, segment.box, segment.mask, None, segment.terminology,
                   tuple(f"{roi.label}: {n}" for n in notes))  # fmt: skip


def _segment(roi: _Roi, pieces: list[tuple[int, tuple[int, int] | None, np.ndarray | None]]) -> Segment:
    """Assemble per-slice boxes [(slice, (j0, i0), mask)] into one bounding-box segment."""
    if not pieces:
        return Segment(roi.number, roi.name, (0, 0, 0), np.zeros((0, 0, 0), bool), terminology=roi.terminology)
    z0, z1 = pieces[0][0], pieces[-1][0] + 1
    j0 = min(p[1][0] for p in pieces)
    i0 = min(p[1][1] for p in pieces)
    j1 = max(p[1][0] + p[2].shape[0] for p in pieces)
    i1 = max(p[1][1] + p[2].shape[1] for p in pieces)
    box = np.zeros((z1 - z0, j1 - j0, i1 - i0), bool)
    for s, (j, i), mask in pieces:
        box[s - z0, j - j0 : j - j0 + mask.shape[0], i - i0 : i - i0 + mask.shape[1]] = mask
    tight = Segment.from_full_mask(roi.number, roi.name, box, terminology=roi.terminology)
    if tight.empty:
        return tight
    return Segment(roi.number, roi.name, (tight.box[0] + z0, tight.box[1] + j0, tight.box[2] + i0), tight.mask,
                   terminology=roi.terminology)  # fmt: skip


# -- the fill ---------------------------------------------------------------------------------------------


def _fill_slice(contours: list[tuple[float, np.ndarray]], rows: int, cols: int):
    """One slice's mask box: even-odd within each plane, planes (k apart > PLANAR_TOLERANCE) united."""
    contours = sorted(contours, key=lambda c: c[0])
    groups, last = [], None
    for k, polygon in contours:
        if last is None or k - last > PLANAR_TOLERANCE:
            groups.append([])
        groups[-1].append(polygon)
        last = k
    boxes = [b for b in (_fill_box(g, rows, cols) for g in groups) if b is not None]
    if not boxes:
        return None, None
    if len(boxes) == 1:
        return boxes[0]
    j0 = min(b[0][0] for b in boxes)
    i0 = min(b[0][1] for b in boxes)
    j1 = max(b[0][0] + b[1].shape[0] for b in boxes)
    i1 = max(b[0][1] + b[1].shape[1] for b in boxes)
    union = np.zeros((j1 - j0, i1 - i0), bool)
    for (j, i), mask in boxes:
        union[j - j0 : j - j0 + mask.shape[0], i - i0 : i - i0 + mask.shape[1]] |= mask
    return (j0, i0), union


def _fill_box(polygons: list[np.ndarray], rows: int, cols: int):
    """Even-odd scanline fill of ``polygons`` ((N, 2) i, j each) clipped to the grid.

    Returns ((j0, i0), mask) for the rows and columns the polygons can touch, or None when they
    cover no row. Row j's crossings are the edges with min(y) <= j < max(y) (half-open, so a
    vertex on a row is counted once); voxel i of that row is inside when an odd number of its
    crossings lie at x <= i, i.e. each crossing toggles the voxels from ceil(x) on.
    """
    polygons = [p for p in polygons if len(p) >= 3]
    if not polygons:
        return None
    start = np.concatenate(polygons)
    end = np.concatenate([np.roll(p, -1, axis=0) for p in polygons])
    x0, y0, x1, y1 = start[:, 0], start[:, 1], end[:, 0], end[:, 1]
    low, high = np.minimum(y0, y1), np.maximum(y0, y1)
    first = np.maximum(np.ceil(low), 0).astype(np.int64)
    stop = np.minimum(np.ceil(high), rows).astype(np.int64)  # rows first..stop-1
    n_rows = np.maximum(stop - first, 0)
    if not n_rows.any():
        return None
    j0 = int(first[n_rows > 0].min())
    j1 = int(stop[n_rows > 0].max())
    edge = np.repeat(np.arange(len(start)), n_rows)
    row = first[edge] + (np.arange(len(edge)) - np.repeat(np.cumsum(n_rows) - n_rows, n_rows))
    t = (row - y0[edge]) / (y1[edge] - y0[edge])
    x = x0[edge] + t * (x1[edge] - x0[edge])
    nearest = np.round(x)
    x = np.where(np.abs(x - nearest) < _SNAP, nearest, x)
    column = np.clip(np.ceil(x), 0, cols).astype(np.int64)
    i0 = int(column.min()) if column.min() < cols else cols
    i1 = int(column.max())
    if i1 <= i0:
        return None
    width = i1 - i0 + 1
    toggles = np.bincount((row - j0) * width + (column - i0), minlength=(j1 - j0) * width)
    mask = (np.cumsum(toggles.reshape(j1 - j0, width), axis=1) & 1).astype(bool)[:, : width - 1]
    return (j0, i0), mask
