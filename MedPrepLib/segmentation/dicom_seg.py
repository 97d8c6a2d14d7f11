"""DICOM SEG -> :class:`~.segments.Segmentation`: each segment as a mask on the image's grid.

highdicom (the maintained reference reader; pydicom >= 3, the ``labels`` extra) parses the object
and decodes its frames (bit unpacking of BINARY frames that are not byte aligned, compressed
transfer syntaxes). MedPrep places every frame itself, **by its plane position**, never by frame
order or source-image reference: frame ``n``'s pixel centres (ImagePositionPatient of its
PlanePositionSequence, ImageOrientationPatient, PixelSpacing; per-frame or shared functional
groups) are mapped to continuous (i, j, k) indices of the image grid through
:meth:`Geometry.physical_to_index <MedPrepLib.geometry.Geometry.physical_to_index>`, and the
frame is copied onto slice ``k`` when its four corner pixels land within
:data:`GRID_TOLERANCE` of a voxel centre along each axis. So a SEG may cover only some slices,
list its frames in any order, reference no source images, or be stored with rows and columns
transposed or flipped against the image (any in-plane axis permutation of the image grid).

Policies
--------
* **Segments** are numbered by SegmentNumber and named by SegmentLabel; ``terminology`` is
  (SegmentedPropertyCategory, SegmentedPropertyType) as (scheme, value, meaning) triples.
  Overlapping segments stay separate (the label table decides later).
* **BINARY**: a voxel is in a segment when a frame of that segment sets it.
* **FRACTIONAL**: fraction = stored value / MaximumFractionalValue (never the raw 0..255); a
  voxel is in the segment when its fraction ``>= fractional_threshold`` (default 0.5, i.e. half
  the maximum). ``keep_fractions=True`` keeps the fraction map in ``Segment.fraction`` (its box
  then spans every voxel with a fraction > 0).
* **LABELMAP**: a voxel is in segment N when its stored value is N. Image voxels that no frame
  covers (slices the SEG does not encode) hold value 0, as in highdicom (so they belong to a
  segment numbered 0, usually "Background"). The segment whose number is the PixelPaddingValue
  is not a segment (highdicom's ``segment_numbers``).
* **Frames off the grid** (between slices, beyond the first or last slice, on another pixel
  grid or orientation) and voxels outside the image's field of view are left out and reported
  in the segment's and the segmentation's ``warnings`` (``off_grid="warn"``, default), or
  refused (``off_grid="reject"``: :class:`~MedPrepLib.errors.LabelError`). Frames without any
  segment voxel are ignored (counted in a warning). A SEG none of whose non-empty frames lies
  on the grid is always refused: it was not made on this image.
* **Frame of reference**: a SEG whose FrameOfReferenceUID differs from the image's raises
  :class:`~MedPrepLib.errors.LabelError`; when the image's is unknown (an image file, a bare
  geometry) a warning says the check was not made. A SEG referencing another series of the same
  frame of reference is placed by position, with a warning.
* **Irregular series** follow the loader's geometry policy (:mod:`MedPrepLib.dicom.load`):

  - the loader resampled the series (tilt, a few missing slices, uneven spacing;
    ``metadata["regularized"]``): frames are placed on the acquired slices
    (``metadata["slice_positions"]``) and resampled by the loader's own
    :func:`~MedPrepLib.dicom.regularize.regularize` — linear, as the image was — a voxel being in
    the segment when the resampled mask (or fraction) is ``>=`` 0.5 (the fractional threshold);
  - the loader refused the series (:class:`~MedPrepLib.errors.GeometryError`: a gap too wide to
    bridge, or policy ``reject``): :func:`read_seg_on_series` refuses it with the same error;
  - a raw stack (``load_stack(..., regularize=False)``): frames are placed on its acquired
    slices by position, so the masks match the raw image array slice for slice (its geometry
    is as approximate as the image's; a warning says so).

Privacy: segment labels are kept (they are anatomy); no other header field of the SEG reaches a
warning, an error message or an output. Paths appear only in an error's ``detail``.

Example (not run as a doctest: it needs highdicom)::

    from MedPrepLib.segmentation.dicom_seg import read_seg_on_series
    image, seg = read_seg_on_series("liver.seg.dcm", "ct_folder")
    for s in seg.segments:
        print(s.number, s.name, s.voxels, s.full(image.geometry.shape).shape)
"""

