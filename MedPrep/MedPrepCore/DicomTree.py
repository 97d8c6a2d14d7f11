"""The DICOM browser's tree: patients -> studies -> series, each series with MedPrep's verdict. No Qt.

:func:`dicomDatabaseTree` walks a Slicer DICOM database folder (``ctkDICOM.sql``, read through
:class:`MedPrepLib.dicom.slicerdb.SlicerDicomDatabase` — the same file the application's
``slicer.dicomDatabase`` keeps, so the panel and a batch script without the application see the
same thing) or a plain DICOM folder, and header-scans its files with MedPrepLib's reader. Every
series gets one row per image stack MedPrep found in it (a series may hold several: two echoes,
a 4D acquisition split by position) — *loadable*, with the stack id that
:meth:`~MedPrepCore.ModuleLogic.ModuleLogic.loadDicom` and the export take — or, when no stack
came out of it, one row *skipped* with the reason of :func:`MedPrepLib.sources.find_stacks`
(localizer, dose report, a segmentation object, missing files...).

Patient names and IDs are in the rows for **on-screen display only** (the panel is the user's
own view of their own database, as Slicer's DICOM browser is); nothing here writes or logs them.
"""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from dataclasses import dataclass, field

from MedPrepLib.progress import ProgressCallback, as_progress


@dataclass
class SeriesRow:
    """One image stack of a series (``loadable``), or a series MedPrep skips, with its ``reason``.

    ``slices``: the stack's slice count (files of the series when skipped); ``stackId`` is
    ``None`` for a skipped series; ``reason`` is ``""`` for a loadable one.
    """

    seriesInstanceUid: str
    stackId: str | None
    modality: str
    description: str
    slices: int
    loadable: bool
    reason: str = ""


@dataclass
class StudyRow:
    """A study: its date (``YYYYMMDD`` as stored, "" unknown), description and series rows."""

    studyInstanceUid: str
    date: str = ""
    description: str = ""
    series: list[SeriesRow] = field(default_factory=list)


@dataclass
class PatientRow:
    """A patient (name and ID for display only) and their studies."""

    name: str
    patientId: str
    studies: list[StudyRow] = field(default_factory=list)


def _skipReason(skipped) -> str:
    """The reason shown for a series all of whose files were skipped: the most common one."""
    from MedPrepLib.dicom.stack import SKIP_REASONS

    if not skipped:
        return "no image files"
    code, _ = Counter(s.reason for s in skipped).most_common(1)[0]
    return SKIP_REASONS.get(code, code.replace("_", " "))


def _slices(stack) -> int:
    """Slices per volume of a stack, as ``medprep scan`` counts them."""
    from MedPrepLib.dicom.scan import stack_summary

    return int(stack_summary(stack)["shape"][2])


def _seriesRows(uid: str, stacks, skipped, modality: str, description: str, nFiles: int) -> list[SeriesRow]:
    if stacks:
        return [
            SeriesRow(uid, s.id, s.modality or modality, s.series_description or description, _slices(s), True)
            for s in sorted(stacks, key=lambda s: s.id)
        ]
    return [SeriesRow(uid, None, modality, description, nFiles, False, _skipReason(skipped))]


def _bySeries(found, seriesOfFile: dict[str, str]):
    stacks = defaultdict(list)
    for stack in found.stacks:
        stacks[stack.series_instance_uid].append(stack)
    skipped = defaultdict(list)
    for s in found.skipped:
        skipped[seriesOfFile.get(os.path.abspath(s.path), "")].append(s)
    return stacks, skipped


def _databaseTree(folder: str, progress) -> list[PatientRow]:
    from MedPrepLib.dicom.slicerdb import SlicerDicomDatabase, scan_database

    with SlicerDicomDatabase(folder) as db:
        seriesOfFile = {os.path.abspath(f): uid for uid, files in db.all_files().items() for f in files}
        found = scan_database(db, cache=True, progress=progress.sub(0.0, 0.95))
        stacks, skipped = _bySeries(found, seriesOfFile)
        patients = []
        for patient in db.patients():
            row = PatientRow(db.patient_display_name(patient), "")
            for study in db.studies(patient):
                studyRow = StudyRow(study.study_instance_uid, study.study_date, study.description)
                for series in db.series(study):
                    uid = series.series_instance_uid
                    studyRow.series += _seriesRows(
                        uid, stacks[uid], skipped[uid], series.modality, series.description, series.n_files
                    )
                row.studies.append(studyRow)
            patients.append(row)
    return patients


