"""A DICOM folder or a Slicer DICOM database as export cases: patient -> study -> stack.

:func:`dicom_cases` scans the source header-only (:func:`MedPrepLib.sources.find_stacks`),
groups its stacks by StudyInstanceUID, picks each study's stacks with a
:class:`~.stack_selection.StackSelection` and returns one :class:`~.cases.SourceCase` per study
that has a stack for every channel. Everything else is an :class:`~.cases.Exclusion` with its
reason: every stack not taken, every study that is not a case, and the files the scan skipped
(localizers, dose reports, structured reports, RTSTRUCT/SEG objects...), counted by reason.

The patient of a study comes from one header read of its first file with pydicom
(PatientID with IssuerOfPatientID; else PatientName with PatientBirthDate; else the study is a
patient of its own, with a warning). Identity is never stored in the header index and never
kept as text: ``SourceCase.patient`` is a SHA-256 digest of it, and only ``key_row`` (for the
user's ``--key-file``) holds the PatientID. The same read gives the allow-listed sidecar facts.

Nothing returned names a source path, a UID or the patient, except ``key`` and ``key_row``
(never written to a dataset): exclusions say "stack s1a2b3c4d5 (CT, series 2, 'Topogram') of
study 1 of patient 3", with patients and studies numbered in an order that reveals nothing
(patients by digest, studies by UID), and a description that holds a piece of the patient's
name or IDs is left out. Errors name no path either; their ``detail`` does (``--verbose``).

Images are loaders (:func:`functools.partial` of :func:`~MedPrepLib.dicom.load.load_stack` on
the chosen stack with the geometry policy), which pickle, so worker processes can run them.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass

from ..dicom.codecs import PydicomMessages
from ..dicom.load import check_geometry_policy, load_stack
from ..dicom.scan import stack_summary
from ..dicom.stack import SKIP_REASONS, Skipped, Stack
from ..errors import CancelledError, InputError, MedPrepError
from ..progress import ProgressCallback, as_progress
from ..sources import find_stacks
from . import privacy
from .cases import Exclusion, SourceCase, SourceCases
from .stack_selection import (
    Channel,
    StackFacts,
    StackSelection,
    StudySelection,
    channels_of,
    resolve_modality,
    select_study,
)

log = logging.getLogger(__name__)

_SIDECAR_KEYWORDS = (
    *privacy._TEXT_FIELDS.values(), *privacy._NUMBER_FIELDS.values(), "PixelSpacing",
    "PatientAge", "PatientSex", "StudyDate", "AcquisitionDate", "SeriesDate",
)  # fmt: skip
_READ_KEYWORDS = tuple(dict.fromkeys((*privacy._IDENTITY_KEYWORDS, *_SIDECAR_KEYWORDS)))
"""The only elements read for a study's patient and sidecar (never pixels, never the rest)."""