from __future__ import annotations

import logging
import os
import warnings as pywarnings
from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np

from ..errors import (
    ArgumentError,
    DicomError,
    LabelError,
    MedPrepError,
    MissingDependencyError,
    UnsupportedDicomError,
)
from ..geometry import Geometry
from ..volume import Volume
from .segments import Segment, Segmentation

log = logging.getLogger(__name__)

SEG_SOP_CLASSES = ("1.2.840.10008.5.1.4.1.1.66.4", "1.2.840.10008.5.1.4.1.1.66.7")

GRID_TOLERANCE = 0.05
"""How far (a fraction of the voxel spacing, along each index axis) a frame's corner pixel
centres may lie from the image's voxel centres and still be placed there."""

OFF_GRID_POLICIES = ("warn", "reject")

_INSTALL = 'pip install "medprep[labels]"'


# -- the reader ------------------------------------------------------------------------------------


def highdicom():
    """The highdicom module, or :class:`MissingDependencyError` saying what to install (highdicom
    needs pydicom >= 3: on pydicom 2.4, as Slicer 5.10 bundles, DICOM SEG cannot be read)."""
    import pydicom

    major = int(str(pydicom.__version__).split(".")[0])
    if major < 3:
        raise MissingDependencyError(
            f"reading a DICOM SEG needs highdicom, which needs pydicom >= 3 (pydicom {pydicom.__version__} is installed)",
            hint=f'upgrade pydicom: pip install "pydicom>=3", then {_INSTALL}',
        )
    try:
        import highdicom as hd
    except ImportError as exc:
        raise MissingDependencyError(
            "reading a DICOM SEG needs the Python package 'highdicom', which is not installed", hint=_INSTALL
        ) from exc
    return hd


def read_seg(
    seg_path: str | os.PathLike,
    image: Volume | Geometry,
    *,
    fractional_threshold: float = 0.5,
    keep_fractions: bool = False,
    off_grid: str = "warn",
    frame_of_reference_uid: str | None = None,
) -> Segmentation:
    """The segments of a DICOM SEG file as masks on ``image``'s grid (see the module doc).

    Parameters
    ----------
    seg_path:
        The SEG file (BINARY, FRACTIONAL or LABELMAP; Segmentation Storage or Label Map
        Segmentation Storage).
    image:
        The image the SEG belongs to: a :class:`~MedPrepLib.volume.Volume` as MedPrep's loader
        gives it (its metadata tells a resampled or raw irregular stack, its series and frame of
        reference), or just its :class:`~MedPrepLib.geometry.Geometry` (LPS, mm).
    fractional_threshold:
        FRACTIONAL SEGs: a voxel is in the segment when stored / MaximumFractionalValue is at
        least this, in (0, 1]. Also the level at which masks resampled onto a regularized grid
        are cut.
    keep_fractions:
        FRACTIONAL SEGs: keep the fraction map (float32 in [0, 1]) in ``Segment.fraction``.
    off_grid:
        ``"warn"`` (default) leaves frames and voxels that are not on the image grid out, with
        a warning; ``"reject"`` raises :class:`LabelError`.
    frame_of_reference_uid:
        The image's FrameOfReferenceUID (default: ``image.metadata["frame_of_reference_uid"]``
        when present); the SEG's must equal it.

    Raises
    ------
    MissingDependencyError
        highdicom is not installed, or pydicom is older than 3.
    UnsupportedDicomError
        The file is not a DICOM SEG, or its frames carry no plane position.
    LabelError
        The SEG is in another frame of reference, or none of its frames lies on the grid, or
        (``off_grid="reject"``) some do not.
    """
    if off_grid not in OFF_GRID_POLICIES:
        raise ArgumentError(f"off_grid must be one of {', '.join(OFF_GRID_POLICIES)}, got {off_grid!r}")
    if not 0.0 < float(fractional_threshold) <= 1.0:
        raise ArgumentError(f"fractional_threshold must be in (0, 1], got {fractional_threshold!r}")
    hd = highdicom()
    seg = _open(hd, seg_path)
    detail = os.fspath(seg_path)
    geometry = image.geometry if isinstance(image, Volume) else image
    metadata = image.metadata if isinstance(image, Volume) else {}
    notes: list[str] = []
    _check_references(seg, metadata, frame_of_reference_uid, notes, detail)
    grid = _Grid.of(geometry, metadata, notes)
    reader = _FrameReader(hd, seg, grid, float(fractional_threshold), detail)
    reader.place_all()
    _report_off_grid(reader, off_grid, notes, detail)
    segments = reader.segments(keep_fractions, notes)
    return Segmentation(geometry, "SEG", segments, notes)


