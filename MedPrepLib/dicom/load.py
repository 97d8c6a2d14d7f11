"""Loading an image stack into a :class:`~MedPrepLib.volume.Volume` with exact geometry.

Slices are sorted by ImagePositionPatient projected on the slice normal (never by file name
or InstanceNumber). The volume's index axes are: i along the rows (ImageOrientationPatient
row cosines), j along the columns, k along the normal ``row x col``, ordered by increasing
position; the origin is the first slice's ImagePositionPatient (LPS mm). Values are the
Modality LUT output ``stored * RescaleSlope + RescaleIntercept`` per slice (see
:mod:`.pixels`); PixelPaddingValue is recorded in the metadata, not masked.

Irregular stacks (gantry tilt, missing slices, uneven spacing; see :mod:`.regularize`)
follow the geometry policy: ``"resample"`` (default) puts them on an orthogonal equidistant
grid with a warning naming the numbers; ``"reject"`` raises :class:`GeometryError`.
``regularize=False`` returns the raw stack instead, its exact (possibly sheared) geometry in
``metadata["affine_lps"]`` and per-slice positions in ``metadata["slice_positions"]``.

4D stacks become (z, y, x, t) volumes, time points last.

File and folder names often carry patient names, so nothing this module returns or writes
names a file: warnings, error messages and provenance speak of "slice 17 of 54 (instance 18)"
(the index in the sorted stack, 1-based, and the InstanceNumber; "frame N" inside a
multi-frame object). The file names go to DEBUG log records and to an error's ``detail``,
which the command line shows only with ``--verbose``.
"""

from __future__ import annotations

import copy
import logging
import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import (
    ArgumentError,
    DicomError,
    GeometryError,
    MedPrepError,
)
from ..geometry import Geometry
from ..progress import ProgressCallback, as_progress
from ..volume import Volume
from .group import ORIENTATION_TOL, POSITION_TOL_MM, stack_refs
from .pixels import allocate_stack, apply_modality_lut, read_frames_into, stored_dtype, tile_shape
from .regularize import EXACT_MM, MAX_GAP_STEPS, describe_problem, gap_in_steps, measure
from .regularize import regularize as resample_onto_regular_grid
from .stack import FileHeader, FrameGeometry, Stack

log = logging.getLogger(__name__)

GEOMETRY_POLICIES = ("resample", "reject")


@dataclass
class _Slice:
    header: FileHeader
    frame: FrameGeometry
    position: np.ndarray
    distance: float
    t_value: float | None
    label: str = ""  # "slice 17 of 54 (instance 18)", set once the stack is sorted

    @property
    def file(self) -> str:
        """The file name (for DEBUG records and error details only, never for messages)."""
        name = os.path.basename(self.header.path)
        return f"{name} frame {self.frame.frame_index + 1}" if _is_multiframe(self.header) else name


def _is_multiframe(h: FileHeader) -> bool:
    return h.is_multiframe and not h.is_mosaic


def _identity(h: FileHeader, f: FrameGeometry | None) -> str:
    """What tells a slice apart without its file name: "instance 18", "frame 3", "instance 2, tile 5"."""
    if _is_multiframe(h) and f is not None:
        return f"frame {f.frame_index + 1}"
    parts = [] if h.instance_number is None else [f"instance {h.instance_number}"]
    if h.is_mosaic and f is not None:
        parts.append(f"tile {f.frame_index + 1}")
    return ", ".join(parts)


def _unsorted_label(h: FileHeader, f: FrameGeometry | None) -> str:
    """A slice that cannot be placed in the sorted stack (its geometry is missing)."""
    return _identity(h, f) or "a slice without InstanceNumber"


def _labels(slices: Sequence[_Slice], limit: int = 4) -> str:
    labels = [s.label or _unsorted_label(s.header, s.frame) for s in slices]
    if len(labels) > limit:
        return ", ".join(labels[:limit]) + f" and {len(labels) - limit} more"
    return ", ".join(labels)


def _files(slices: Sequence[_Slice]) -> str:
    """``detail`` of an error: which file each named slice is in (shown only with --verbose)."""
    return "; ".join(f"{s.label or _unsorted_label(s.header, s.frame)}: {s.file}" for s in slices)


