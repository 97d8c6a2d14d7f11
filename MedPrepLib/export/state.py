"""An export's memory between runs: the plan it is making, and each finished case.

While an export runs, its dataset folder holds a work folder :data:`WORK_FOLDER`::

    .medprep-export/plan.json          the plan: format, options, recipe, cases and their input fingerprints
    .medprep-export/statistics.json    the dataset statistics, once measured
    .medprep-export/cases/<case>.json  one record per finished case (exported or quarantined)

A case record is written after the case's files, so a record means the case is done. A re-run
with the same plan (the same command on unchanged inputs) skips every recorded case and
finishes the dataset; the work folder is removed after ``medprep.json``, the last file of a
complete dataset. A different plan is refused unless the user asks to overwrite.

The plan's digest (SHA-256 of its canonical JSON) is what a re-run compares; ``medprep.json``
keeps it, so a complete dataset is recognised too.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from ..atomic import make_folder
from ..errors import ExportError, OutputExistsError
from ..jsonfiles import read_json, write_json

WORK_FOLDER = ".medprep-export"
DATASET_RECORD = "medprep.json"
"""The provenance file of a complete dataset, written last."""
DATASET_RECORD_FORMAT = "medprep-dataset"


def canonical_json(value: Any) -> bytes:
    """The canonical bytes of a JSON value: sorted keys, no spaces, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def plan_digest(plan: dict) -> str:
    """SHA-256 (hex) of the plan's canonical JSON."""
    return hashlib.sha256(canonical_json(plan)).hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    """SHA-256 (hex) of a file's bytes, read in 4 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(4 << 20):
            h.update(block)
    return h.hexdigest()


class ExportState:
    """The work folder of the export into ``dataset_folder``."""

    def __init__(self, dataset_folder: str | os.PathLike):
        self.folder = Path(dataset_folder)
        self.root = self.folder / WORK_FOLDER

    # -- what is in the folder -------------------------------------------------------------------
    def existing_digest(self) -> tuple[str, str | None]:
        """What the dataset folder holds: ``("missing" | "empty", None)``, ``("complete", digest)``
        (a finished MedPrep dataset), ``("partial", digest)`` (an interrupted one) or
        ``("foreign", None)`` (files that are not a MedPrep export)."""
        if not self.folder.exists():
            return "missing", None
        if not self.folder.is_dir():
            return "foreign", None
        if (self.folder / DATASET_RECORD).is_file():
            try:
                return "complete", read_dataset_record(self.folder).get("plan_digest")
            except ExportError:  # unreadable, or another tool's medprep.json
                return "foreign", None
        plan = self.root / "plan.json"
        if plan.is_file():
            try:
                return "partial", plan_digest(read_json(plan, what="export plan", invalid=ExportError))
            except ExportError:
                return "partial", None
        if not any(os.scandir(self.folder)):
            return "empty", None
        return "foreign", None

    def prepare(self, plan: dict, *, overwrite: bool) -> str:
        """Make the dataset folder ready for ``plan``; returns ``"new"``, ``"resume"`` or
        ``"complete"`` (nothing left to do).

        A folder holding another plan, or files that are not a MedPrep export, is refused
        (:class:`OutputExistsError`) unless ``overwrite``; with it, a MedPrep dataset (complete or
        not) is removed first, while a folder of other files is still refused — MedPrep deletes
        only what it made.
        """
        kind, digest = self.existing_digest()
        wanted = plan_digest(plan)
        if kind in ("complete", "partial") and digest == wanted:
            return "complete" if kind == "complete" else "resume"
        if kind == "foreign":
            raise OutputExistsError(
                "the output folder holds files that are not a MedPrep export",
                path=self.folder,
                hint="export into a new or empty folder",
            )
        if kind in ("complete", "partial"):
            if not overwrite:
                raise OutputExistsError(
                    f"a {'' if kind == 'complete' else 'partly written '}dataset made from other inputs or options is there",
                    path=self.folder,
                    hint="re-run the command that made it to finish it, export elsewhere, or replace it (--overwrite)",
                )
            shutil.rmtree(self.folder)
        make_folder(self.folder)
        make_folder(self.root / "cases")
        write_json(plan, self.root / "plan.json", overwrite=True)
        return "new"

    # -- records ---------------------------------------------------------------------------------
    def record(self, case_id: str) -> dict | None:
        """The record of a finished case, or ``None``."""
        path = self.root / "cases" / f"{case_id}.json"
        if not path.is_file():
            return None
        try:
            return read_json(path, what="case record", invalid=ExportError)
        except ExportError:
            return None  # a damaged record: the case is done again

    def write_record(self, case_id: str, record: dict) -> None:
        write_json(record, self.root / "cases" / f"{case_id}.json", overwrite=True)

    def statistics(self) -> dict | None:
        path = self.root / "statistics.json"
        return read_json(path, what="dataset statistics", invalid=ExportError) if path.is_file() else None

    def write_statistics(self, statistics: dict) -> None:
        write_json(statistics, self.root / "statistics.json", overwrite=True)

    def remove(self) -> None:
        """Remove the work folder (after ``medprep.json`` is written)."""
        shutil.rmtree(self.root, ignore_errors=True)


def read_dataset_record(dataset_folder: str | os.PathLike) -> dict:
    """The ``medprep.json`` of a complete dataset, or an :class:`ExportError` saying why not."""
    path = Path(dataset_folder) / DATASET_RECORD
    if not path.is_file():
        partial = (Path(dataset_folder) / WORK_FOLDER).is_dir()
        raise ExportError(
            "this folder is not a complete MedPrep dataset (no medprep.json)",
            path=dataset_folder,
            hint="finish the export by running its command again" if partial else "give the dataset folder (DatasetNNN_Name)",
        )
    record = read_json(path, what="dataset record", invalid=ExportError)
    if not isinstance(record, dict) or record.get("format") != DATASET_RECORD_FORMAT:
        raise ExportError("medprep.json is not a MedPrep dataset record", path=path)
    return record


def case_provenance(dataset_folder: str | os.PathLike, case_id: str) -> dict:
    """The recipe provenance of ``case_id``'s first channel in an exported dataset: what
    ``medprep restore --dataset DIR --case ID`` undoes to map a prediction back onto the
    case's original grid."""
    record = read_dataset_record(dataset_folder)
    for case in record.get("cases", []):
        if case.get("case") == case_id:
            provenance = case.get("provenance") or {}
            channels = record.get("dataset", {}).get("channels") or list(provenance)
            if not channels or channels[0] not in provenance:
                raise ExportError(f"case {case_id} has no recipe provenance in medprep.json", path=dataset_folder)
            return provenance[channels[0]]
    known = [c.get("case") for c in record.get("cases", [])]
    quarantined = {q.get("case"): q.get("reason") for q in record.get("quarantined", [])}
    if case_id in quarantined:
        raise ExportError(f"case {case_id} was quarantined, not exported: {quarantined[case_id]}", path=dataset_folder)
    shown = ", ".join(known[:3]) + (" ..." if len(known) > 3 else "")
    raise ExportError(f"the dataset has no case {case_id!r}", path=dataset_folder, hint=f"its cases: {shown}" if known else None)