def read_seg_on_series(
    seg_path: str | os.PathLike,
    series_path: str | os.PathLike,
    *,
    series: str | None = None,
    geometry_policy: str = "resample",
    **options,
) -> tuple[Volume, Segmentation]:
    """Load the image series with :func:`MedPrepLib.sources.load_path` and read the SEG onto the
    grid it gives: ``(image, segmentation)``.

    ``series`` and ``geometry_policy`` are the loader's: where it resamples the series, the
    segments are resampled the same way; where it refuses it (:class:`GeometryError`), so does
    this. The image's FrameOfReferenceUID is read from its first file and checked against the
    SEG's. Other keywords (``fractional_threshold``, ``keep_fractions``, ``off_grid``) are
    :func:`read_seg`'s.
    """
    highdicom()  # before loading a large series for nothing
    from ..sources import load_path

    image = load_path(series_path, series, geometry_policy=geometry_policy)
    frame = _series_frame_of_reference(series_path, image)
    return image, read_seg(seg_path, image, frame_of_reference_uid=frame, **options)


# -- opening and checking ----------------------------------------------------------------------


def _open(hd, seg_path):
    import pydicom

    path = os.fspath(seg_path)
    try:
        with pywarnings.catch_warnings(record=True) as caught:
            ds = pydicom.dcmread(path, force=True)
            sop_class = str(ds.get("SOPClassUID", ""))
            if sop_class not in SEG_SOP_CLASSES:
                what = f"a {ds.Modality} object" if ds.get("Modality") else "not a DICOM image object"
                raise UnsupportedDicomError(f"not a DICOM SEG ({what})", hint="give a DICOM SEG file", detail=path)
            seg = hd.seg.Segmentation.from_dataset(ds, copy=False)
    except MedPrepError:
        raise
    except FileNotFoundError as exc:
        raise DicomError("the DICOM SEG file does not exist", detail=path) from exc
    except Exception as exc:  # highdicom and pydicom raise many kinds for a broken object
        raise DicomError(
            f"cannot read the DICOM SEG ({type(exc).__name__})",
            hint="check that the file is a complete DICOM SEG; --verbose shows highdicom's message",
            detail=f"{path}: {exc}",
        ) from exc
    for w in caught:  # their text may name UIDs: kept out of any message
        log.debug("highdicom/pydicom warning while reading a SEG: %s", w.message)
    return seg


def _check_references(seg, metadata: dict, frame_uid: str | None, notes: list[str], detail: str) -> None:
    image_frame = frame_uid or metadata.get("frame_of_reference_uid")
    seg_frame = str(seg.get("FrameOfReferenceUID", "") or "")
    if image_frame and seg_frame and image_frame != seg_frame:
        raise LabelError(
            "the SEG was drawn in another frame of reference than the image (FrameOfReferenceUID differs)",
            hint="give the image series the SEG was made on",
            detail=detail,
        )
    if not image_frame:
        notes.append("the image's FrameOfReferenceUID is unknown: the SEG was placed by position without that check")
    image_series = metadata.get("series_instance_uid")
    referenced = {str(item.get("SeriesInstanceUID", "")) for item in seg.get("ReferencedSeriesSequence") or []} - {""}
    if image_series and referenced and image_series not in referenced:
        notes.append("the SEG references another series than this image's (same frame of reference): placed by position")


def _series_frame_of_reference(series_path, image: Volume) -> str | None:
    """The FrameOfReferenceUID of the loaded stack's first file, or ``None`` (an image file)."""
    import pydicom

    from ..sources import find_stacks

    stack_id = image.metadata.get("stack_id")
    if not stack_id:
        return None
    stack = next((s for s in find_stacks(series_path).stacks if s.id == stack_id), None)
    if stack is None or not stack.headers:
        return None
    ds = pydicom.dcmread(stack.headers[0].path, stop_before_pixels=True, force=True, specific_tags=["FrameOfReferenceUID"])
    return str(ds.get("FrameOfReferenceUID", "") or "") or None


# -- where the image's slices are -------------------------------------------------------------------


