"""The runner's side of the QC report: the exported cases' records turned into a :class:`~.report.Report`.

Only what the records hold goes in — case ids, grids, value ranges, label volumes, warnings,
reasons — plus the montages the cases wrote (``qc/<case>.png``) and patient *counts* per part of
the split (the patient keys stay in memory). Nothing here reads a source file or header.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from .. import __version__
from .cases import CaseFiles, Exclusion
from .formats import Format
from .report import QuarantinedCase, Report, ReportCase, split_rows, write_report
from .splits import Splits


def _report_case(files: CaseFiles, record: dict, montage: bytes | None) -> ReportCase:
    facts = record["facts"]
    first = next(iter(facts["value_range"]))
    label = facts.get("label") or {}
    intensity = facts.get("intensity")
    return ReportCase(
        files.case_id,
        size=tuple(facts["shape"]),
        spacing=tuple(facts["spacing_mm"]),
        split=files.split,
        fold=files.fold,
        channels=tuple(facts["value_range"]),
        orientation=facts["orientation"],
        value_range=tuple(facts["value_range"][first]),
        intensity=tuple(intensity) if intensity else None,
        label_volumes_ml=dict(label.get("volumes_ml", {})),
        warnings=tuple(record.get("warnings", ())),
        montage=montage,
    )


def write_dataset_report(
    path: str | os.PathLike,
    layout: Format,
    files: Sequence[CaseFiles],
    records: Mapping[str, dict],
    quarantined: Mapping[str, str],
    excluded: Sequence[Exclusion],
    labels: Mapping[str, int],
    warnings: Sequence[str],
    patients: Mapping[str, str],
) -> Path:
    """Write the dataset's HTML report at ``path`` (inside the dataset folder)."""
    cases = []
    for f in files:
        montage_path = layout.folder / "qc" / f"{f.case_id}.png"
        montage = montage_path.read_bytes() if montage_path.is_file() else None
        cases.append(_report_case(f, records[f.case_id], montage))
    n_folds = max((f.fold for f in files if f.fold is not None), default=-1) + 1
    splits = Splits(
        test=tuple(sorted(f.case_id for f in files if f.split == "test")),
        folds=tuple(tuple(sorted(f.case_id for f in files if f.fold == k)) for k in range(n_folds)),
    )
    train_without_fold = [f.case_id for f in files if f.split == "train" and f.fold is None]
    if train_without_fold:  # no cross-validation: one "train" row
        splits = Splits(test=splits.test, folds=(tuple(sorted(train_without_fold)),))
    report = Report(
        cases=cases,
        splits=split_rows(splits, patients),
        quarantined=[QuarantinedCase(c, r) for c, r in sorted(quarantined.items())],
        excluded=list(excluded),
        labels=dict(labels),
        warnings=list(warnings),
        facts={
            "format": layout.name,
            "dataset": layout.folder.name,
            "channels": ", ".join(layout.channels),
            "cases exported": str(len(files)),
            "cases quarantined": str(len(quarantined)),
            "MedPrep": __version__,
        },
    )
    return write_report(path, report, overwrite=True)