def _log_files(stack_id: str, text: str, slices: Sequence[_Slice]) -> None:
    """A DEBUG record naming the files of the slices a warning speaks of."""
    named = [s for s in slices if s.label and s.label in text]
    if named:
        log.debug("%s: files of the slices named in %r: %s", stack_id, text[:60], _files(named))


def check_geometry_policy(policy: str) -> None:
    if policy not in GEOMETRY_POLICIES:
        raise ArgumentError(f"geometry_policy must be one of {', '.join(GEOMETRY_POLICIES)}, got {policy!r}")


def _collect(stack: Stack) -> list[_Slice]:
    """One entry per 2D slice (mosaic tiles expanded), with geometry checked."""
    entries: list[tuple[FileHeader, FrameGeometry | None, float | None]] = []
    for ref in stack_refs(stack):
        t = ref.key_value(stack.temporal_key) if stack.temporal_key else None
        if ref.header.is_mosaic:
            if not ref.header.frames:
                raise GeometryError(
                    f"Siemens mosaic ({_unsorted_label(ref.header, None)}) without usable tile geometry "
                    "(NumberOfImagesInMosaic, position, orientation or slice spacing missing); "
                    "refusing to return the tile image as a volume",
                    detail=os.path.basename(ref.header.path),
                )
            entries.extend((ref.header, f, t) for f in ref.header.frames)
        else:
            entries.append((ref.header, ref.frame, t))
    missing = [(h, f) for h, f, _ in entries if f is None or f.position is None or f.orientation is None]
    if missing:
        what = []
        if any(f is None or f.position is None for _, f in missing):
            what.append("ImagePositionPatient")
        if any(f is None or f.orientation is None for _, f in missing):
            what.append("ImageOrientationPatient")
        labels = [_unsorted_label(h, f) for h, f in missing]
        shown = ", ".join(labels[:4]) + (f" and {len(labels) - 4} more" if len(labels) > 4 else "")
        raise GeometryError(
            f"{' and '.join(what)} missing in {len(missing)} of {len(entries)} slice(s): {shown}",
            hint="the slices cannot be placed in space; MedPrep never assumes an identity geometry",
            detail="; ".join(f"{label}: {os.path.basename(h.path)}" for label, (h, _) in zip(labels, missing)),
        )
    first = np.asarray(entries[0][1].orientation)
    normal = np.cross(first[:3], first[3:])
    norm = np.linalg.norm(normal)
    if norm < 0.5:
        raise GeometryError(
            f"ImageOrientationPatient {tuple(first)} of {_unsorted_label(entries[0][0], entries[0][1])} "
            "has non-orthogonal row and column directions",
            detail=os.path.basename(entries[0][0].path),
        )
    normal /= norm
    out = []
    tolerance = 2 * ORIENTATION_TOL  # grouping clusters within ORIENTATION_TOL of a representative
    for h, f, t in entries:
        if np.max(np.abs(np.asarray(f.orientation) - first)) > tolerance:
            h0, f0 = entries[0][0], entries[0][1]
            raise GeometryError(
                "slices of one stack have different orientations "
                f"({_unsorted_label(h0, f0)} and {_unsorted_label(h, f)})",
                detail=f"{os.path.basename(h0.path)}, {os.path.basename(h.path)}",
            )
        p = np.asarray(f.position, dtype=np.float64)
        out.append(_Slice(h, f, p, float(p @ normal), t))
    return out


def _spacing(slices: list[_Slice]) -> tuple[float, float]:
    """(row spacing, column spacing) in mm, DICOM order; equal across slices."""
    values = {s.frame.pixel_spacing for s in slices}
    if None in values:
        without = [s for s in slices if s.frame.pixel_spacing is None]
        raise GeometryError(f"PixelSpacing missing in {len(without)} of {len(slices)} slices", detail=_files(without))
    first = slices[0].frame.pixel_spacing
    for v in values:
        if max(abs(v[0] - first[0]), abs(v[1] - first[1])) > 1e-4:
            raise GeometryError(f"slices of one stack have different pixel spacings ({sorted(values)})")
    return float(first[0]), float(first[1])