@dataclass
class _Grid:
    """The slices frames are placed on: the image grid itself, or the acquired slices of an
    irregular stack (``positions``, LPS mm, in array order) with the grid's in-plane axes."""

    geometry: Geometry
    positions: np.ndarray | None = None
    regularize: bool = False

    @classmethod
    def of(cls, geometry: Geometry, metadata: dict, notes: list[str]) -> _Grid:
        positions = metadata.get("slice_positions")
        if metadata.get("regularized") and positions is not None:
            return cls(geometry, np.asarray(positions, float), regularize=True)
        if metadata.get("regular_geometry") is False and positions is not None:
            positions = np.asarray(positions, float)
            if len(positions) != geometry.shape[0]:
                raise LabelError("the image's slice positions do not match its array (was it changed since loading?)")
            notes.append("the image is an irregular raw stack: segments placed on its acquired slices by position "
                         "(its geometry is approximate, as the image's)")  # fmt: skip
            return cls(geometry, positions)
        return cls(geometry)

    @property
    def shape(self) -> tuple[int, int, int]:
        """(z, y, x) of the array frames are placed into (the acquired slices when regularizing)."""
        nz = len(self.positions) if self.positions is not None else self.geometry.shape[0]
        return (nz, *self.geometry.shape[1:])

    def to_index(self, points: np.ndarray) -> np.ndarray:
        """Continuous (i, j, k) of LPS points (n, 3) on one plane parallel to the slices."""
        if self.positions is None:
            return self.geometry.physical_to_index(points)
        normal = self.geometry.direction[:, 2]
        d = (self.positions - self.positions[0]) @ normal
        k = int(np.argmin(np.abs(d - float(np.mean((points - self.positions[0]) @ normal)))))
        steps = np.abs(np.diff(d))
        local = min(steps[max(k - 1, 0) : k + 1]) if len(steps) else self.geometry.spacing[2]
        plane = self.geometry.replace(origin=self.positions[k], spacing=(*self.geometry.spacing[:2], max(local, 1e-6)))
        index = plane.physical_to_index(points)
        index[:, 2] += k
        return index


@dataclass(frozen=True)
class _Placement:
    """Where a frame goes: slice ``k``, first row ``j`` and column ``i`` after orienting the frame
    (``transpose``, then flips) so that its rows run along j and its columns along i."""

    k: int
    j: int
    i: int
    transpose: bool
    flip_rows: bool
    flip_cols: bool

    def orient(self, pixels: np.ndarray) -> np.ndarray:
        if self.transpose:
            pixels = pixels.T
        if self.flip_rows:
            pixels = pixels[::-1, :]
        if self.flip_cols:
            pixels = pixels[:, ::-1]
        return pixels


def _place(grid: _Grid, position, orientation, spacing, rows: int, cols: int) -> _Placement | str:
    """The placement of a frame of ``rows`` x ``cols`` pixels, or why it is off the grid."""
    p0 = np.asarray(position, float)
    row_dir, col_dir = np.asarray(orientation[:3], float), np.asarray(orientation[3:], float)
    along_c, along_r = row_dir * float(spacing[1]), col_dir * float(spacing[0])  # PixelSpacing: (rows, columns)
    probes = np.array([p0, p0 + along_c, p0 + along_r, p0 + (cols - 1) * along_c, p0 + (rows - 1) * along_r,
                       p0 + (cols - 1) * along_c + (rows - 1) * along_r])  # fmt: skip
    idx = grid.to_index(probes)
    k = int(round(float(idx[0, 2])))
    if abs(idx[0, 2] - k) > GRID_TOLERANCE:
        return "between slices"
    if not 0 <= k < grid.shape[0]:
        return "beyond the image's slices"
    step_c, step_r = np.round(idx[1] - idx[0]), np.round(idx[2] - idx[0])
    axes = {tuple(step_c): None, tuple(step_r): None}
    units = {(1.0, 0.0, 0.0), (-1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, -1.0, 0.0)}
    if len(axes) != 2 or not all(a in units for a in axes) or abs(step_c[0]) == abs(step_r[0]):
        return "on another pixel grid or orientation"
    base = np.round(idx[0])
    corners = [(0, 0), (1, 0), (0, 1), (cols - 1, 0), (0, rows - 1), (cols - 1, rows - 1)]
    expected = np.array([base + c * step_c + r * step_r for c, r in corners])
    if np.abs(idx - expected).max() > GRID_TOLERANCE:
        return "on another pixel grid or orientation"
    transpose = step_c[0] == 0  # the frame's columns run along j
    c_axis, r_axis = (step_r, step_c) if transpose else (step_c, step_r)
    n_c, n_r = (rows, cols) if transpose else (cols, rows)
    i0 = int(base[0]) - (n_c - 1 if c_axis[0] < 0 else 0)
    j0 = int(base[1]) - (n_r - 1 if r_axis[1] < 0 else 0)
    return _Placement(k, j0, i0, transpose, bool(r_axis[1] < 0), bool(c_axis[0] < 0))