def dicom_cases(
    path: str | os.PathLike,
    *,
    selection: StackSelection | None = None,
    channels: Mapping[str, str] | None = None,
    geometry_policy: str = "resample",
    include_age: bool = False,
    include_sex: bool = False,
    cache: str | os.PathLike | bool | None = False,
    progress: ProgressCallback | None = None,
    found=None,
) -> SourceCases:
    """The cases of a DICOM folder (searched recursively) or a Slicer DICOM database folder.

    Parameters
    ----------
    path:
        The folder, a Slicer database folder or its ``ctkDICOM.sql``, as the user typed it
        (it goes into ``key_row``).
    selection:
        Which stacks form a case (default :class:`StackSelection()`: the most common modality,
        the stack with the most slices, at least 10 slices).
    channels:
        Channel name -> SeriesDescription pattern (``{"T1": "t1_mprage", "FLAIR": "flair"}``);
        ``None`` for one channel named after the modality. The runner resamples the channels
        onto the first one's grid.
    geometry_policy:
        What the loaders do with tilted or gapped stacks (``"resample"`` or ``"reject"``, as
        :func:`~MedPrepLib.dicom.load.load_stack`).
    include_age, include_sex:
        Put ``age_years`` / ``sex`` into the sidecar (:func:`~.privacy.sidecar`).
    cache, progress:
        As for :func:`~MedPrepLib.sources.find_stacks`.
    found:
        The :class:`~MedPrepLib.dicom.scan.ScanResult` of ``path`` when the caller scanned it
        already (then it is not scanned again).

    Returns the cases sorted by key, the exclusions (stacks and studies in patient and study
    order, then skipped files by reason) and the source's warnings. Cases have no label
    (``label=None``). Raises :class:`InputError` when the source does not exist or cannot be
    scanned, :class:`~MedPrepLib.errors.ExportError` for an invalid selection.
    """
    selection = selection if selection is not None else StackSelection()
    check_geometry_policy(geometry_policy)
    channels_of(selection, channels, selection.modality or "image")  # a bad pattern fails before the scan
    given = os.fspath(path)
    if not os.path.exists(given):
        raise InputError(
            "the DICOM source does not exist",
            hint="give a DICOM folder or a Slicer DICOM database folder",
            detail=given,
        )
    prog = as_progress(progress)
    try:
        found = found if found is not None else find_stacks(given, cache=cache, progress=prog.sub(0.0, 0.8))
    except CancelledError:
        raise
    except MedPrepError as exc:
        _move_path_to_detail(exc)
        raise
    studies: dict[str, list[StackFacts]] = defaultdict(list)
    for stack in found.stacks:
        studies[_study_uid(stack)].append(StackFacts.of(stack))
    modality, modality_warning = resolve_modality(list(studies.values()), selection)
    chosen_channels = channels_of(selection, channels, modality or "image")
    out = SourceCases(warnings=[modality_warning] if modality_warning else [])
    if not found.stacks:
        out.warnings.append(f"the source holds no loadable image stack ({_files(len(found.skipped))} skipped)")
    if selection.series_uids:  # counted, never listed: UIDs identify the study
        present = {stack.series_instance_uid for stack in found.stacks}
        absent = sum(1 for uid in selection.series_uids if uid not in present)
        if absent:
            out.warnings.append(
                f"{absent} of the {len(selection.series_uids)} chosen series are not among the source's image stacks "
                "(not in the source, or no loadable image)"
            )
    base = os.path.dirname(given) if os.path.isfile(given) else given
    source = _Source(given, base, selection, modality, chosen_channels, geometry_policy)

    read = prog.sub(0.8, 1.0)
    patients: dict[str, list[tuple[str, _Study]]] = defaultdict(list)
    unknown: list[_Study] = []
    for n, (uid, stacks) in enumerate(sorted(studies.items()), 1):
        read.update("reading the patient of each study", (n - 1) / len(studies))
        study = _Study(uid, stacks, select_study(stacks, selection, chosen_channels, modality))
        study.read_patient(include_age, include_sex)
        if study.patient is None:
            unknown.append(study)
        else:
            patients[study.patient.digest].append((uid, study))
    read.update("reading the patient of each study", 1.0)

    for p, digest in enumerate(sorted(patients), 1):
        for s, (_, study) in enumerate(sorted(patients[digest], key=lambda item: item[0]), 1):
            study.label = f"study {s} of patient {p}"
            source.add(study, out)
    for n, study in enumerate(unknown, 1):
        study.label = f"study {n} of an unknown patient"
        out.excluded.append(
            Exclusion(
                study.label,
                "none of its files could be read again for the patient (changed or removed since the scan?)",
            )
        )
        out.excluded.extend(Exclusion(study.what(f.stack), "its study's patient is unknown") for f in study.stacks)
    out.excluded.extend(_skipped_files(found.skipped))
    out.cases.sort(key=lambda c: c.key)
    return out


def case_stack(case: SourceCase) -> Stack | None:
    """The stack of a DICOM case's first channel (what its loader loads), or ``None`` for a case
    of another source."""
    loader = next(iter(case.images.values()))
    args = getattr(loader, "args", ())
    return args[0] if args and isinstance(args[0], Stack) else None


def _move_path_to_detail(exc: MedPrepError) -> None:
    """Keep the error's path out of its message: into its detail (shown only with --verbose)."""
    if exc.path is not None:
        exc.detail = "; ".join(t for t in (exc.path, exc.detail) if t)
        exc.path = None
        exc.args = (str(exc),)


def _study_uid(stack: Stack) -> str:
    uid = next((h.study_instance_uid for h in stack.headers if h.study_instance_uid), "")
    return uid or f"no-study-uid:{stack.series_instance_uid}"  # such a stack is a study of its own


@dataclass(frozen=True)
class _Patient:
    """Who a study belongs to. ``digest`` is the patient key; ``patient_id`` goes to the key file only."""

    digest: str
    patient_id: str
    tokens: frozenset[str]
    warning: str | None
    sidecar: dict


def _text(ds, keyword: str) -> str:
    try:
        value = ds.get(keyword)
    except Exception:  # a value pydicom cannot decode counts as absent
        return ""
    return "" if value is None else str(value).strip()