def _order(slices: list[_Slice], n_t: int) -> list[list[_Slice]]:
    """Slices grouped by position (sorted along the normal); each group sorted by time."""
    slices = sorted(slices, key=lambda s: (s.distance, s.t_value if s.t_value is not None else 0.0, s.header.path))
    groups: list[list[_Slice]] = []
    for s in slices:
        if groups and s.distance - groups[-1][0].distance <= POSITION_TOL_MM:
            groups[-1].append(s)
        else:
            groups.append([s])
    for k, g in enumerate(groups):
        for s in g:
            who = _identity(s.header, s.frame)
            s.label = f"slice {k + 1} of {len(groups)}" + (f" ({who})" if who else "")
    if n_t > 1:
        bad = [g for g in groups if len({s.t_value for s in g}) != n_t]
        if bad:
            raise GeometryError(
                f"4D stack incomplete: {len(bad)} of {len(groups)} slice positions do not have {n_t} time points "
                f"(e.g. {_labels(bad[0])})",
                detail=_files(bad[0]),
            )
        for g in groups:
            g.sort(key=lambda s: (s.t_value, s.header.path))
    return groups


def _lut_params(s: _Slice) -> tuple[float, float]:
    slope = s.frame.rescale_slope if s.frame.rescale_slope is not None else s.header.rescale_slope
    intercept = s.frame.rescale_intercept if s.frame.rescale_intercept is not None else s.header.rescale_intercept
    return (1.0 if slope is None else float(slope)), (0.0 if intercept is None else float(intercept))


def _read_pixels(slots: list[_Slice], shape: tuple[int, int], progress) -> np.ndarray:
    """Stored values of every slot into one preallocated (slots, rows, cols) buffer."""
    try:
        dtype = np.result_type(*{stored_dtype(s.header) for s in slots})
    except MedPrepError as exc:
        raise _in_slice_terms(exc, [s for s in slots if s.header.path == exc.path] or slots[:1]) from exc
    try:
        buf = allocate_stack([s.header for s in slots], (len(slots), *shape), dtype)  # checks data and budget first
    except MedPrepError as exc:
        of_file = [s for s in slots if s.header.path == exc.path]
        raise (_in_slice_terms(exc, of_file) if of_file else exc) from exc
    per_file: dict[str, list[tuple[int, int]]] = defaultdict(list)
    headers: dict[str, FileHeader] = {}
    for slot, s in enumerate(slots):
        per_file[s.header.path].append((slot, s.frame.frame_index))
        headers[s.header.path] = s.header
    n = len(per_file)
    for done, (path, items) in enumerate(per_file.items()):
        h = headers[path]
        slots_, frames = [i for i, _ in items], [f for _, f in items]
        try:
            if tile_shape(h) != shape:
                raise DicomError(f"slice size {tile_shape(h)} differs from the stack's {shape}", path=path)
            contiguous = slots_ == list(range(slots_[0], slots_[0] + len(slots_)))
            if contiguous and stored_dtype(h) == dtype:
                read_frames_into(h, frames, buf[slots_[0] : slots_[0] + len(slots_)])
            else:
                tmp = np.empty((len(frames), *shape), dtype=stored_dtype(h))
                read_frames_into(h, frames, tmp)
                buf[slots_] = tmp
        except MedPrepError as exc:
            raise _in_slice_terms(exc, [slots[i] for i in slots_]) from exc
        if progress is not None and (done % 16 == 0 or done == n - 1):
            progress.update("reading pixels", (done + 1) / n)
    return buf


def _in_slice_terms(exc: MedPrepError, slices: Sequence[_Slice]) -> MedPrepError:
    """The same error about slices of the stack instead of a file: the file moves to ``detail``.

    ``path`` is cleared; :func:`load_stack` sets it to where the user pointed.
    """
    # Mosaic tiles of one file: name the file's instance once, not every tile
    who = _identity(slices[0].header, None) if slices[0].header.is_mosaic else _labels(slices, limit=2)
    new = copy.copy(exc)
    new.message = f"{who or 'a slice'}: {exc.message}"
    new.path = None
    name = os.path.basename(exc.path) if exc.path else slices[0].file
    new.detail = f"{who}: {name}" + (f"; {exc.detail}" if exc.detail else "")
    new.args = (str(new),)
    return new