# -- frames -> segments ---------------------------------------------------------------------------


def _functional_item(seg, per_frame, k: int, keyword: str):
    """The first item of ``keyword`` in frame ``k``'s functional groups, else the shared ones."""
    groups = [per_frame[k]] if k < len(per_frame) else []
    shared = seg.get("SharedFunctionalGroupsSequence")
    groups += [shared[0]] if shared else []
    for group in groups:
        value = group.get(keyword)
        if value:
            return value[0]
    return None


class _FrameReader:
    """Places each frame of a SEG on the grid; collects pieces per segment and what fell off."""

    def __init__(self, hd, seg, grid: _Grid, threshold: float, detail: str):
        self.seg, self.grid, self.threshold, self.detail = seg, grid, threshold, detail
        kind = str(seg.SegmentationType).upper()
        self.kind = kind
        self.labelmap = kind == "LABELMAP"
        self.max_fraction = float(seg.get("MaximumFractionalValue") or 1) if kind == "FRACTIONAL" else 1.0
        self.numbers = [int(n) for n in seg.segment_numbers]
        self.carrier_values = [n for n in self.numbers if n != 0]
        self.descriptions = {int(d.SegmentNumber): d for d in seg.SegmentSequence}
        self.pieces: dict[int, list[tuple[_Placement, np.ndarray]]] = defaultdict(list)
        self.labels: np.ndarray | None = None  # LABELMAP: stored values on the (acquired) grid
        self.off: dict[int | None, Counter] = defaultdict(Counter)  # segment -> reason -> frames
        self.off_voxels: Counter = Counter()
        self.cropped: Counter = Counter()
        self.empty_off = 0
        self.placed = 0

    def _frame_segment(self, per_frame, k: int) -> int | None:
        if self.labelmap:
            return None
        item = _functional_item(self.seg, per_frame, k, "SegmentIdentificationSequence")
        if item is None or "ReferencedSegmentNumber" not in item:
            raise DicomError(f"frame {k + 1} of {self.seg.number_of_frames} names no segment "
                             "(SegmentIdentificationSequence)", detail=self.detail)  # fmt: skip
        return int(item.ReferencedSegmentNumber)

    def _frame_geometry(self, per_frame, k: int):
        found = []
        for keyword, attribute in (("PlanePositionSequence", "ImagePositionPatient"),
                                   ("PlaneOrientationSequence", "ImageOrientationPatient"),
                                   ("PixelMeasuresSequence", "PixelSpacing")):  # fmt: skip
            item = _functional_item(self.seg, per_frame, k, keyword)
            if item is None or attribute not in item:
                raise UnsupportedDicomError(
                    f"frame {k + 1} of {self.seg.number_of_frames} has no {attribute} ({keyword}): "
                    "its place on the image grid is unknown",
                    hint="MedPrep places SEG frames by their plane positions in patient space",
                    detail=self.detail,
                )
            found.append(tuple(float(v) for v in item[attribute]))
        return found

    def place_all(self) -> None:
        seg = self.seg
        per_frame = seg.get("PerFrameFunctionalGroupsSequence") or []
        rows, cols = int(seg.Rows), int(seg.Columns)
        placements: dict[tuple, _Placement | str] = {}
        if self.labelmap:
            self.labels = np.zeros(self.grid.shape, np.uint16 if int(seg.BitsAllocated) > 8 else np.uint8)
        for k in range(seg.number_of_frames):
            number = self._frame_segment(per_frame, k)
            where = tuple(self._frame_geometry(per_frame, k))
            if where not in placements:
                placements[where] = _place(self.grid, *where, rows, cols)
            placement = placements[where]
            pixels = seg.get_stored_frame(k, as_index=True)
            value = self._frame_values(pixels)
            voxels = int(np.count_nonzero(self._carriers(value)))
            if isinstance(placement, str):
                if voxels == 0:
                    self.empty_off += 1
                else:
                    self._count_off(number, value, placement)
                continue
            self.placed += 1
            self._store(number, placement, value)

    def _frame_values(self, pixels: np.ndarray) -> np.ndarray:
        if self.labelmap:
            return pixels
        if self.kind == "FRACTIONAL":
            if pixels.max(initial=0) > self.max_fraction:
                raise DicomError("a FRACTIONAL SEG holds values above its declared maximum", detail=self.detail)
            return pixels.astype(np.float32) / np.float32(self.max_fraction)
        return pixels.astype(bool)

    def _carriers(self, value: np.ndarray) -> np.ndarray:
        """Where a frame holds segment voxels (LABELMAP: a segment's value other than 0)."""
        if self.labelmap:
            return np.isin(value, self.carrier_values)
        return value != 0

    def _count_off(self, number: int | None, value: np.ndarray, reason: str) -> None:
        if self.labelmap:
            for n, count in zip(*np.unique(value[self._carriers(value)], return_counts=True)):
                self.off[int(n)][reason] += 1
                self.off_voxels[int(n)] += int(count)
        else:
            self.off[number][reason] += 1
            self.off_voxels[number] += int(np.count_nonzero(self._mask_of(value)))

    def _mask_of(self, value: np.ndarray) -> np.ndarray:
        return value >= self.threshold if self.kind == "FRACTIONAL" else value.astype(bool)

    def _store(self, number: int | None, placement: _Placement, value: np.ndarray) -> None:
        oriented = placement.orient(value)
        ny, nx = self.grid.shape[1:]
        j0, i0 = max(placement.j, 0), max(placement.i, 0)
        j1, i1 = min(placement.j + oriented.shape[0], ny), min(placement.i + oriented.shape[1], nx)
        inside = oriented[max(j0 - placement.j, 0) : j1 - placement.j, max(i0 - placement.i, 0) : i1 - placement.i]
        if j1 <= j0 or i1 <= i0:
            inside = oriented[:0, :0]
        self._count_cropped(number, oriented, inside)
        if inside.size == 0:
            return
        if self.labelmap:
            target = self.labels[placement.k, j0:j1, i0:i1]
            np.copyto(target, inside.astype(target.dtype), where=inside != 0)
        else:
            self.pieces[number].append(((placement.k, j0, i0), np.ascontiguousarray(inside)))

    def _count_cropped(self, number: int | None, oriented: np.ndarray, inside: np.ndarray) -> None:
        if self.labelmap:
            total = Counter(dict(zip(*np.unique(oriented[self._carriers(oriented)], return_counts=True))))
            total.subtract(Counter(dict(zip(*np.unique(inside[self._carriers(inside)], return_counts=True)))))
            for n, count in total.items():
                if count:
                    self.cropped[int(n)] += int(count)
        else:
            lost = int(np.count_nonzero(self._mask_of(oriented))) - int(np.count_nonzero(self._mask_of(inside)))
            if lost:
                self.cropped[number] += lost

    # -- the segments -------------------------------------------------------------------------

    def _on_raw_grid(self, number: int) -> np.ndarray:
        """Segment ``number``'s values (bool mask or float fraction) on the placement grid."""
        if self.labelmap:
            return self.labels == number
        pieces = self.pieces.get(number, [])
        out = np.zeros(self.grid.shape, np.float32 if self.kind == "FRACTIONAL" else bool)
        for (k, j, i), piece in pieces:
            view = out[k, j : j + piece.shape[0], i : i + piece.shape[1]]
            np.maximum(view, piece, out=view)
        return out

    def segments(self, keep_fractions: bool, notes: list[str]) -> list[Segment]:
        out = []
        for number in self.numbers:
            desc = self.descriptions.get(number)
            name = str(desc.get("SegmentLabel", "") or f"segment {number}") if desc is not None else f"segment {number}"
            values = self._on_raw_grid(number)
            fraction = values if self.kind == "FRACTIONAL" else None
            if self.grid.regularize:
                values = self._regularized(values.astype(np.float32))
                fraction = values if self.kind == "FRACTIONAL" else None
            mask = values >= self.threshold if values.dtype != bool else values
            seg_warnings = self._segment_warnings(number, name)
            if not mask.any():
                seg_warnings.append(f"segment {number} ({name!r}): no voxels on the image grid (empty)")
            terminology = _terminology(desc)
            if keep_fractions and fraction is not None:
                segment = _segment_with_fraction(number, name, mask, fraction, terminology, seg_warnings)
            else:
                segment = Segment.from_full_mask(number, name, mask, terminology=terminology, warnings=seg_warnings)
            notes.extend(seg_warnings)
            out.append(segment)
        return out

    def _segment_warnings(self, number: int, name: str) -> list[str]:
        out = []
        if self.off.get(number):
            reasons = ", ".join(f"{r}: {n}" for r, n in sorted(self.off[number].items()))
            frames = sum(self.off[number].values())
            out.append(f"segment {number} ({name!r}): {frames} frame{'s' if frames > 1 else ''} off the image grid "
                       f"({reasons}) left out, {self.off_voxels[number]} voxels")  # fmt: skip
        if self.cropped.get(number):
            out.append(f"segment {number} ({name!r}): {self.cropped[number]} voxels outside the image's field of view left out")
        return out

    def _regularized(self, values: np.ndarray) -> np.ndarray:
        """Resample values on the acquired slices onto the loader's regular grid, as the image was."""
        from ..dicom.regularize import measure, regularize

        geometry = self.grid.geometry
        positions = self.grid.positions
        row_dir, col_dir, normal = (geometry.direction[:, c] for c in range(3))
        stack = measure(positions, normal)
        out, dz, z0, (ox, oy) = regularize(values, stack, row_dir, col_dir, geometry.spacing[:2], 0.0)
        sx, sy = geometry.spacing[:2]
        origin = positions[0] + z0 * normal + ox * sx * row_dir + oy * sy * col_dir
        nz, ny, nx = geometry.shape
        if out.shape[0] != nz or abs(dz - geometry.spacing[2]) > 1e-6 or not np.allclose(origin, geometry.origin, atol=1e-4):
            raise MedPrepError("the regularized grid of the SEG differs from the image's (a MedPrep bug)")
        return np.ascontiguousarray(out[:, :ny, :nx])


