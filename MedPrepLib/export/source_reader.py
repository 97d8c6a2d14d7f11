"""What an export's SOURCE is, and its cases: a DICOM folder, a Slicer DICOM database, a cohort
table or a folder of image files.

The rule (:func:`source_kind`), in order:

1. a file ending in ``.csv``, ``.tsv`` or ``.json`` is a **cohort table** (:mod:`.cohort`);
2. a Slicer DICOM database folder (``ctkDICOM.sql`` in it) or that file is **DICOM** (:mod:`.dicom_source`);
3. a folder with image files (NIfTI, NRRD, MetaImage...) directly in it, or an nnU-Net raw
   dataset (``imagesTr/``), is an **image folder** (:mod:`.image_folder`); a Slicer
   segmentation (``.seg.nrrd``) is not an image file;
4. any other folder, or a DICOM file, is **DICOM**.

Labels of a DICOM source come from ``labels_dir``: the label of a case is the image file whose
stem (name without its format ending) is the SeriesInstanceUID of the case's first-channel stack,
or the case's StudyInstanceUID (``labels/1.2.840.113619....nii.gz``); or, with ``labels_from``
(``seg``, ``rtstruct``, ``auto``), from the SEG and RTSTRUCT objects in the source that label the
case's stack (:mod:`.object_labels`).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from ..dicom.slicerdb import is_slicer_database
from ..errors import ExportError, InputError
from ..imageio import image_suffix, is_image_file
from ..progress import as_progress
from ..segmentation.objects import is_seg_nrrd
from .cases import SourceCases
from .inputs import input_loader

SOURCE_KINDS = ("cohort", "dicom", "image_folder")
TABLE_SUFFIXES = (".csv", ".tsv", ".json")


def source_kind(path: str | os.PathLike) -> str:
    """``"cohort"``, ``"dicom"`` or ``"image_folder"`` by the rule of the module doc."""
    p = Path(path)
    if not p.exists():
        raise InputError("the export source does not exist", hint="give a DICOM folder, a Slicer database folder, a cohort table or an image folder", detail=os.fspath(path))
    if p.is_file() and p.name.lower().endswith(TABLE_SUFFIXES):
        return "cohort"
    if is_slicer_database(p):
        return "dicom"
    if p.is_dir():
        if (p / "imagesTr").is_dir():
            return "image_folder"
        try:
            with os.scandir(p) as entries:
                if any(e.is_file() and not e.name.startswith(".") and is_image_file(e.name) and not is_seg_nrrd(e.name)
                       for e in entries):  # fmt: skip
                    return "image_folder"
        except OSError as exc:
            raise InputError(f"cannot read the source folder: {exc.strerror}", detail=os.fspath(path)) from None
    return "dicom"


def _label_files(labels_dir: Path) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for entry in sorted(os.scandir(labels_dir), key=lambda e: e.name):
        if entry.is_file() and is_image_file(entry.name):
            suffix = image_suffix(entry.name)
            out.setdefault(entry.name[: -len(suffix)] if suffix else entry.name, Path(entry.path))
    return out


def _with_dicom_labels(found: SourceCases, labels_dir: str | os.PathLike) -> SourceCases:
    """Attach label files named by SeriesInstanceUID or StudyInstanceUID to DICOM cases."""
    from .dicom_source import case_stack

    folder = Path(labels_dir)
    if not folder.is_dir():
        raise ExportError("the labels folder does not exist or is not a folder", detail=os.fspath(labels_dir))
    files = _label_files(folder)
    used: set[str] = set()
    cases = []
    for case in found.cases:
        stack = case_stack(case)
        names = [stack.series_instance_uid if stack else "", case.key[-1]]
        match = next((n for n in names if n and n in files), None)
        if match is None:
            cases.append(case)
            continue
        used.add(match)
        label = input_loader(files[match], "the label")
        cases.append(dataclasses.replace(case, label=label))
    unmatched = len(set(files) - used)
    warnings = list(found.warnings)
    if unmatched:
        warnings.append(f"{unmatched} label file(s) match no selected stack or study (named by SeriesInstanceUID or StudyInstanceUID)")
    unlabelled = sum(1 for c in cases if c.label is None)
    if unlabelled:
        warnings.append(f"{unlabelled} of {len(cases)} cases have no label file (they go to the test part)")
    return SourceCases(cases=cases, excluded=list(found.excluded), warnings=warnings)


def read_source(
    source: str | os.PathLike,
    *,
    cohort: str | os.PathLike | None = None,
    labels_dir: str | os.PathLike | None = None,
    channels: dict[str, str] | list[str] | None = None,
    channel_name: str | None = None,
    labels_from: str | None = None,
    segment_table=None,
    progress=None,
    **dicom_options,
) -> SourceCases:
    """The cases of ``source`` (see the module doc). ``cohort`` names the cohort table
    explicitly (then ``source`` is ignored if it is the same file). ``dicom_options`` are
    :func:`~.dicom_source.dicom_cases`'s (``selection``, ``geometry_policy``, ``include_age``,
    ``include_sex``, ``cache``) and apply to a DICOM source only. ``channels``: for DICOM a
    mapping channel -> SeriesDescription pattern, for an image folder the channel names."""
    if cohort is not None:
        source, kind = cohort, "cohort"
    else:
        kind = source_kind(source)
    if kind == "cohort":
        from .cohort import read_cohort

        if labels_dir is not None:
            raise ExportError("a cohort table names its labels in its 'label' column; --labels does not apply")
        return read_cohort(source, channel_name=channel_name, segment_table=segment_table)
    if kind == "image_folder":
        from .image_folder import read_image_folder

        names = list(channels) if channels is not None else ([channel_name] if channel_name else None)
        return read_image_folder(source, labels=labels_dir, channels=names, segment_table=segment_table)
    from .dicom_source import dicom_cases

    if channels is not None and not isinstance(channels, dict):
        raise ExportError("channels of a DICOM source are name=pattern pairs (--channels \"T1=t1_mprage,FLAIR=flair\")")
    if labels_from is not None and labels_dir is not None:
        raise ExportError("labels come either from a folder of label files (--labels) or from SEG/RTSTRUCT objects (--labels-from), not both")
    scanned = None
    if labels_from is not None:
        from ..sources import find_stacks

        scanned = find_stacks(source, cache=dicom_options.get("cache", False), progress=as_progress(progress).sub(0.0, 0.8))
    found = dicom_cases(source, channels=channels, progress=progress, found=scanned, **dicom_options)
    if labels_from is not None:
        from ..dicom.label_sources import find_label_sources
        from .object_labels import with_object_labels

        return with_object_labels(found, find_label_sources(scanned.skipped, scanned.stacks), labels_from, segment_table)
    return _with_dicom_labels(found, labels_dir) if labels_dir is not None else found
