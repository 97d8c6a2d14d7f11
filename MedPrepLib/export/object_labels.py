"""Labels from segmentation objects: the SEG and RTSTRUCT objects beside DICOM series
(``--labels-from``), and Slicer ``.seg.nrrd`` files as the labels of image folders and cohort tables.

Which object labels a DICOM case: the objects that :func:`~MedPrepLib.dicom.label_sources.find_label_sources`
pairs with the case's first-channel stack, of the kind asked for — ``seg``, ``rtstruct``, or
``auto`` (a SEG when there is one, else an RTSTRUCT). Several objects of that kind for one stack
are refused for the case (which one is meant is not for MedPrep to guess): the case is left
unlabelled with a warning. An object whose referenced series is absent, or drawn in another
frame of reference, is reported (:func:`with_object_labels`).

Which file labels a case of an image folder or a cohort table: the source's own rule (file
names, the ``label`` column); :func:`with_segmentation_files` makes every such label that is a
``.seg.nrrd`` a segmentation. A source whose labels mix ``.seg.nrrd`` files and label images is
refused: a label image's values are voxel values, a segmentation's are decided by segment names
through the table, and nothing says that label image value 2 is the segmentations' "tumour".

The label of a case is made when the case is exported (:class:`ObjectLabel`, a picklable loader
that takes the case's loaded image): the object's structures are placed on exactly that grid and
valued by the dataset's one :class:`~MedPrepLib.segmentation.label_table.SegmentLabelTable` —
the label map's, or without one every structure name found in the selected objects, in
alphabetical order — so the same organ has the same value in every case.
"""

from __future__ import annotations

import dataclasses
import logging
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

from ..volume import Volume
from .cases import Exclusion, SourceCases

log = logging.getLogger(__name__)

LABELS_FROM = ("seg", "rtstruct", "auto")


@dataclass(frozen=True)
class ObjectLabel:
    """The label of one case from a segmentation object; called with the case's image."""

    path: str
    table: object
    """The dataset's :class:`~MedPrepLib.segmentation.label_table.SegmentLabelTable`."""
    frame_of_reference_uid: str = ""
    needs_image = True

    def __call__(self, image: Volume, grid_policy: str = "reject") -> Volume:
        """The label on ``image``'s grid (LPS, (z, y, x)); ``grid_policy`` ("reject" or
        "resample", the export's ``--label-grid``) is for a ``.seg.nrrd`` on another grid."""
        from ..segmentation.label_table import segmentation_to_label
        from ..segmentation.objects import read_on_image

        seg = read_on_image(self.path, image, frame_of_reference_uid=self.frame_of_reference_uid or None,
                            grid_policy=grid_policy)  # fmt: skip
        label, report = segmentation_to_label(seg, self.table)
        for warning in dict.fromkeys([*seg.warnings, *(w for s in seg.segments for w in s.warnings), *report.warnings]):
            log.warning("%s", warning)  # the export keeps a case's log warnings in its record
        if report.unmatched:
            names = ", ".join(repr(e["name"]) for e in report.unmatched)
            log.warning("%s structures not in the label table, left out: %s", seg.kind, names)
        return label


def _chosen(sources, kind: str):
    if kind == "auto":
        segs = [s for s in sources if s.kind == "SEG"]
        return segs or [s for s in sources if s.kind == "RTSTRUCT"]
    return [s for s in sources if s.kind == kind.upper()]


