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
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import DicomError, GeometryError, InputError, SeriesSelectionError, UnsupportedDicomError
from ..geometry import Geometry
from ..progress import ProgressCallback, as_progress
from ..volume import Volume
from .group import ORIENTATION_TOL, POSITION_TOL_MM, stack_refs
from .pixels import apply_modality_lut, read_frames_into, stored_dtype, tile_shape
from .regularize import EXACT_MM, MAX_GAP_STEPS, describe_problem, gap_in_steps, measure
from .regularize import regularize as resample_onto_regular_grid
from .stack import FileHeader, FrameGeometry, Skipped, Stack

log = logging.getLogger(__name__)

GEOMETRY_POLICIES = ("resample", "reject")


@dataclass
class _Slice:
    header: FileHeader
    frame: FrameGeometry
    position: np.ndarray
    distance: float
    t_value: float | None


def _check_policy(policy: str) -> None:
    if policy not in GEOMETRY_POLICIES:
        raise ValueError(f"geometry_policy must be one of {GEOMETRY_POLICIES}, got {policy!r}")


def _names(paths: Sequence[str], limit: int = 4) -> str:
    names = [os.path.basename(p) for p in paths]
    if len(names) > limit:
        return ", ".join(names[:limit]) + f" and {len(names) - limit} more"
    return ", ".join(names)


