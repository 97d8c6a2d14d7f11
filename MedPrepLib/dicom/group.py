"""Grouping file headers into image stacks (one volume each), header-only.

Files are grouped by SeriesInstanceUID, then split by orientation (ImageOrientationPatient
within ``ORIENTATION_TOL``), image size, pixel spacing and the StackID of enhanced frames.
Where slice positions then repeat, the repeats are told apart by echo (each echo becomes its
own stack) and then by the first temporal key that gives every position the same number of
distinct values (one 4D stack, ``n_timepoints`` > 1). Images that all share one position with
nothing to order them are no volume at all: they are skipped as ``not_a_volume``. The result
does not depend on the order of the input.

The unit of grouping is a *frame*: a slice of a single-frame file, one frame of an enhanced
multi-frame file, or a whole Siemens mosaic (its first tile's position stands for it).
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from .stack import FileHeader, FrameGeometry, Skipped, Stack, stack_id

ORIENTATION_TOL = 1e-3
"""Largest difference between direction cosines still treated as the same orientation."""

POSITION_TOL_MM = 0.01
"""Slices whose positions along the normal differ by less than this (mm) share a position."""

TEMPORAL_KEYS = ("temporal_position", "trigger_time", "acquisition_number", "acquisition_time", "diffusion")
"""Header keys that can order repeated positions into time points, tried in this order.
``diffusion`` is the b-value / gradient direction of an enhanced MR frame (numbered in frame
order, see :func:`.frames.enhanced_frames`). The bare frame order is never one: frames at one
position with nothing that tells them apart are not a 4D series."""


@dataclass(frozen=True)
class FrameRef:
    """One 2D unit of a stack: a header and one of its frames (all tiles for a mosaic)."""

    header: FileHeader
    frame: FrameGeometry | None

    @property
    def frame_index(self) -> int:
        return self.frame.frame_index if self.frame is not None else 0

    @property
    def position(self) -> np.ndarray | None:
        if self.frame is None or self.frame.position is None:
            return None
        return np.asarray(self.frame.position, dtype=np.float64)

    @property
    def orientation(self) -> np.ndarray | None:
        if self.frame is None or self.frame.orientation is None:
            return None
        return np.asarray(self.frame.orientation, dtype=np.float64)

    def key_value(self, key: str):
        """Value of a grouping key for this unit (frame-level keys first for multi-frame)."""
        h = self.header
        if h.is_multiframe and not h.is_mosaic and self.frame is not None:
            # Frame-level values first; a file-level value (one enhanced file per time point
            # or per acquisition, as Siemens XA and Philips write 4D) applies to all its frames.
            if key == "echo" and self.frame.echo_key is not None:
                return self.frame.echo_key
            if key == "temporal_position" and self.frame.temporal_key is not None:
                return self.frame.temporal_key
        if key == "diffusion":
            return self.frame.diffusion_key if self.frame is not None else None
        if key == "echo":
            return h.echo_number if h.echo_number is not None else h.echo_time
        value = getattr(h, key)
        if key == "acquisition_time" and value:
            return _seconds(value)
        return value


def _seconds(tm: str) -> float | None:
    """DICOM TM ("HHMMSS.ffffff") in seconds since midnight."""
    text = tm.strip().replace(":", "")
    try:
        hh = int(text[0:2])
        mm = int(text[2:4]) if len(text) >= 4 else 0
        ss = float(text[4:]) if len(text) > 4 else 0.0
    except ValueError:
        return None
    return hh * 3600 + mm * 60 + ss


def frame_refs(headers: Iterable[FileHeader], selection: dict[str, tuple[int, ...]] | None = None) -> list[FrameRef]:
    """The units of the given headers (one per frame, one per mosaic file)."""
    refs = []
    for h in headers:
        if h.is_mosaic or not h.frames:
            refs.append(FrameRef(h, h.frames[0] if h.frames else None))
            continue
        wanted = None if selection is None else selection.get(h.path)
        for f in h.frames:
            if wanted is None or f.frame_index in wanted:
                refs.append(FrameRef(h, f))
    return refs


def stack_refs(stack: Stack) -> list[FrameRef]:
    """The units of a stack (its headers, restricted to its frame selection)."""
    return frame_refs(stack.headers, stack.frame_selection)


def slice_normal(orientation) -> np.ndarray:
    """Unit normal (row cosines x column cosines) of an ImageOrientationPatient, LPS."""
    o = np.asarray(orientation, dtype=np.float64)
    n = np.cross(o[:3], o[3:])
    norm = np.linalg.norm(n)
    return n / norm if norm > 0 else n


def _spacing_label(r: FrameRef) -> str:
    """PixelSpacing (mm) rounded to 1e-4 mm, as a grouping key ("" when absent)."""
    if r.frame is None or r.frame.pixel_spacing is None:
        return ""
    return "x".join(f"{v:.4f}" for v in r.frame.pixel_spacing)


def _orientation_label(o: np.ndarray) -> str:
    return ",".join(f"{v:.3f}" for v in o + 0.0)


def _cluster_orientations(refs: list[FrameRef]) -> dict[str, list[FrameRef]]:
    reps: list[np.ndarray] = []
    groups: dict[str, list[FrameRef]] = {}
    missing: list[FrameRef] = []
    for r in refs:
        o = r.orientation
        if o is None:
            missing.append(r)
            continue
        for rep in reps:
            if np.max(np.abs(rep - o)) <= ORIENTATION_TOL:
                groups[_orientation_label(rep)].append(r)
                break
        else:
            reps.append(o)
            groups[_orientation_label(o)] = [r]
    if missing:
        # Units without geometry go with the largest group, so that loading names them.
        if groups:
            biggest = max(groups, key=lambda k: (len(groups[k]), k))
            groups[biggest].extend(missing)
        else:
            groups["none"] = missing
    return groups


def _position_keys(refs: list[FrameRef]) -> list[float | None]:
    """Position along the slice normal (mm) of each unit, snapped to POSITION_TOL_MM clusters."""
    normal = None
    for r in refs:
        if r.orientation is not None:
            normal = slice_normal(r.orientation)
            break
    raw = []
    for r in refs:
        p = r.position
        raw.append(None if p is None or normal is None else float(p @ normal))
    values = sorted(v for v in raw if v is not None)
    snapped: dict[float, float] = {}
    anchor = None
    for v in values:
        if anchor is None or v - anchor > POSITION_TOL_MM:
            anchor = v
        snapped[v] = anchor
    return [None if v is None else snapped[v] for v in raw]


def _positions_repeat(refs: list[FrameRef]) -> bool:
    keys = [k for k in _position_keys(refs) if k is not None]
    return len(keys) != len(set(keys))


def _temporal_split(refs: list[FrameRef]) -> tuple[str | None, int]:
    """The first temporal key giving every position the same number of distinct values.

    Preferably a key whose values never repeat at a position; failing that, one whose values
    repeat at some positions (a slice sent twice into a 4D series): the loader then keeps
    one of each repeat when their pixels are equal, and refuses otherwise.
    """
    positions = _position_keys(refs)
    by_pos: dict[float, list[FrameRef]] = defaultdict(list)
    for r, p in zip(refs, positions):
        by_pos[p].append(r)
    counts = {len(v) for v in by_pos.values()}
    if len(counts) == 1:
        count = counts.pop()
        for key in TEMPORAL_KEYS:
            ok = True
            for members in by_pos.values():
                values = [m.key_value(key) for m in members]
                if any(v is None for v in values) or len(set(values)) != len(values):
                    ok = False
                    break
            if ok:
                return key, count
    for key in TEMPORAL_KEYS:
        distinct = set()
        for members in by_pos.values():
            values = [m.key_value(key) for m in members]
            if any(v is None for v in values):
                break
            distinct.add(len(set(values)))
        else:
            if len(distinct) == 1 and (n_t := distinct.pop()) >= 2:
                return key, n_t
    return None, 1


def _finish(series_uid: str, split_key: dict, refs: list[FrameRef], siblings_warning: list[str]) -> Stack:
    headers_by_path: dict[str, FileHeader] = {}
    frames_by_path: dict[str, list[int]] = defaultdict(list)
    for r in refs:
        headers_by_path.setdefault(r.header.path, r.header)
        frames_by_path[r.header.path].append(r.frame_index)
    headers = [headers_by_path[p] for p in sorted(headers_by_path)]
    selection = None
    for h in headers:
        if h.is_multiframe and not h.is_mosaic and len(frames_by_path[h.path]) != len(h.frames):
            selection = {
                p: tuple(sorted(frames_by_path[p]))
                for p, hh in headers_by_path.items()
                if hh.is_multiframe and not hh.is_mosaic
            }
            break
    first = headers[0]
    warnings = list(siblings_warning)
    temporal_key, n_t = (None, 1)
    if _positions_repeat(refs):
        temporal_key, n_t = _temporal_split(refs)
        if temporal_key is None:
            warnings.append(
                "slice positions repeat and no echo or temporal key tells the repeats apart; "
                "exact duplicates will be dropped on loading, differing ones refused"
            )
    return Stack(
        id=stack_id(series_uid, split_key),
        series_instance_uid=series_uid,
        modality=first.modality,
        headers=headers,
        split_key=dict(split_key),
        n_timepoints=n_t,
        series_description=first.series_description,
        series_number=first.series_number,
        warnings=warnings,
        temporal_key=temporal_key,
        frame_selection=selection,
    )


SEPARATE_KEYS = ("acquisition_number", "temporal_position")
"""Keys that split repeated positions into separate 3D stacks when they cannot form one 4D
stack (e.g. two acquisitions covering different, overlapping ranges)."""


def _finish_or_split(series_uid: str, split_key: dict, refs: list[FrameRef]) -> list[Stack]:
    stack = _finish(series_uid, split_key, refs, [])
    if not _positions_repeat(refs) or stack.temporal_key is not None:
        return [stack]
    for key in SEPARATE_KEYS:
        groups: dict[object, list[FrameRef]] = defaultdict(list)
        for r in refs:
            groups[r.key_value(key)].append(r)
        if len(groups) > 1 and None not in groups and not any(_positions_repeat(g) for g in groups.values()):
            name = key.replace("_number", "").replace("_position", "")
            return [_finish(series_uid, {**split_key, name: v}, groups[v], []) for v in sorted(groups)]
    return [stack]


def _split_stack_ids(refs: list[FrameRef]) -> dict[str, list[FrameRef]]:
    """Enhanced frames by StackID (DICOM's own statement that frames form separate stacks,
    e.g. two slabs or two overlapping blocks in one file); one group when there is no StackID."""
    groups: dict[str, list[FrameRef]] = defaultdict(list)
    for r in refs:
        label = r.frame.stack_key if r.header.is_multiframe and r.frame is not None else None
        groups[label or ""].append(r)
    if len(groups) > 1 and ("" in groups or min(len(g) for g in groups.values()) < 2):
        # Some frames without StackID (do not guess which stack they join), or one-frame
        # "stacks" (StackID misused as a frame counter): StackID says nothing here.
        return {"": refs}
    return dict(groups)


def _split_echoes(refs: list[FrameRef]) -> dict[object, list[FrameRef]] | None:
    """Split by echo when positions repeat and each echo alone repeats less."""
    if not _positions_repeat(refs):
        return None
    groups: dict[object, list[FrameRef]] = defaultdict(list)
    for r in refs:
        groups[r.key_value("echo")].append(r)
    if len(groups) < 2 or None in groups:
        return None
    return dict(groups)


def group_stacks(headers: list[FileHeader]) -> tuple[list[Stack], list[Skipped]]:
    """Group header-read files into stacks; returns (stacks, skipped files).

    Input order does not matter. Duplicate SOPInstanceUIDs are skipped (the first path in
    sorted order is kept). A single slice of another orientation or size inside a series whose
    main stack has at least 3 slices is skipped as a localizer.
    """
    skipped: list[Skipped] = []
    seen: dict[str, FileHeader] = {}
    unique: list[FileHeader] = []
    for h in sorted(headers, key=lambda h: h.path):
        if h.sop_instance_uid and h.sop_instance_uid in seen:
            # Only this file's own path is named: the kept one by what it holds, not its name.
            kept = seen[h.sop_instance_uid]
            which = f" (instance {kept.instance_number})" if kept.instance_number is not None else ""
            skipped.append(
                Skipped(h.path, "duplicate_sop_instance", f"same SOPInstanceUID as another file{which}, which is kept")
            )
            continue
        if h.sop_instance_uid:
            seen[h.sop_instance_uid] = h
        unique.append(h)

    by_series: dict[str, list[FileHeader]] = defaultdict(list)
    for h in unique:
        uid = h.series_instance_uid or "no-series-uid:" + os.path.dirname(h.path)
        by_series[uid].append(h)

    stacks: list[Stack] = []
    for uid in sorted(by_series):
        refs = frame_refs(by_series[uid])
        # orientation x image size x pixel spacing
        parts: dict[tuple[str, str, str], list[FrameRef]] = defaultdict(list)
        for label, members in _cluster_orientations(refs).items():
            for r in members:
                parts[(label, f"{r.header.rows}x{r.header.columns}", _spacing_label(r))].append(r)
        orientations = {k[0] for k in parts}
        sizes = {k[1] for k in parts}
        spacings = {k[2] for k in parts}
        series_stacks: list[Stack] = []
        for (label, size, spacing), part in sorted(parts.items()):
            key: dict = {}
            if len(orientations) > 1:
                key["orientation"] = label
            if len(sizes) > 1:
                key["size"] = size
            if len(spacings) > 1:
                key["pixel_spacing"] = spacing
            by_stack = _split_stack_ids(part)
            for stack_label in sorted(by_stack):
                members = by_stack[stack_label]
                part_key = {**key, "stack": stack_label} if len(by_stack) > 1 else key
                echoes = _split_echoes(members)
                if echoes is None:
                    series_stacks.extend(_finish_or_split(uid, part_key, members))
                else:
                    for echo in sorted(echoes, key=lambda e: float(e)):
                        series_stacks.extend(_finish_or_split(uid, {**part_key, "echo": echo}, echoes[echo]))
        series_stacks = _drop_non_volumes(series_stacks, skipped)
        stacks.extend(_drop_localizers(series_stacks, skipped))

    # Stable, unique ids and order
    used: dict[str, int] = {}
    for s in stacks:
        if s.id in used:
            used[s.id] += 1
            s.id = f"{s.id}-{used[s.id]}"
        else:
            used[s.id] = 0
    stacks.sort(key=lambda s: (s.series_number if s.series_number is not None else -1, s.series_instance_uid, s.id))
    return stacks, skipped


def _drop_non_volumes(stacks: list[Stack], skipped: list[Skipped]) -> list[Stack]:
    """Stacks whose images all lie at one position with nothing ordering them go to ``skipped``.

    A 4D series needs a key that separates its volumes (``TEMPORAL_KEYS``; echo and StackID
    have split the series before). Without one, N images at one position are not a single
    slice with N time points: which image is which is unknown.
    """
    kept = []
    for s in stacks:
        refs = stack_refs(s)
        positions = _position_keys(refs)
        if s.temporal_key is not None or len(refs) < 2 or None in positions or len(set(positions)) > 1:
            kept.append(s)
            continue
        what = "frames" if len(s.headers) == 1 and s.kind == "multiframe" else "images"
        detail = f"not a volume: {len(refs)} {what} at the same position and nothing orders them"
        skipped.extend(Skipped(h.path, "not_a_volume", detail) for h in s.headers)
    return kept


def _drop_localizers(stacks: list[Stack], skipped: list[Skipped]) -> list[Stack]:
    if len(stacks) < 2:
        return stacks
    biggest = max(len(stack_refs(s)) for s in stacks)
    if biggest < 3:
        return stacks
    kept = []
    for s in stacks:
        # Only a slice of another geometry is a localizer; one set apart by acquisition, echo
        # or time (a re-acquired slice) stays a stack of its own, listed for the user to judge.
        other_geometry = any(k in s.split_key for k in ("orientation", "size", "pixel_spacing"))
        if other_geometry and len(s.headers) == 1 and s.kind == "single" and len(stack_refs(s)) == 1:
            skipped.append(
                Skipped(
                    s.headers[0].path,
                    "localizer",
                    f"single slice of another orientation or size inside a series of {biggest} slices",
                )
            )
            continue
        kept.append(s)
    return kept