def _drop_duplicates(
    groups: list[list[_Slice]], buf: np.ndarray, warnings: list[str], temporal_key: str | None, stack_id: str
) -> tuple[list[_Slice], np.ndarray]:
    """Units (one position, and one time point in 4D) holding several slices, ``buf`` holding
    their pixels in the same order: equal pixels -> keep one; else refuse."""
    keep: list[int] = []
    slots: list[_Slice] = []
    slot = 0
    for g in groups:
        keep.append(slot)
        slots.append(g[0])
        for j in range(1, len(g)):
            same_pixels = np.array_equal(buf[slot], buf[slot + j]) and _lut_params(g[0]) == _lut_params(g[j])
            if not same_pixels:
                where = f"same position ({g[0].distance:.3f} mm along the normal)"
                why = "no echo or temporal key tells them apart"
                if temporal_key is not None:
                    where = (
                        f"same position ({g[0].distance:.3f} mm along the normal) and {temporal_key} {g[0].t_value:g}"
                    )
                    why = "so one 4D time point would hold two different images"
                raise DicomError(
                    f"two slices at the {where} have different pixels, {why}: "
                    f"{g[0].label} and {_identity(g[j].header, g[j].frame) or 'another slice without InstanceNumber'}",
                    hint="remove one of the files or load them as separate series; --verbose names the files",
                    detail=f"{g[0].file}, {g[j].file}",
                )
            who = _identity(g[j].header, g[j].frame)
            warnings.append(
                f"dropped exact duplicate slice{f' ({who})' if who else ''}: same position and pixels as {g[0].label}"
            )
            log.debug("%s: dropped duplicate %s of %s (%s)", stack_id, g[j].file, g[0].file, g[0].label)
        slot += len(g)
    if len(keep) != buf.shape[0]:
        buf = buf[keep]
    return slots, buf


def _air_value(array: np.ndarray) -> float:
    """Value for voxels outside the data: the smallest value of the stack (air, background)."""
    return float(array.min()) if array.size else 0.0


def load_stack(
    stack: Stack,
    *,
    geometry_policy: str = "resample",
    progress: ProgressCallback | None = None,
    regularize: bool = True,
    where: str | os.PathLike | None = None,
) -> Volume:
    """Load one stack into a Volume (LPS, (z, y, x) or (z, y, x, t), values after Modality LUT).

    Parameters
    ----------
    geometry_policy:
        ``"resample"`` (default) regularizes tilted / unevenly spaced stacks onto an orthogonal
        equidistant grid (warning in metadata); ``"reject"`` raises :class:`GeometryError`.
    regularize:
        ``False`` returns the raw stack whatever its geometry; ``metadata["affine_lps"]`` then
        holds its exact index-to-LPS matrix (sheared for a tilt) when the positions lie on one.
    where:
        What errors name as their ``path``: the input the user gave (default: ``"stack <id>"``).
        A folder inside the input is never named (it is often called after the patient);
        errors name slices, and their ``detail`` the files.
    """
    check_geometry_policy(geometry_policy)
    try:
        return _load_stack(stack, geometry_policy, as_progress(progress), regularize)
    except MedPrepError as exc:
        if exc.path is not None and exc.path not in stack.paths:
            raise
        new = exc if exc.path is None else _in_slice_terms(exc, _slices_of_file(stack, exc.path))
        new.path = os.fspath(where) if where is not None else f"stack {stack.id}"
        new.args = (str(new),)
        if new is exc:
            raise
        raise new from exc


def _slices_of_file(stack: Stack, path: str) -> list[_Slice]:
    h = next(h for h in stack.headers if h.path == path)
    return [_Slice(h, f, np.zeros(3), 0.0, None) for f in (h.frames[:1] or [FrameGeometry(None, None, None)])]