def _collect(stack: Stack) -> list[_Slice]:
    """One entry per 2D slice (mosaic tiles expanded), with geometry checked."""
    entries: list[tuple[FileHeader, FrameGeometry | None, float | None]] = []
    for ref in stack_refs(stack):
        t = ref.key_value(stack.temporal_key) if stack.temporal_key else None
        if ref.header.is_mosaic:
            if not ref.header.frames:
                raise GeometryError(
                    "Siemens mosaic without usable tile geometry (NumberOfImagesInMosaic, position, "
                    "orientation or slice spacing missing); refusing to return the tile image as a volume",
                    path=ref.header.path,
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
        labels = [
            f"{h.path} (frame {f.frame_index + 1})" if h.is_multiframe and f is not None else h.path
            for h, f in missing
        ]
        raise GeometryError(
            f"{' and '.join(what)} missing in {len(missing)} of {len(entries)} slice(s): {_names(labels)}",
            path=os.path.dirname(missing[0][0].path),
            hint="the slices cannot be placed in space; MedPrep never assumes an identity geometry",
        )
    first = np.asarray(entries[0][1].orientation)
    normal = np.cross(first[:3], first[3:])
    norm = np.linalg.norm(normal)
    if norm < 0.5:
        raise GeometryError(
            f"ImageOrientationPatient {tuple(first)} has non-orthogonal row and column directions",
            path=entries[0][0].path,
        )
    normal /= norm
    out = []
    tolerance = 2 * ORIENTATION_TOL  # grouping clusters within ORIENTATION_TOL of a representative
    for h, f, t in entries:
        if np.max(np.abs(np.asarray(f.orientation) - first)) > tolerance:
            raise GeometryError(
                f"slices of one stack have different orientations ({_names([entries[0][0].path, h.path])})",
                path=h.path,
            )
        p = np.asarray(f.position, dtype=np.float64)
        out.append(_Slice(h, f, p, float(p @ normal), t))
    return out


def _spacing(slices: list[_Slice]) -> tuple[float, float]:
    """(row spacing, column spacing) in mm, DICOM order; equal across slices."""
    values = {s.frame.pixel_spacing for s in slices}
    if None in values:
        raise GeometryError(
            "PixelSpacing missing", path=next(s.header.path for s in slices if s.frame.pixel_spacing is None)
        )
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
    if n_t > 1:
        bad = [g for g in groups if len({s.t_value for s in g}) != n_t]
        if bad:
            raise GeometryError(
                f"4D stack incomplete: {len(bad)} of {len(groups)} slice positions do not have {n_t} time points "
                f"(e.g. {_names([s.header.path for s in bad[0]])})",
                path=os.path.dirname(bad[0][0].header.path),
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
    dtypes = {stored_dtype(s.header) for s in slots}
    dtype = np.result_type(*dtypes)
    buf = np.empty((len(slots), *shape), dtype=dtype)
    per_file: dict[str, list[tuple[int, int]]] = defaultdict(list)
    headers: dict[str, FileHeader] = {}
    for slot, s in enumerate(slots):
        per_file[s.header.path].append((slot, s.frame.frame_index))
        headers[s.header.path] = s.header
    n = len(per_file)
    for done, (path, items) in enumerate(per_file.items()):
        h = headers[path]
        if tile_shape(h) != shape:
            raise DicomError(f"slice size {tile_shape(h)} differs from the stack's {shape}", path=path)
        slots_, frames = [i for i, _ in items], [f for _, f in items]
        contiguous = slots_ == list(range(slots_[0], slots_[0] + len(slots_)))
        if contiguous and stored_dtype(h) == dtype:
            read_frames_into(h, frames, buf[slots_[0] : slots_[0] + len(slots_)])
        else:
            tmp = np.empty((len(frames), *shape), dtype=stored_dtype(h))
            read_frames_into(h, frames, tmp)
            buf[slots_] = tmp
        if progress is not None and (done % 16 == 0 or done == n - 1):
            progress.update("reading pixels", (done + 1) / n)
    return buf


def _drop_duplicates(
    groups: list[list[_Slice]], buf: np.ndarray, warnings: list[str], temporal_key: str | None = None
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
                    where = f"same position ({g[0].distance:.3f} mm along the normal) and {temporal_key} {g[0].t_value:g}"
                    why = "so one 4D time point would hold two different images"
                raise DicomError(
                    f"two slices at the {where} have different pixels, {why}: "
                    f"{_names([g[0].header.path, g[j].header.path])}",
                    path=os.path.dirname(g[0].header.path),
                    hint="remove one of the files or load them as separate series",
                )
            warnings.append(
                f"dropped exact duplicate slice {os.path.basename(g[j].header.path)} "
                f"(same position and pixels as {os.path.basename(g[0].header.path)})"
            )
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
    relative_to: str | None = None,
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
    relative_to:
        Folder that provenance file names are relative to (default: the files' common folder).
    """
    _check_policy(geometry_policy)
    prog = as_progress(progress)
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
        slots, buf = _drop_duplicates(units, buf, warnings, stack.temporal_key)
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
            f"({_names([s.header.path for s in without])}): identity used there, so values may not match the others"
        )
    array = apply_modality_lut(buf, slopes, intercepts)
    del buf
    n_z = len(groups)
    if n_t > 1:
        array = np.ascontiguousarray(np.moveaxis(array.reshape(n_z, n_t, *shape), 1, -1))

    positions = np.array([g[0].position for g in groups])
    names = [g[0].header.path for g in groups]
    array, geometry, metadata = _place(
        array,
        positions,
        names,
        groups[0][0],
        (row_dir, col_dir, normal),
        (col_spacing, row_spacing),
        geometry_policy=geometry_policy,
        regularize=regularize,
        warnings=warnings,
    )
    for w in warnings:
        log.warning("%s: %s", stack.id, w)
    metadata.update(_describe(stack, slots, slopes, intercepts, array, relative_to, geometry_policy, warnings))
    prog.update("loading done", 1.0)
    return Volume(array, geometry, metadata=metadata)


def _place(
    array: np.ndarray,
    positions: np.ndarray,
    names: list[str],
    first: _Slice,
    axes: tuple[np.ndarray, np.ndarray, np.ndarray],
    spacing_xy: tuple[float, float],
    *,
    geometry_policy: str,
    regularize: bool,
    warnings: list[str],
) -> tuple[np.ndarray, Geometry, dict]:
    """The grid of a sorted stack: exact when regular, else regularized / refused / raw.

    ``positions`` (n, 3) are the slices' ImagePositionPatient (LPS mm) in array order,
    ``axes`` the row, column and normal unit vectors, ``spacing_xy`` (column, row) spacing mm.
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
            raise GeometryError("slices do not advance along the slice normal", path=os.path.dirname(names[0]))
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
        problem = describe_problem(geo, names)
        if regularize and geometry_policy == "reject":
            raise GeometryError(
                f"irregular slice geometry: {problem}",
                path=os.path.dirname(names[0]),
                hint="use geometry policy 'resample' to put the data on a regular grid",
            )
        if regularize and gap_in_steps(geo) > MAX_GAP_STEPS:
            raise GeometryError(
                f"irregular slice geometry: {problem}; the widest gap spans {gap_in_steps(geo):.1f} slice steps, "
                f"more than the {MAX_GAP_STEPS:g} that resampling bridges without inventing anatomy",
                path=os.path.dirname(names[0]),
                hint="the files hold separate ranges: load each range's files separately",
            )
        if regularize:
            air = _air_value(array)
            array, dz, (ox, oy) = resample_onto_regular_grid(array, geo, row_dir, col_dir, spacing_xy, air)
            origin = positions[0] + ox * spacing_xy[0] * row_dir + oy * spacing_xy[1] * col_dir
            warnings.append(
                f"{problem}; resampled onto an orthogonal grid with {array.shape[0]} slices every {dz:.3f} mm "
                f"(value {air:g} outside the acquired data)"
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


def _describe(stack, slots, slopes, intercepts, array, relative_to, policy, warnings) -> dict:
    paths = [s.header.path for s in slots]
    root = relative_to or os.path.commonpath([os.path.dirname(os.path.abspath(p)) for p in paths])
    instances = []
    for s in slots:
        item = {
            "sop_instance_uid": s.header.sop_instance_uid,
            "file": os.path.relpath(os.path.abspath(s.header.path), root),
        }
        if s.header.is_multiframe or s.header.is_mosaic:
            item["frame"] = s.frame.frame_index
        instances.append(item)
    # Mosaic tiles share a file: list each file once, in order
    if stack.kind == "mosaic":
        seen, unique = set(), []
        for it in instances:
            if it["file"] not in seen:
                seen.add(it["file"])
                unique.append({k: v for k, v in it.items() if k != "frame"})
        instances = unique
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


# ----------------------------------------------------------------------------- entry points
def select_stack(stacks: list[Stack], skipped: list[Skipped], series: str | None, where: str) -> Stack:
    """The one stack ``series`` names (a stack id or a SeriesInstanceUID), or the only stack.

    Raises :class:`SeriesSelectionError` naming ``where`` when there is none, when the name
    matches nothing or several stacks, or when several stacks exist and none was named (the
    message lists the ids with modality, series number and description).
    """
    if not stacks:
        reasons = defaultdict(int)
        for s in skipped:
            reasons[s.reason] += 1
        detail = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items())) or "no files"
        raise SeriesSelectionError(f"no loadable image stack found (skipped: {detail})", path=where)
    if series is not None:
        matches = [s for s in stacks if s.id == series] or [s for s in stacks if s.series_instance_uid == series]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise SeriesSelectionError(
                f"no stack with id {series!r}; available: {', '.join(s.id for s in stacks)}", path=where
            )
        raise SeriesSelectionError(
            f"series {series!r} holds {len(matches)} stacks; choose one id: {', '.join(s.id for s in matches)}",
            path=where,
        )
    if len(stacks) > 1:
        listing = "; ".join(f"{s.id} ({_stack_label(s)})" for s in stacks)
        raise SeriesSelectionError(f"{len(stacks)} image stacks found, choose one with --series: {listing}", path=where)
    return stacks[0]


def _stack_label(s: Stack) -> str:
    parts = [s.modality or "?"]
    if s.series_number is not None:
        parts.append(f"series {s.series_number}")
    if s.series_description:
        parts.append(repr(s.series_description))
    if s.split_key:
        parts.append(", ".join(f"{k} {v}" for k, v in sorted(s.split_key.items())))
    parts.append(f"{len(s.headers)} files" + (f", {s.n_timepoints} time points" if s.n_timepoints > 1 else ""))
    return ", ".join(parts)


def load_files(
    paths: Sequence[str | os.PathLike],
    *,
    series: str | None = None,
    geometry_policy: str = "resample",
    progress: ProgressCallback | None = None,
    regularize: bool = True,
    relative_to: str | None = None,
) -> Volume:
    """Read, group and load DICOM files; ``series`` (a stack id or SeriesInstanceUID) selects
    one stack when they hold several (else :class:`SeriesSelectionError` lists the ids)."""
    from .scan import scan_files

    _check_policy(geometry_policy)
    prog = as_progress(progress)
    paths = [os.path.abspath(os.fspath(p)) for p in paths]
    result = scan_files(paths, cache=False, progress=prog.sub(0.0, 0.3))
    where = relative_to or (os.path.commonpath(paths) if paths else ".")
    stack = select_stack(result.stacks, result.skipped, series, where)
    volume = load_stack(
        stack,
        geometry_policy=geometry_policy,
        progress=prog.sub(0.3, 1.0),
        regularize=regularize,
        relative_to=relative_to or (where if os.path.isdir(where) else os.path.dirname(where)),
    )
    return volume


def _all_files(folder: str) -> list[str]:
    out = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        out.extend(os.path.join(root, f) for f in sorted(files) if not f.startswith("."))
    return out


def load_path(
    input: str | os.PathLike,
    series: str | None = None,
    *,
    geometry_policy: str = "resample",
    progress: ProgressCallback | None = None,
) -> Volume:
    """A volume from a DICOM folder, a single DICOM file, or an image file (NIfTI, NRRD, MHA...).

    A DICOMDIR file stands for its folder. ``series`` (stack id or SeriesInstanceUID) picks
    one stack when the input holds several.
    """
    from ..imageio import is_image_file, read_image
    from .header import SkipFile, read_header

    _check_policy(geometry_policy)
    path = os.path.abspath(os.fspath(input))
    if os.path.isdir(path):
        files = _all_files(path)
        if not files:
            raise InputError("the folder holds no files", path=path)
        return load_files(files, series=series, geometry_policy=geometry_policy, progress=progress, relative_to=path)
    if not os.path.isfile(path):
        raise InputError("no such file or folder", path=path)
    if is_image_file(path):
        return read_image(path)
    try:
        read_header(path)
    except SkipFile as exc:
        if exc.reason == "not_dicom":
            raise InputError(
                f"neither a DICOM image nor an image file MedPrep reads ({exc.skipped.detail})",
                path=path,
                hint="image files: .nii, .nii.gz, .nrrd, .mha, .mhd, .hdr, .mnc",
            ) from None
        if exc.reason == "dicomdir":  # a DICOMDIR stands for the folder it indexes
            return load_path(os.path.dirname(path), series, geometry_policy=geometry_policy, progress=progress)
        raise UnsupportedDicomError(
            f"not loadable as an image: {exc.skipped.detail} ({exc.reason})", path=path
        ) from None
    return load_files([path], series=series, geometry_policy=geometry_policy, progress=progress)