_READ_ELEMENTS: dict[str, tuple[int, str]] = {
    "PatientName": (0x00100010, "PN"), "PatientID": (0x00100020, "LO"), "OtherPatientIDs": (0x00101000, "LO"),
    "OtherPatientNames": (0x00101001, "PN"), "PatientBirthDate": (0x00100030, "DA"),
    "PatientBirthName": (0x00101005, "PN"), "PatientMotherBirthName": (0x00101060, "PN"),
    "AccessionNumber": (0x00080050, "SH"), "InstitutionName": (0x00080080, "LO"),
    "InstitutionAddress": (0x00080081, "ST"), "ReferringPhysicianName": (0x00080090, "PN"),
    "PerformingPhysicianName": (0x00081050, "PN"), "OperatorsName": (0x00081070, "PN"),
    "StationName": (0x00081010, "SH"), "IssuerOfPatientID": (0x00100021, "LO"), "Modality": (0x00080060, "CS"),
    "Manufacturer": (0x00080070, "LO"), "ManufacturerModelName": (0x00081090, "LO"),
    "ConvolutionKernel": (0x00181210, "SH"), "MagneticFieldStrength": (0x00180087, "DS"), "KVP": (0x00180060, "DS"),
    "SliceThickness": (0x00180050, "DS"), "PixelSpacing": (0x00280030, "DS"), "PatientAge": (0x00101010, "AS"),
    "PatientSex": (0x00100040, "CS"), "StudyDate": (0x00080020, "DA"), "AcquisitionDate": (0x00080022, "DA"),
    "SeriesDate": (0x00080021, "DA"),
}  # fmt: skip
"""Tag and VR of each of :data:`_READ_KEYWORDS` (checked against pydicom's dictionary in the tests)."""


def _read_header(path: str):
    """The :data:`_READ_KEYWORDS` of a file, as a mapping with ``get``: through the fast parser
    when the file is plain (no pydicom import for the common case), else pydicom's dataset."""
    from ..dicom.fastheader import Declined, read_elements

    try:
        return read_elements(path, _READ_ELEMENTS)
    except (Declined, OSError):
        pass
    import pydicom

    try:
        with PydicomMessages(path):
            return pydicom.dcmread(path, stop_before_pixels=True, force=True, specific_tags=list(_READ_KEYWORDS))
    except Exception as exc:  # pydicom raises many types on a changed or broken file
        log.debug("%s: cannot read the patient: %s", path, exc)
        return None


class _Study:
    """One study while it is turned into a case or exclusions."""

    def __init__(self, uid: str, stacks: list[StackFacts], outcome: StudySelection):
        self.uid = uid
        self.stacks = stacks
        self.outcome = outcome
        self.patient: _Patient | None = None
        self.label = ""

    def read_patient(self, include_age: bool, include_sex: bool) -> None:
        """Read the patient from the first file of the first channel's stack (or of any stack)."""
        first = list(self.outcome.chosen.values())[:1] + sorted(self.stacks, key=StackFacts.rank)
        for facts in first:
            ds = _read_header(sorted(facts.stack.paths)[0])
            if ds is not None:
                self.patient = _patient(ds, self.uid, facts.stack, include_age, include_sex)
                return

    def what(self, stack: Stack) -> str:
        """A stack as exclusions name it: id, modality, series number, description (if it holds
        no piece of the patient's identity) and the study."""
        parts = [stack.modality or "modality unknown"]
        if stack.series_number is not None:
            parts.append(f"series {stack.series_number}")
        description = stack.series_description.strip()
        tokens = self.patient.tokens if self.patient else frozenset()
        if description and not any(t in description.lower() for t in tokens):
            parts.append(repr(description))
        return f"stack {stack.id} ({', '.join(parts)}) of {self.label}"


def _patient(ds, study_uid: str, stack: Stack, include_age: bool, include_sex: bool) -> _Patient:
    patient_id, name = _text(ds, "PatientID"), _text(ds, "PatientName")
    warning = None
    if patient_id:
        identity = ["PatientID", patient_id, _text(ds, "IssuerOfPatientID")]
    elif name:
        identity = ["PatientName", name, _text(ds, "PatientBirthDate")]
    else:
        identity = ["StudyInstanceUID", study_uid]
        warning = "it has no PatientID or PatientName: the study counts as a patient of its own"
    digest = hashlib.sha256(json.dumps(identity, ensure_ascii=False).encode("utf-8")).hexdigest()
    meta = {k: ds.get(k) for k in _SIDECAR_KEYWORDS if _text(ds, k)}
    meta.update({k: ds.get(k) for k in privacy._IDENTITY_KEYWORDS if _text(ds, k)})
    header = stack.headers[0]
    frame = next((f for f in header.frames if f.pixel_spacing), None)
    if "SliceThickness" not in meta and (header.slice_thickness or (frame and frame.slice_thickness)):
        meta["SliceThickness"] = header.slice_thickness or frame.slice_thickness  # enhanced: in the frame groups
    if "PixelSpacing" not in meta and frame is not None:
        meta["PixelSpacing"] = list(frame.pixel_spacing)
    facts = privacy.sidecar(meta, include_age=include_age, include_sex=include_sex)
    return _Patient(digest, patient_id, frozenset(privacy._identity_tokens(meta)), warning, facts)