def _load_stack(stack: Stack, geometry_policy: str, prog, regularize: bool) -> Volume:
    slices = _collect(stack)
    row_spacing, col_spacing = _spacing(slices)
    groups = _order(slices, stack.n_timepoints)
    warnings = list(stack.warnings)
    n_t = stack.n_timepoints
    first = slices[0].frame.orientation
    row_dir, col_dir = np.array(first[:3], float), np.array(first[3:], float)
    normal = np.cross(row_dir, col_dir)
    normal /= np.linalg.norm(normal)
    shape = tile_shape(slices[0].header)

    # units: the slices that must end up as one 2D image (one per position and time point)
    if n_t == 1:
        units = groups
    else:
        units = [[s for s in g if s.t_value == t] for g in groups for t in sorted({s.t_value for s in g})]
    slots = [s for u in units for s in u]
    buf = _read_pixels(slots, shape, prog.sub(0.0, 0.9))
    if any(len(u) > 1 for u in units):
        slots, buf = _drop_duplicates(units, buf, warnings, stack.temporal_key, stack.id)
    if n_t == 1:
        groups = [[s] for s in slots]
    else:
        groups = [slots[k * n_t : (k + 1) * n_t] for k in range(len(groups))]

    slopes = np.array([_lut_params(s)[0] for s in slots])
    intercepts = np.array([_lut_params(s)[1] for s in slots])
    without = [s for s in slots if s.frame.rescale_slope is None and s.header.rescale_slope is None]
    if 0 < len(without) < len(slots):
        warnings.append(
            f"RescaleSlope missing in {len(without)} of {len(slots)} slices "
            f"({_labels(without)}; identity used there, so values may not match the others)"
        )
    array = apply_modality_lut(buf, slopes, intercepts)
    del buf
    n_z = len(groups)
    if n_t > 1:
        array = np.ascontiguousarray(np.moveaxis(array.reshape(n_z, n_t, *shape), 1, -1))

    positions = np.array([g[0].position for g in groups])
    array, geometry, metadata = _place(
        array,
        positions,
        [g[0] for g in groups],
        groups[0][0],
        (row_dir, col_dir, normal),
        (col_spacing, row_spacing),
        geometry_policy=geometry_policy,
        regularize=regularize,
        warnings=warnings,
    )
    for w in warnings:
        log.warning("%s: %s", stack.id, w)
        _log_files(stack.id, w, slots)
    metadata.update(_describe(stack, slots, slopes, intercepts, array, geometry_policy, warnings))
    prog.update("loading done", 1.0)
    return Volume(array, geometry, metadata=metadata)


