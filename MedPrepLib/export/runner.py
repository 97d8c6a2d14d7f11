"""The export runner: cases in, a complete, checked dataset out — resumable, parallel, deterministic.

:func:`export_dataset` is the whole job (the CLI's ``medprep export`` is argument handling over it):

1. **Cases.** The source's cases get pseudonyms (:func:`~.privacy.assign_case_ids`: the same
   inputs give the same ids) and their part: train or test, by patient (:func:`~.splits.make_splits`).
2. **Plan.** Format, options, recipes, label rules and every case's input fingerprint make the
   plan; its digest decides whether the dataset folder is new, an interrupted export of the same
   plan (resumed), a finished one (nothing to do) or another dataset (refused without
   ``overwrite``). See :mod:`.state`.
3. **Statistics.** When a recipe step needs dataset statistics, they are measured over the
   *training* cases only (no leakage from the test part), once, and kept.
4. **Cases, in parallel.** Each case not yet done is exported by :func:`~.case_job.run_case`, in
   this process (``workers=1``) or in worker processes; a case that fails is quarantined with its
   reason and the batch goes on. Every file is staged and renamed; a case's record is written
   after its files.
5. **Index, last.** The folds are dealt over the exported training cases, then ``quarantine.csv``,
   the QC report, the format's index (``dataset.json``, ``splits_final.json``, ``manifest.csv``)
   and finally ``medprep.json``; then the work folder goes. A half-done dataset never looks
   complete, and a resumed export ends byte-identical to an uninterrupted one whatever the
   number of workers.

No patient data and no source path is written anywhere (the key file, only where asked, outside
the dataset, is the exception) and none appears in progress labels or warnings.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import logging
import os
import platform
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import __version__
from ..atomic import atomic_write_text, remove_stale_staging
from ..dicom.scan import header_helpers
from ..errors import (
    CancelledError,
    ExportError,
    MedPrepError,
    MissingDependencyError,
    OutputError,
    RecipeError,
    require_installed,
)
from ..jsonfiles import write_json
from ..progress import as_progress
from ..recipe import Recipe
from ..recipe.run import software_versions
from ..recipe.statistics import compute_statistics, steps_needing_statistics
from .case_job import QC_FOLDER, CaseJob, prepare_case, remove_case_files, run_case
from .cases import Exclusion, SourceCase, SourceCases
from .formats import Format, dataset_format
from .label_rules import LabelRules
from .privacy import KeyRow, assign_case_ids, check_key_file_path, scrub, write_key_file
from .splits import LABEL_PRESENCE, SplitCase, check_split_options, make_splits, test_count
from .state import DATASET_RECORD, DATASET_RECORD_FORMAT, ExportState, file_sha256, plan_digest, read_dataset_record
from .workers import WorkerPool, auto_workers

log = logging.getLogger(__name__)

QUARANTINE_FILE = "quarantine.csv"
REPORT_FILE = f"{QC_FOLDER}/report.html"
EXIT_OK, EXIT_USAGE, EXIT_QUARANTINED = 0, 2, 4


@dataclass
class ExportReport:
    """What an export did. ``exit_code``: 0 every selected case exported, 4 some quarantined."""

    dataset_folder: Path
    format: str
    exported: list[str] = field(default_factory=list)
    quarantined: dict[str, str] = field(default_factory=dict)
    """Case id -> reason."""
    excluded: list[tuple[str, str]] = field(default_factory=list)
    """(what, reason) of every input left out by the source (unselected stacks, bad rows)."""
    warnings: list[str] = field(default_factory=list)
    report: Path | None = None
    resumed: bool = False
    already_complete: bool = False

    @property
    def exit_code(self) -> int:
        return EXIT_QUARANTINED if self.quarantined else EXIT_OK


def default_recipe(modality: str) -> Recipe:
    """The recipe of an export without ``--recipe``: no intensity or spacing change (nnU-Net
    preprocesses itself). CT: padding and out-of-field voxels to air, then int16 HU; other
    modalities: the values as loaded."""
    if modality.upper() == "CT":
        return Recipe.from_dict({"version": 1, "steps": [{"op": "pad_to_air"}, {"op": "cast", "dtype": "int16"}]})
    return Recipe.from_dict({"version": 1, "steps": []})


def _quarantine_reason(exc: BaseException) -> str:
    if isinstance(exc, MedPrepError):
        text = exc.message + (f" ({exc.hint})" if exc.hint else "")
        return " ".join(text.split())
    return f"unexpected {type(exc).__name__}; re-run with --verbose for the details"


def run_job(job: CaseJob) -> dict:
    """:func:`~.case_job.run_case`, with a failure turned into a quarantine record (output
    errors and cancellation still stop the export); texts scrubbed of UIDs and stack ids."""
    record = _run_job(job)
    if "reason" in record:
        record["reason"] = scrub(record["reason"])
    if "warnings" in record:
        record["warnings"] = list(dict.fromkeys(scrub(w) for w in record["warnings"]))
    return record


def _run_job(job: CaseJob) -> dict:
    try:
        return run_case(job)
    except (OutputError, CancelledError, KeyboardInterrupt):
        raise
    except MemoryError as exc:
        remove_case_files(job)
        return {"case": job.case_id, "status": "quarantined", "reason": _quarantine_reason(exc) + " (out of memory)"}
    except Exception as exc:  # noqa: BLE001 - a bad case must not stop the batch
        log.debug("case %s failed", job.case_id, exc_info=True)  # the details, for --verbose
        remove_case_files(job)
        return {"case": job.case_id, "status": "quarantined", "reason": _quarantine_reason(exc)}


FLAG_OPTIONS = frozenset(
    {"--overwrite", "--allow-reserved-id", "--no-qc", "--include-age", "--include-sex", "--verbose", "-v", "-h", "--help"}
)
"""The options of ``medprep export`` that take no value (``Testing/test_export_runner.py`` holds
this to the CLI's parser): a word after one of them is a positional argument, a path."""


def sanitized_command(argv: Sequence[str] | None) -> str | None:
    """The command as recorded in ``medprep.json``: path arguments replaced by what they are
    (``<SOURCE>``, ``<OUT>``, ``<RECIPE>``...), since paths often hold patient names, the
    SeriesInstanceUIDs of ``--series-uid`` by ``<SERIES_UID>`` (a UID identifies a study), and
    ``--workers`` left out, since it does not change the output. Options abbreviated as argparse
    allows (``--series-u``, ``--over``) are read as the option they stand for."""
    if argv is None:
        return None
    words: list[str] = []
    positional = iter(["<SOURCE>", "<OUT>"])
    skip = False
    args = [_unabbreviated(a) for a in argv]
    for n, arg in enumerate(args):
        if skip:
            skip = False
            continue
        name, eq, value = arg.partition("=")
        if name == "--workers":
            skip = not eq
            continue
        if name in _HIDDEN_OPTIONS:
            words.append(f"{name}={_HIDDEN_OPTIONS[name]}" if eq else name)
            if not eq:
                words.append(_HIDDEN_OPTIONS[name])
                skip = True
            continue
        if arg.startswith("-"):
            words.append(arg)
            continue
        prev = args[n - 1] if n else ""
        if prev.startswith("-") and "=" not in prev and prev not in FLAG_OPTIONS:
            words.append(arg)  # an option's value
        else:
            words.append(next(positional, "<PATH>"))
    return "medprep export " + " ".join(words)


_HIDDEN_OPTIONS = {
    "--recipe": "<RECIPE>", "--cohort": "<COHORT>", "--labels": "<LABELS>", "--label-map": "<LABEL_MAP>",
    "--key-file": "<KEY_FILE>", "--secret-file": "<SECRET_FILE>", "--series-uid": "<SERIES_UID>",
}  # fmt: skip
"""The options whose values :func:`sanitized_command` replaces: paths, and SeriesInstanceUIDs."""


def _unabbreviated(arg: str) -> str:
    """``arg`` with a long option argparse would take as an abbreviation (``--series-u=X``) spelled
    out, when it abbreviates exactly one option the sanitiser knows; else ``arg``. (An
    abbreviation of several options is refused by argparse, so it is never recorded.)"""
    name, eq, value = arg.partition("=")
    known = (*FLAG_OPTIONS, *_HIDDEN_OPTIONS, "--workers")
    if not name.startswith("--") or name in known:
        return arg
    full = [option for option in known if option.startswith(name)]
    return f"{full[0]}{eq}{value}" if len(full) == 1 else arg


def _clamped_folds(folds: int, train_patients: int, warnings: list[str]) -> int:
    if train_patients >= folds:
        return folds
    if train_patients >= 2:
        warnings.append(f"{train_patients} training patients: {train_patients} folds instead of {folds}")
        return train_patients
    if train_patients == 1:
        warnings.append("one training patient: no cross-validation folds")
    return 0


def _split(split_cases: list[SplitCase], *, folds: int, test_fraction: float, seed: int, warnings: list[str]):
    """The test part and the folds: :func:`~.splits.make_splits`, with fewer folds (said in a
    warning) when fewer training patients than ``folds`` remain, and none below two. Returns
    (test case ids, {training case id: fold})."""
    labelled = {c.patient for c in split_cases if c.labelled}
    fixed_test = {c.patient for c in split_cases if c.labelled and c.split == "test"}
    train_patients = len(labelled) - max(test_count(test_fraction, len(labelled)), len(fixed_test))
    k = _clamped_folds(folds, train_patients, warnings)
    if k < 2:
        test = {c.case_id for c in split_cases if not c.labelled or c.patient in fixed_test}
        return test, {}
    splits = make_splits(split_cases, folds=k, test_fraction=test_fraction, seed=seed)
    warnings.extend(splits.warnings)
    fold_of = {c: n for n, fold in enumerate(splits.folds) for c in fold}
    return set(splits.test), fold_of


def export_dataset(
    source: SourceCases | str | os.PathLike,
    out: str | os.PathLike,
    *,
    fmt: str = "nnunet",
    recipe: Recipe | dict | str | os.PathLike | None = None,
    label_map: str | os.PathLike | dict | None = None,
    labels_dir: str | os.PathLike | None = None,
    cohort: str | os.PathLike | None = None,
    grid_policy: str = "reject",
    dataset_id: int | None = None,
    dataset_name: str | None = None,
    allow_reserved_id: bool = False,
    folds: int = 5,
    test_fraction: float = 0.0,
    seed: int = 0,
    stratify: str | None = None,
    workers: int | str = 1,
    key_file: str | os.PathLike | None = None,
    secret: str | bytes | None = None,
    prefix: str = "case",
    overwrite: bool = False,
    qc: bool = True,
    source_options: dict[str, Any] | None = None,
    command: Sequence[str] | None = None,
    progress=None,
    log: Callable[[str], None] | None = None,
) -> ExportReport:
    """Export ``source`` as a ``fmt`` dataset into ``out`` (see the module doc and ``medprep export --help``).

    ``source`` is what :func:`~.source_reader.read_source` reads (a DICOM folder, a Slicer database
    folder, a cohort table, an image folder) or the :class:`~.cases.SourceCases` a caller built.
    ``recipe``: a Recipe, its JSON dict or a recipe file (default :func:`default_recipe` per
    channel modality). ``workers``: a number or ``"auto"``. ``command``: the argument list of
    the CLI, recorded (sanitised) in ``medprep.json``. ``log`` hears one line per notable event
    (no paths, no patient data). Raises :class:`ExportError` (and other MedPrep errors) for what
    stops the whole export: bad options, nothing to export, an output that exists.
    """
    check_split_options(folds, test_fraction)  # before anything is read or made
    if qc:  # the QC montages and report need the qc extra: say so before any work, not per case
        for module, package in (("PIL", "Pillow"), ("matplotlib", "matplotlib")):
            try:
                require_installed(module, feature="the QC report of an export", package=package)  # not imported yet
            except MissingDependencyError as exc:
                raise MissingDependencyError(exc.message, hint='pip install "medprep[qc]", or export without QC (--no-qc)') from None
    root = as_progress(progress)
    say = log or (lambda line: None)
    warnings: list[str] = []

    if workers != "auto" and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ExportError(f"--workers {workers!r}: give a number >= 1 or 'auto'")
    size = auto_workers() if workers == "auto" else workers
    pool = WorkerPool(size, qc=qc) if size > 1 else None  # started now: worker imports overlap the scan
    try:
        with header_helpers(pool, pool.size) if pool is not None else contextlib.nullcontext():
            report = _export(source, out, pool=pool, fmt=fmt, recipe=recipe, label_map=label_map,
                           labels_dir=labels_dir, cohort=cohort, grid_policy=grid_policy, dataset_id=dataset_id,
                           dataset_name=dataset_name, allow_reserved_id=allow_reserved_id, folds=folds,
                           test_fraction=test_fraction, seed=seed, stratify=stratify, key_file=key_file, secret=secret,
                           prefix=prefix, overwrite=overwrite, qc=qc, source_options=source_options, command=command,
                           root=root, say=say, warnings=warnings)  # fmt: skip
    except BaseException:
        if pool is not None:
            pool.kill()  # stop at once; a run over its cases already removed its workers' staging
        raise
    if pool is not None:
        pool.close()
    return report


def _export(source, out, *, pool, fmt, recipe, label_map, labels_dir, cohort, grid_policy, dataset_id,
            dataset_name, allow_reserved_id, folds, test_fraction, seed, stratify, key_file, secret, prefix,
            overwrite, qc, source_options, command, root, say, warnings) -> ExportReport:  # fmt: skip
    """The body of :func:`export_dataset`, with the worker pool (or ``None``) already starting."""
    # 1. the cases ------------------------------------------------------------------------------
    from ..segmentation.label_table import segment_label_table

    segment_table = segment_label_table(label_map)  # the label map plus the structure-name rules (one file serves both)
    if not isinstance(source, SourceCases):
        from .source_reader import read_source

        source = read_source(
            source, cohort=cohort, labels_dir=labels_dir, segment_table=segment_table,
            progress=root.sub(0.0, 0.05), **(source_options or {}),
        )  # fmt: skip
    if segment_table is None and source.label_table is not None:
        segment_table = source.label_table
    warnings.extend(scrub(w) for w in source.warnings)
    source = SourceCases(source.cases, [Exclusion(scrub(e.what), scrub(e.reason)) for e in source.excluded], warnings)
    if not source.cases:
        reasons = "; ".join(f"{e.what}: {e.reason}" for e in source.excluded[:5])
        raise ExportError("nothing to export: the source holds no usable case" + (f" ({reasons})" if reasons else ""))
    ids = assign_case_ids([c.key for c in source.cases], prefix=prefix, secret=secret)
    cases = sorted(((ids[c.key], c) for c in source.cases), key=lambda item: item[0])
    channels = list(cases[0][1].images)
    for case_id, case in cases:
        if list(case.images) != channels:
            raise ExportError(
                f"case {case_id} has channels {list(case.images)}, the first case {channels}",
                hint="every case needs the same channels, in the same order",
            )
    modality = cases[0][1].modality
    if fmt == "nnunet" and channels == ["image"] and modality.upper() == "CT":
        channels = ["CT"]  # nnU-Net picks its CT normalisation by this name
    layout = dataset_format(
        fmt, out, channels, dataset_id=dataset_id, dataset_name=dataset_name, allow_reserved_id=allow_reserved_id
    )
    label_rules = LabelRules.from_options(
        _label_table(segment_table, [case for _, case in cases], warnings),
        grid_policy=grid_policy,
        consecutive=layout.label_values_consecutive,
    )
    recipes = _recipes(recipe, channels, cases)
    labelled = {case_id: case.label is not None for case_id, case in cases}
    if not any(labelled.values()):
        warnings.append("no case has a label: every case goes to the test part (an inference set)")

    # 2. the plan and the dataset folder -------------------------------------------------------
    split_cases = _split_cases(cases, stratify, label_rules)
    test_ids, _ = _split(split_cases, folds=folds, test_fraction=test_fraction, seed=seed, warnings=warnings)
    part = {case_id: ("test" if case_id in test_ids or not labelled[case_id] else "train") for case_id, _ in cases}
    plan = {
        "format": fmt,
        "dataset": layout.folder.name,
        "channels": list(channels),
        "recipes": {name: r.to_dict() for name, r in recipes.items()},
        "labels": label_rules.to_dict(),
        "segment_rules": segment_table.to_dict() if segment_table is not None else None,
        "options": {
            "folds": folds, "test_fraction": test_fraction, "seed": seed, "stratify": stratify, "prefix": prefix,
            "grid_policy": grid_policy, "qc": bool(qc), "pseudonym_secret": secret is not None,
        },  # fmt: skip
        "cases": [{"case": case_id, "input": case.fingerprint, "part": part[case_id]} for case_id, case in cases],
    }
    state = ExportState(layout.folder)
    if key_file is not None:
        check_key_file_path(key_file, layout.folder)
    status = state.prepare(plan, overwrite=overwrite)
    report = ExportReport(layout.folder, fmt, excluded=[(e.what, e.reason) for e in source.excluded])
    report.resumed = status == "resume"
    if status == "complete":
        say(f"{layout.folder.name} is already complete: nothing to do")
        state.remove()
        _clean_staging(layout)
        return _report_from_record(report, layout)
    if key_file is not None:
        rows = [KeyRow(case_id, *case.key_row) for case_id, case in cases]
        write_key_file(key_file, rows, dataset_folder=layout.folder, overwrite=True)

    # 3. statistics over the training cases ------------------------------------------------------
    quarantined: dict[str, str] = {}
    statistics = state.statistics()
    needs = {name: r for name, r in recipes.items() if steps_needing_statistics(r)}
    if needs and statistics is None:
        train = [(case_id, case) for case_id, case in cases if part[case_id] == "train"]
        if not train:
            raise ExportError("the recipe needs dataset statistics, but no case is in the training part")
        statistics = _measure_statistics(needs, channels, train, label_rules, seed, quarantined, root.sub(0.05, 0.15))
        state.write_statistics({"statistics": statistics, "quarantined": quarantined})
    elif statistics is not None:
        quarantined.update(statistics.get("quarantined", {}))
        statistics = statistics["statistics"]
    statistics = statistics or {}

    # 4. the cases ----------------------------------------------------------------------------
    records: dict[str, dict] = {}
    jobs = []
    for case_id, case in cases:
        if case_id in quarantined:
            records[case_id] = {"case": case_id, "status": "quarantined", "reason": quarantined[case_id]}
            continue
        record = state.record(case_id)
        if record is not None:
            records[case_id] = record
            continue
        files = layout.case_files(case_id, part[case_id], labelled=labelled[case_id])
        jobs.append(CaseJob(case_id, case, files, layout, {n: r.to_dict() for n, r in recipes.items()},
                            statistics, label_rules, seed, qc))  # fmt: skip
    if records:
        say(f"resuming: {len(records)} of {len(cases)} cases already done")
    n_workers = min(pool.size, len(jobs)) if pool is not None else 1
    case_progress = root.sub(0.15, 0.95)
    done = len(records)

    def finished(record: dict) -> None:
        nonlocal done
        state.write_record(record["case"], record)
        records[record["case"]] = record
        done += 1
        if record["status"] == "quarantined":
            say(f"{record['case']} quarantined: {record['reason']}")
        case_progress.update(f"{record['case']} done ({done} of {len(cases)})", done / len(cases))

    case_progress.update(f"exporting {len(cases)} cases", done / len(cases))
    if n_workers <= 1:
        for job in jobs:
            finished(run_job(job))
    else:
        if qc:  # this process mostly waits for the workers: meanwhile it loads what the report draws with
            from .report import load_plotting_in_background

            load_plotting_in_background()
        pool.run(jobs, run_job, finished, [layout.folder / sub for sub in ("", *layout.scanned_folders(), QC_FOLDER)])
        pool.release()  # every case is in: the workers exit while the index is written

    # 5. the index, last -----------------------------------------------------------------------
    root.update("writing the index", 0.95)
    return _finish(report, layout, cases, records, part, plan, recipes, statistics, label_rules, source,
                   warnings, folds=folds, seed=seed, stratify=stratify, qc=qc, command=command,
                   segment_table=segment_table)  # fmt: skip


def _label_table(segment_table, cases: list[SourceCase], warnings: list[str]):
    """The LabelTable every case's label is checked against: the label map's, without its remap
    when every label comes from a segmentation (the remap is of label-file values; a
    segmentation's values are already the table's, by name), or ``None``."""
    if segment_table is None:
        return None
    table = segment_table.table
    labels = [case.label for case in cases if case.label is not None]
    if table.remap and labels and all(getattr(label, "needs_image", False) for label in labels):
        from .labels import LabelTable

        warnings.append("the label map's remap is for label files; the segmentations are valued by segment name")
        return LabelTable(table.labels)
    return table


def _recipes(recipe, channels: list[str], cases) -> dict[str, Recipe]:
    if recipe is None:
        first = cases[0][1]
        return {name: default_recipe(first.modality if n == 0 else "") for n, name in enumerate(channels)}
    if isinstance(recipe, Recipe):
        parsed = recipe
    elif isinstance(recipe, dict):
        parsed = Recipe.from_dict(recipe)
    else:
        parsed = Recipe.load(recipe)
    return {name: parsed for name in channels}


def _split_case(case_id: str, case: SourceCase, stratify: str | None, labels_present=None, *, split=None) -> SplitCase:
    """The split's view of a case (:meth:`~.splits.SplitCase.from_case`); ``split`` overrides
    the source's fixed part."""
    view = SplitCase.from_case(case.to_case(case_id), stratify=stratify, labels_present=labels_present)
    return view if split is None else dataclasses.replace(view, split=split)


def _split_cases(cases, stratify: str | None, label_rules: LabelRules) -> list[SplitCase]:
    """Every case's split view before export; ``--stratify labels`` reads each label once here."""
    return [
        _split_case(case_id, case, stratify,
                    label_rules.present_values(case.label, next(iter(case.images.values())))
                    if stratify == LABEL_PRESENCE and case.label is not None else None)  # fmt: skip
        for case_id, case in cases
    ]


def _measure_statistics(needs, channels, train, label_rules, seed, quarantined, progress) -> dict:
    """Dataset statistics per channel over the training cases; a case that cannot be prepared
    is quarantined here (and not exported)."""

    def prepared():
        for case_id, case in train:
            if case_id in quarantined:
                continue
            try:
                yield case_id, prepare_case(case, label_rules)
            except (OutputError, CancelledError):
                raise
            except Exception as exc:  # noqa: BLE001
                quarantined[case_id] = scrub(_quarantine_reason(exc))

    while True:  # again without the cases quarantined on the way: nnU-Net's sample size depends on the count
        before = len(quarantined)
        n_cases = sum(1 for case_id, _ in train if case_id not in quarantined)
        if n_cases == 0:
            raise ExportError("no training case could be read for the dataset statistics", hint="see the quarantine reasons")
        statistics = {}
        try:
            for k, (name, recipe) in enumerate(needs.items()):
                index = channels.index(name)

                def pairs(index=index):
                    for _, (vols, label, _, _) in prepared():
                        yield vols[index], label if index == 0 else None

                part = progress.sub(k / len(needs), (k + 1) / len(needs))
                statistics[name] = compute_statistics(recipe, pairs, n_cases=n_cases, seed=seed, progress=part)
        except RecipeError:
            if len(quarantined) == before:
                raise
            continue
        if len(quarantined) == before:
            return statistics


def _software() -> dict[str, str]:
    """MedPrep and the versions of what made the files: the recipe engine's, pydicom, the
    deflate engine (ISA-L or zlib) and the QC libraries when present."""
    from importlib import metadata

    from ..imagewriter import deflate_engine

    versions = {**software_versions(), "deflate": deflate_engine(), "platform": platform.machine()}
    for package in ("pydicom", "isal", "Pillow", "matplotlib"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            pass
    return versions


def _clean_staging(layout: Format) -> None:
    for sub in ("", *layout.scanned_folders(), QC_FOLDER):
        folder = layout.folder / sub
        if folder.is_dir():
            remove_stale_staging(folder)


def _finish(report, layout, cases, records, part, plan, recipes, statistics, label_rules, source, warnings, *,
            folds, seed, stratify, qc, command, segment_table=None) -> ExportReport:  # fmt: skip
    exported = [case_id for case_id, _ in cases if records[case_id]["status"] == "exported"]
    quarantined = {case_id: records[case_id]["reason"] for case_id, _ in cases if records[case_id]["status"] != "exported"}
    by_id = dict(cases)
    # the folds, over the exported training cases (their part stays what the plan said)
    train_cases = [
        _split_case(case_id, by_id[case_id], stratify, (records[case_id]["facts"].get("label") or {}).get("present", []),
                    split="train")  # fmt: skip
        for case_id in exported
        if part[case_id] == "train"
    ]
    fold_warnings: list[str] = []
    _, fold_of = _split(train_cases, folds=folds, test_fraction=0.0, seed=seed, warnings=fold_warnings)
    warnings.extend(fold_warnings)
    files = [
        layout.case_files(case_id, part[case_id], labelled=by_id[case_id].label is not None, fold=fold_of.get(case_id))
        for case_id in exported
    ]
    table = label_rules.table_for([records[c]["facts"].get("label") for c in exported])
    folder = layout.folder
    written: dict[str, str] = {}

    def keep(path: Path) -> None:
        written[path.relative_to(folder).as_posix()] = file_sha256(path)

    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(["case", "reason"])
    writer.writerows(sorted(quarantined.items()))
    keep(atomic_write_text(folder / QUARANTINE_FILE, text.getvalue(), overwrite=True))
    if not exported:
        raise ExportError(
            f"no case could be exported: all {len(quarantined)} were quarantined",
            path=folder / QUARANTINE_FILE,
            hint="the reasons are in quarantine.csv; fix the inputs and run the same command again",
        )
    if qc:
        from .dataset_report import write_dataset_report

        patients = {case_id: by_id[case_id].patient for case_id in exported}
        keep(write_dataset_report(folder / REPORT_FILE, layout, files, records, quarantined, source.excluded, table,
                                  warnings, patients))  # fmt: skip
    regions = None
    if segment_table is not None and segment_table.overlap == "regions":
        regions = segment_table.nnunet_labels(overlap="regions")  # nnU-Net region-based training
    for path in layout.write_index(files, table, regions=regions):
        keep(Path(path))
    _clean_staging(layout)
    record = {
        "format": DATASET_RECORD_FORMAT,
        "version": 1,
        "plan_digest": plan_digest(plan),
        "medprep": __version__,
        "software": _software(),
        "command": sanitized_command(command),
        "dataset": {"format": layout.name, "folder": folder.name, "name": layout.dataset_name, "channels": list(layout.channels)},
        "recipes": {name: r.to_dict() for name, r in recipes.items()},
        "statistics": statistics or None,
        "labels": table,
        "splits": {
            "test": sorted(c.case_id for c in files if c.split == "test"),
            "folds": [sorted(c.case_id for c in files if c.fold == k) for k in range(max(fold_of.values(), default=-1) + 1)],
        },
        "cases": [records[c] | {"fold": fold_of.get(c)} for c in exported],
        "quarantined": [{"case": c, "reason": r} for c, r in sorted(quarantined.items())],
        "excluded": [{"what": e.what, "reason": e.reason} for e in source.excluded],
        "warnings": list(dict.fromkeys(warnings)),
        "files": dict(sorted(written.items())),
    }
    write_json(record, folder / DATASET_RECORD, overwrite=True)
    ExportState(folder).remove()
    report.exported = exported
    report.quarantined = quarantined
    report.warnings = list(dict.fromkeys(warnings))
    report.report = folder / REPORT_FILE if qc else None
    return report


def _report_from_record(report: ExportReport, layout: Format) -> ExportReport:
    record = read_dataset_record(layout.folder)
    report.already_complete = True
    report.exported = [c["case"] for c in record.get("cases", [])]
    report.quarantined = {q["case"]: q["reason"] for q in record.get("quarantined", [])}
    report.warnings = list(record.get("warnings", []))
    report.excluded = [(e["what"], e["reason"]) for e in record.get("excluded", [])]
    report_path = layout.folder / REPORT_FILE
    report.report = report_path if report_path.is_file() else None
    return report