@dataclass(frozen=True)
class _Source:
    """What every case of one source shares: where it is, the selection, the loaders' policy."""

    given: str
    base: str
    selection: StackSelection
    modality: str
    channels: tuple[Channel, ...]
    geometry_policy: str

    def add(self, study: _Study, out: SourceCases) -> None:
        """The study's case (when it is one) and exclusions into ``out``."""
        patient = study.patient
        warnings = [f"{study.label}: {patient.warning}"] if patient.warning else []
        out.warnings.extend(warnings)
        if study.uid.startswith("no-study-uid:"):
            out.warnings.append(f"{study.label} has no StudyInstanceUID: its stack is a study of its own")
        outcome = study.outcome
        for facts in study.stacks:
            if facts.stack.id in outcome.reasons:
                out.excluded.append(Exclusion(study.what(facts.stack), outcome.reasons[facts.stack.id]))
        if not outcome.is_case:
            out.excluded.append(Exclusion(study.label, self._why_no_case(outcome.missing)))
            return
        for name, facts in outcome.chosen.items():
            summary = stack_summary(facts.stack)
            warnings += [f"{name}: {w}" for w in summary["warnings"] if not any(t in w.lower() for t in patient.tokens)]
        first = next(iter(outcome.chosen.values())).stack
        study_uid = "" if study.uid.startswith("no-study-uid:") else study.uid
        out.cases.append(
            SourceCase(
                key=(patient.digest, study.uid),
                patient=patient.digest,
                images={
                    name: functools.partial(load_stack, f.stack, geometry_policy=self.geometry_policy)
                    for name, f in outcome.chosen.items()
                },
                modality=first.modality,
                warnings=tuple(warnings),
                key_row=(patient.patient_id, study_uid, self.given),
                fingerprint=self.fingerprint({n: f.stack for n, f in outcome.chosen.items()}),
                sidecar=patient.sidecar,
            )
        )

    def _why_no_case(self, missing: list[str]) -> str:
        rule = self.selection.describe(self.modality or None)
        if len(self.channels) == 1 and self.channels[0].pattern is None:
            return f"no stack passes the selection ({rule})"
        patterns = ", ".join(f"{c.name} {c.pattern!r}" for c in self.channels if c.name in missing)
        which = f"channel{'s' if len(missing) > 1 else ''} {', '.join(missing)}"
        return f"no stack for {which} (description pattern {patterns}; selection: {rule})"

    def fingerprint(self, chosen: Mapping[str, Stack]) -> str:
        """SHA-256 of the chosen files (path relative to the source, size, mtime), their frames,
        and the selection: a re-run over changed inputs gives another value."""
        payload = {
            "selection": self.selection.to_dict(),
            "modality": self.modality,
            "channels": [[c.name, c.pattern] for c in self.channels],
            "geometry_policy": self.geometry_policy,
            "stacks": {
                name: {
                    "id": s.id,
                    "files": sorted([_relative(h.path, self.base), h.size_bytes, h.mtime_ns] for h in s.headers),
                    "frames": sorted([_relative(p, self.base), list(f)] for p, f in (s.frame_selection or {}).items()),
                }
                for name, s in chosen.items()
            },
        }
        return hashlib.sha256(json.dumps(payload, sort_keys=True).encode("utf-8")).hexdigest()


def _relative(path: str, base: str) -> str:
    try:
        return os.path.relpath(path, os.path.abspath(base)).replace(os.sep, "/")
    except ValueError:  # another drive (Windows): the absolute path
        return path


def _skipped_files(skipped: list[Skipped]) -> list[Exclusion]:
    """The files the scan left out, counted by reason (no names: they may carry the patient's)."""
    counts = Counter(s.reason for s in skipped)
    return [Exclusion(_files(n), SKIP_REASONS.get(reason, reason)) for reason, n in sorted(counts.items())]


def _files(n: int) -> str:
    return f"{n} file" if n == 1 else f"{n} files"


__all__ = ["StackSelection", "dicom_cases"]