def _place(
    array: np.ndarray,
    positions: np.ndarray,
    slices: list[_Slice],
    first: _Slice,
    axes: tuple[np.ndarray, np.ndarray, np.ndarray],
    spacing_xy: tuple[float, float],
    *,
    geometry_policy: str,
    regularize: bool,
    warnings: list[str],
) -> tuple[np.ndarray, Geometry, dict]:
    """The grid of a sorted stack: exact when regular, else regularized / refused / raw.

    ``positions`` (n, 3) are the slices' ImagePositionPatient (LPS mm) in array order, ``slices``
    the slices there (their labels name them in messages), ``axes`` the row, column and normal unit vectors, ``spacing_xy`` (column, row) spacing mm.
    Returns the (possibly resampled) array, its Geometry and geometry metadata.
    """
    row_dir, col_dir, normal = axes
    n_z = len(positions)
    geo = measure(positions, normal)
    metadata: dict = {"warnings": warnings, "slice_positions": positions.tolist()}
    if n_z == 1:
        thickness = first.frame.slice_thickness or first.header.slice_thickness
        dz = float(thickness) if thickness and thickness > 0 else 1.0
        metadata["z_spacing_source"] = "SliceThickness" if thickness and thickness > 0 else "default 1.0 mm"
        warnings.append(f"single slice: z spacing {dz:g} mm taken from {metadata['z_spacing_source']}")
    else:
        dz = geo.step
        if dz <= 0:
            raise GeometryError("slices do not advance along the slice normal")
    regular = n_z == 1 or geo.regular
    metadata["regular_geometry"] = bool(regular)
    if regular and n_z > 1 and geo.max_deviation > EXACT_MM:
        warnings.append(
            f"slice positions deviate up to {geo.max_deviation:.4f} mm from a regular grid "
            "(below the resampling threshold; geometry kept as regular)"
        )
    if not geo.uneven and not geo.irregular_drift:
        # exact index-to-LPS matrix; its third column is sheared for a gantry tilt
        exact = np.eye(4)
        exact[:3, 0], exact[:3, 1] = row_dir * spacing_xy[0], col_dir * spacing_xy[1]
        exact[:3, 2] = normal * dz + (geo.drift_per_step if n_z > 1 else 0.0)
        exact[:3, 3] = positions[0]
        metadata["affine_lps"] = exact.tolist()
    origin = positions[0]
    metadata["regularized"] = False
    if not regular:
        problem = describe_problem(geo, [s.label for s in slices])
        named = _files([s for s in slices if s.label in problem]) or None
        if regularize and geometry_policy == "reject":
            raise GeometryError(
                f"irregular slice geometry: {problem}",
                hint="use geometry policy 'resample' to put the data on a regular grid",
                detail=named,
            )
        if regularize and gap_in_steps(geo) > MAX_GAP_STEPS:
            raise GeometryError(
                f"irregular slice geometry: {problem}; the widest gap spans {gap_in_steps(geo):.1f} slice steps, "
                f"more than the {MAX_GAP_STEPS:g} that resampling bridges without inventing anatomy",
                hint="the files hold separate ranges: load each range's files separately",
                detail=named,
            )
        if regularize:
            air = _air_value(array)
            array, dz, z0, (ox, oy) = resample_onto_regular_grid(array, geo, row_dir, col_dir, spacing_xy, air)
            origin = positions[0] + z0 * normal + ox * spacing_xy[0] * row_dir + oy * spacing_xy[1] * col_dir
            grid = ""
            if geo.uneven and not geo.spacing.simple:
                grid = ", the finest regime's step (coarser regimes interpolated)"
                if z0 > EXACT_MM:
                    grid += f", starting {z0:.3f} mm past the first slice to stay on it"
            warnings.append(
                f"{problem}; resampled onto an orthogonal grid with {array.shape[0]} slices every {dz:.3f} mm"
                f"{grid} (value {air:g} outside the acquired data)"
            )
            metadata["regularized"] = True
        else:
            warnings.append(f"{problem}; raw stack returned (geometry approximate, see affine_lps / slice_positions)")
    geometry = Geometry(
        size=(array.shape[2], array.shape[1], array.shape[0]),
        spacing=(spacing_xy[0], spacing_xy[1], dz),
        origin=tuple(origin),
        direction=np.column_stack([row_dir, col_dir, normal]),
    )
    if metadata["regularized"]:
        metadata["affine_lps"] = geometry.affine_lps().tolist()
    return array, geometry, metadata


def _describe(stack, slots, slopes, intercepts, array, policy, warnings) -> dict:
    # Provenance is written next to the outputs: instances by UID (and frame), never by file name.
    instances = []
    seen: set[int] = set()
    mosaic = stack.kind == "mosaic"  # a walk over every header: once, not once per slice
    for s in slots:
        if mosaic:  # tiles share a file: list each mosaic once, in order
            if id(s.header) in seen:
                continue
            seen.add(id(s.header))
        item = {"sop_instance_uid": s.header.sop_instance_uid}
        if _is_multiframe(s.header):
            item["frame"] = s.frame.frame_index
        instances.append(item)
    same = bool(np.all(slopes == slopes[0]) and np.all(intercepts == intercepts[0]))
    rescale = {
        "slope": float(slopes[0]) if same else slopes.tolist(),
        "intercept": float(intercepts[0]) if same else intercepts.tolist(),
        "varies_per_slice": not same,
        "output_dtype": str(array.dtype),
    }
    padding = {s.header.pixel_padding_value for s in slots} - {None}
    h0 = slots[0].header
    meta = {
        "stack_id": stack.id,
        "series_instance_uid": stack.series_instance_uid,
        "modality": stack.modality,
        "series_description": stack.series_description,
        "n_timepoints": stack.n_timepoints,
        "temporal_key": stack.temporal_key,
        "transfer_syntax_uid": h0.transfer_syntax_uid,
        "pixel_padding_value": padding.pop() if len(padding) == 1 else (sorted(padding) or None),
        # VOI window of the first slice, in output units (after rescale): the recipe's window step
        "window_center": list(h0.window_center),
        "window_width": list(h0.window_width),
        "values": "stored * RescaleSlope + RescaleIntercept (padding not masked)",
    }
    meta["provenance"] = {
        "source_instances": instances,
        "rescale": rescale,
        "geometry_policy": policy,
        "warnings": list(warnings),
    }
    return meta
