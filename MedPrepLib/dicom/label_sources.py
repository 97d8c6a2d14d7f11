"""Label sources in a DICOM folder: the SEG and RTSTRUCT objects, and the stack each one labels.

A scan sets SEG and RTSTRUCT files aside (skip reason ``label_source``); :func:`find_label_sources`
reads just their references — header only, the pixel data and contours are not parsed — and
pairs each with the image stack it belongs to:

1. the series it names: SEG ``ReferencedSeriesSequence`` / RTSTRUCT
   ``ReferencedFrameOfReferenceSequence`` -> ``RTReferencedStudySequence`` ->
   ``RTReferencedSeriesSequence`` (``SeriesInstanceUID``), the stack of that series with the most
   slices;
2. else the images it names (SEG ``SourceImageSequence`` / per-frame ``DerivationImageSequence``,
   RTSTRUCT ``ContourImageSequence``) by SOPInstanceUID;
3. else nothing: the object's referenced series is absent, and the source says so
   (:attr:`LabelSource.problem`).

A FrameOfReferenceUID that differs from the stack's is a problem too (the object was drawn in
another space). Nothing here is written anywhere: UIDs stay in memory.
"""

from __future__ import annotations

import logging
import os
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .stack import Skipped, Stack

log = logging.getLogger(__name__)

SEG_SOP_CLASSES = {"1.2.840.10008.5.1.4.1.1.66.4": "SEG", "1.2.840.10008.5.1.4.1.1.66.7": "SEG"}
RTSTRUCT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"
@dataclass(frozen=True)
class LabelSource:
    """A SEG or RTSTRUCT object and the stack it labels.

    ``kind``: ``"SEG"`` or ``"RTSTRUCT"``; ``path``: the object's file; ``stack_id``: the id of
    the stack it labels, or ``None``; ``problem``: why no stack (or why that stack is doubtful),
    else ``""``; ``n_segments``: segments (SEG) or ROIs (RTSTRUCT) declared; ``label``: the
    object's own description (SeriesDescription, ContentLabel or StructureSetLabel).
    """

    path: str
    kind: str
    stack_id: str | None
    problem: str = ""
    n_segments: int = 0
    label: str = ""
    referenced_series_uid: str = ""
    frame_of_reference_uid: str = ""
    stack_frame_of_reference_uid: str = ""
    """The labelled stack's FrameOfReferenceUID ("" when unknown)."""

    def to_dict(self) -> dict:
        """The ``medprep scan --json`` form (``label_sources`` entries)."""
        return {
            "path": self.path, "kind": self.kind, "stack": self.stack_id, "problem": self.problem,
            "segments": self.n_segments, "description": self.label,
        }  # fmt: skip


def _items(ds, keyword: str) -> list:
    value = ds.get(keyword)
    return list(value) if value is not None else []


def _uids(items, keyword: str) -> set[str]:
    """The values of ``keyword`` in ``items`` (sequence items), empty ones left out."""
    return {str(item.get(keyword)) for item in items if item.get(keyword)}


def _referenced(ds, kind: str) -> tuple[set[str], set[str]]:
    """(referenced SeriesInstanceUIDs, referenced SOPInstanceUIDs) of a SEG or RTSTRUCT."""
    if kind == "SEG":
        series_items = _items(ds, "ReferencedSeriesSequence")
        image_items = [i for s in series_items for i in _items(s, "ReferencedInstanceSequence")]
        image_items += _items(ds, "SourceImageSequence")
    else:
        series_items = [
            item
            for frame in _items(ds, "ReferencedFrameOfReferenceSequence")
            for study in _items(frame, "RTReferencedStudySequence")
            for item in _items(study, "RTReferencedSeriesSequence")
        ]
        image_items = [i for s in series_items for i in _items(s, "ContourImageSequence")]
    return _uids(series_items, "SeriesInstanceUID"), _uids(image_items, "ReferencedSOPInstanceUID")


def _read(path: str):
    import pydicom

    from .codecs import PydicomMessages

    try:
        with PydicomMessages(path):
            return pydicom.dcmread(path, stop_before_pixels=True, force=True)
    except Exception as exc:  # a broken object is a problem of that object, not of the scan
        log.debug("%s: cannot read the label source: %s", path, exc)
        return None


def _frame_of_reference(stack: Stack) -> str:
    """The FrameOfReferenceUID of a stack (one header element of its first file)."""
    import pydicom

    if not stack.headers:
        return ""
    try:
        ds = pydicom.dcmread(stack.headers[0].path, stop_before_pixels=True, force=True, specific_tags=["FrameOfReferenceUID"])
    except Exception:  # noqa: BLE001 - a file that changed since the scan: no check
        return ""
    return str(ds.get("FrameOfReferenceUID", "") or "")


def find_label_sources(skipped: Iterable[Skipped], stacks: Sequence[Stack]) -> list[LabelSource]:
    """The SEG and RTSTRUCT objects among a scan's skipped files, each paired with its stack
    (see the module doc), in path order."""
    by_series: dict[str, list[Stack]] = defaultdict(list)
    by_instance: dict[str, Stack] = {}
    for stack in stacks:
        by_series[stack.series_instance_uid].append(stack)
        for h in stack.headers:
            if h.sop_instance_uid:
                by_instance[h.sop_instance_uid] = stack
    out = []
    for entry in sorted((s for s in skipped if s.reason == "label_source"), key=lambda s: s.path):
        ds = _read(entry.path)
        if ds is None:
            out.append(LabelSource(entry.path, "unknown", None, "the object cannot be read"))
            continue
        sop_class = str(ds.get("SOPClassUID", ""))
        kind = SEG_SOP_CLASSES.get(sop_class) or ("RTSTRUCT" if sop_class == RTSTRUCT_SOP_CLASS else "")
        if not kind:
            continue
        series, instances = _referenced(ds, kind)
        n = len(_items(ds, "SegmentSequence" if kind == "SEG" else "StructureSetROISequence"))
        label = str(ds.get("SeriesDescription") or ds.get("ContentLabel") or ds.get("StructureSetLabel") or "")
        candidates = [s for uid in sorted(series) for s in by_series.get(uid, [])]
        if not candidates:
            candidates = sorted({id(by_instance[i]): by_instance[i] for i in instances if i in by_instance}.values(),
                                key=lambda s: s.id)  # fmt: skip
        frame = str(ds.get("FrameOfReferenceUID", "") or "")
        if kind == "RTSTRUCT":  # its contours are in the frame its ReferencedFrameOfReferenceSequence names
            frames = _items(ds, "ReferencedFrameOfReferenceSequence")
            frame = str(frames[0].get("FrameOfReferenceUID", "")) if frames else frame
        ref = sorted(series)[0] if series else ""
        if not candidates:
            what = "its referenced series is not in the source" if series or instances else "it names no series or image"
            out.append(LabelSource(entry.path, kind, None, what, n, label, ref, frame))
            continue
        stack = max(candidates, key=lambda s: (len(s.headers), s.id))
        problem = ""
        stack_frame = _frame_of_reference(stack)
        if frame and stack_frame and frame != stack_frame:
            problem = "its FrameOfReferenceUID differs from its series' (drawn in another space)"
        out.append(LabelSource(entry.path, kind, stack.id, problem, n, label, ref, frame, stack_frame))
    return out


def relative(path: str, base: str | os.PathLike) -> str:
    """``path`` relative to ``base`` when inside it (for the console), else as it is."""
    try:
        rel = os.path.relpath(path, base)
    except ValueError:
        return path
    return path if rel.startswith("..") else rel