def with_object_labels(found: SourceCases, label_sources, labels_from: str, table=None) -> SourceCases:
    """``found``'s cases with labels from the objects that label their stacks (see the module doc).

    ``table``: the dataset's SegmentLabelTable (from ``--label-map``), or ``None`` to make one
    from the structure names of the selected objects."""
    from ..segmentation.label_table import SegmentLabelTable
    from ..segmentation.objects import segment_names
    from .dicom_source import case_stack

    if labels_from not in LABELS_FROM:
        from ..errors import ExportError

        raise ExportError(f"--labels-from {labels_from!r}", hint="use seg, rtstruct or auto")
    by_stack = defaultdict(list)
    excluded = list(found.excluded)
    warnings = list(found.warnings)
    for n, source in enumerate(label_sources, 1):
        what = f"{source.kind} object {n}"
        if source.stack_id is None:
            excluded.append(Exclusion(what, f"labels no stack of the source: {source.problem}"))
        elif source.problem:
            excluded.append(Exclusion(what, source.problem))
        else:
            by_stack[source.stack_id].append(source)
    chosen = {}
    for case in found.cases:
        stack = case_stack(case)
        candidates = _chosen(by_stack.get(stack.id if stack else None, []), labels_from)
        if len(candidates) == 1:
            chosen[case.key] = candidates[0]
        elif len(candidates) > 1:
            warnings.append(
                f"{len(candidates)} {candidates[0].kind} objects label one case's stack: the case is left unlabelled "
                "(keep one object per series, or export with a cohort table naming the label)"
            )
    if table is None:
        names = [name for source in chosen.values() for name in segment_names(source.path)]
        table = SegmentLabelTable.from_names(names)
    cases = []
    for case in found.cases:
        source = chosen.get(case.key)
        if source is None:
            cases.append(case)
            continue
        loader = ObjectLabel(source.path, table, source.stack_frame_of_reference_uid)
        cases.append(dataclasses.replace(case, label=loader, fingerprint=_fingerprint(case.fingerprint, source.path)))
    unlabelled = sum(1 for c in cases if c.label is None)
    if unlabelled:
        warnings.append(f"{unlabelled} of {len(cases)} cases have no {labels_from} label object (they go to the test part)")
    return SourceCases(cases=cases, excluded=excluded, warnings=warnings, label_table=table)


def with_segmentation_files(found: SourceCases, label_files: Mapping[tuple, tuple[str, str]], table=None, *,
                            what: str = "label files") -> SourceCases:  # fmt: skip
    """``found`` with the label of every case whose label file is a ``.seg.nrrd`` made a
    segmentation (:class:`ObjectLabel`), and the dataset's label table (see the module doc).

    ``label_files``: case key -> (the path of its label file, its neutral name: "label file 2",
    "row 7"), for every labelled case;
    ``table``: the ``--label-map``'s SegmentLabelTable, or ``None`` to make one from the segment
    names of those files (alphabetical; a file whose names cannot be read leaves its case out with
    the reason). ``what`` names the labels in the mixing error ("label files", "the 'label'
    column"). Without any ``.seg.nrrd`` label, ``found`` is returned as it is."""
    from ..errors import ExportError, MedPrepError
    from ..segmentation.label_table import SegmentLabelTable
    from ..segmentation.objects import is_seg_nrrd, segment_names
    from .inputs import _scrub

    segmentations = {key: path for key, (path, _) in label_files.items() if is_seg_nrrd(path)}
    if not segmentations:
        return found
    images = len(label_files) - len(segmentations)
    if images:
        raise ExportError(
            f"the {what} mix {len(segmentations)} Slicer segmentations (.seg.nrrd) and {images} label images: "
            "a label image's values are voxel values, a segmentation's come from its segment names, so one value "
            "would mean different structures",
            hint="give every case a .seg.nrrd, or every case a label image (in Slicer: export the segmentation "
            "to a labelmap with the label map's values)",
        )
    excluded = list(found.excluded)
    if table is None:
        names, unreadable = [], set()
        for case in found.cases:
            path = segmentations.get(case.key)
            if path is None:
                continue
            try:
                names += segment_names(path)
            except MedPrepError as exc:  # the message says what; the path stays in exc.path
                unreadable.add(case.key)
                reason = f"not a readable Slicer segmentation: {_scrub(exc.message, path)}"
                excluded.append(Exclusion(label_files[case.key][1], reason))
        segmentations = {k: v for k, v in segmentations.items() if k not in unreadable}
        table = SegmentLabelTable.from_names(names)
    cases = []
    for case in found.cases:
        if case.key in segmentations:
            cases.append(dataclasses.replace(case, label=ObjectLabel(segmentations[case.key], table)))
        elif case.key not in label_files:
            cases.append(case)
    return SourceCases(cases=cases, excluded=excluded, warnings=list(found.warnings), label_table=table)


def _fingerprint(fingerprint: str, path: str) -> str:
    """The case's fingerprint with the object file's size and modification time added."""
    import hashlib
    import os

    st = os.stat(path)
    return hashlib.sha256(f"{fingerprint}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()