def _folderTree(folder: str, progress) -> list[PatientRow]:
    """A plain DICOM folder: studies from the scan, patient and study facts from one header read
    of each study's first file (pydicom, header only)."""
    import pydicom

    from MedPrepLib.sources import find_stacks

    found = find_stacks(folder, cache=True, progress=progress.sub(0.0, 0.9))
    seriesOfFile, studyOfSeries, facts = {}, {}, {}
    for stack in found.stacks:
        for header in stack.headers:
            seriesOfFile[os.path.abspath(header.path)] = stack.series_instance_uid
        studyOfSeries[stack.series_instance_uid] = stack.headers[0].study_instance_uid
        facts.setdefault(stack.series_instance_uid, (stack.modality, stack.series_description, stack.headers[0].path))
    stacks, skipped = _bySeries(found, seriesOfFile)
    patients: dict[tuple[str, str], PatientRow] = {}
    studies: dict[str, StudyRow] = {}
    for uid in sorted(stacks):
        studyUid = studyOfSeries[uid]
        modality, description, firstFile = facts[uid]
        if studyUid not in studies:
            ds = pydicom.dcmread(firstFile, stop_before_pixels=True, force=True)
            key = (str(ds.get("PatientName", "") or ""), str(ds.get("PatientID", "") or ""))
            studies[studyUid] = StudyRow(studyUid, str(ds.get("StudyDate", "") or ""), str(ds.get("StudyDescription", "") or ""))
            patients.setdefault(key, PatientRow(*key)).studies.append(studies[studyUid])
        studies[studyUid].series += _seriesRows(uid, stacks[uid], (), modality, description, 0)
    for row in patients.values():
        row.studies.sort(key=lambda s: (s.date, s.studyInstanceUid))
    unsorted = [s for s in found.skipped]
    result = sorted(patients.values(), key=lambda p: (p.name, p.patientId))
    if unsorted:  # files that formed no stack: their series is not known without the database
        result.append(PatientRow("", "", [StudyRow("", series=[SeriesRow("", None, "", "files that form no image stack",
                                                                          len(unsorted), False, _skipReason(unsorted))])]))  # fmt: skip
    return result


def dicomDatabaseTree(source: str | os.PathLike, progressCallback: ProgressCallback | None = None) -> list[PatientRow]:
    """Patients -> studies -> series rows of a Slicer DICOM database folder or a DICOM folder.

    ``source``: the database folder (in the application ``slicer.dicomDatabase.databaseDirectory``)
    or a folder of DICOM files. The header index speeds up re-scans as for ``medprep scan``.
    Raises :class:`~MedPrepLib.errors.InputError` for a missing folder,
    :class:`~MedPrepLib.errors.CancelledError` when ``progressCallback`` returns True.

    >>> # logic = slicer.util.getModuleLogic("MedPrep")
    >>> # for patient in logic.dicomDatabaseTree(slicer.dicomDatabase.databaseDirectory):
    >>> #     for study in patient.studies:
    >>> #         print([(s.modality, s.slices, s.reason or "loadable") for s in study.series])
    """
    from MedPrepLib.dicom.slicerdb import is_slicer_database
    from MedPrepLib.errors import InputError

    folder = os.fspath(source)
    if not os.path.exists(folder):
        raise InputError("the DICOM folder or database does not exist", path=folder, hint="choose an existing folder")
    progress = as_progress(progressCallback)
    rows = _databaseTree(folder, progress) if is_slicer_database(folder) else _folderTree(folder, progress)
    progress.update("done", 1.0)
    return rows