def _terminology(desc) -> tuple[tuple[str, str, str], ...]:
    out = []
    for keyword in ("SegmentedPropertyCategoryCodeSequence", "SegmentedPropertyTypeCodeSequence"):
        items = desc.get(keyword) if desc is not None else None
        if items:
            code = items[0]
            out.append((str(code.get("CodingSchemeDesignator", "")), str(code.get("CodeValue", "") or code.get("LongCodeValue", "")
                        or code.get("URNCodeValue", "")), str(code.get("CodeMeaning", ""))))  # fmt: skip
    return tuple(out)


def _segment_with_fraction(number, name, mask, fraction, terminology, seg_warnings) -> Segment:
    """A segment whose box spans every voxel with a fraction > 0 (the mask may be smaller)."""
    carrier = Segment.from_full_mask(number, name, fraction > 0)
    if carrier.empty:
        return Segment.from_full_mask(number, name, mask, fraction=fraction, terminology=terminology, warnings=seg_warnings)
    crop = carrier.slices()
    return Segment(number, name, carrier.box, np.ascontiguousarray(mask[crop]),
                   np.ascontiguousarray(fraction[crop], np.float32), terminology, tuple(seg_warnings))  # fmt: skip


def _report_off_grid(reader: _FrameReader, policy: str, notes: list[str], detail: str) -> None:
    off_frames = sum(sum(c.values()) for c in reader.off.values())
    cropped = sum(reader.cropped.values())
    if reader.placed == 0 and off_frames:
        reasons = Counter()
        for c in reader.off.values():
            reasons.update(c)
        listed = ", ".join(f"{r}: {n}" for r, n in sorted(reasons.items()))
        raise LabelError(
            f"none of the SEG's frames with segment voxels lies on the image grid ({listed})",
            hint="give the image series the SEG was made on",
            detail=detail,
        )
    if policy == "reject" and (off_frames or cropped):
        raise LabelError(
            f"{off_frames} frames of the SEG lie off the image grid and {cropped} voxels outside its field of view",
            hint="use off_grid='warn' to leave them out",
            detail=detail,
        )
    if reader.empty_off:
        notes.append(f"{reader.empty_off} empty frames off the image grid ignored")
