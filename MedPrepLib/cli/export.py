"""``medprep export SOURCE OUT --format nnunet|msd|nifti|npz``: a whole dataset in one command.

Argument handling over :func:`MedPrepLib.export.runner.export_dataset`. Exit status: 0 when every
selected case was exported (also for a source without labels: an inference set), 4 when some
were quarantined (``quarantine.csv`` and the report say why), 2 on usage errors or when nothing
could be exported. Re-running the same command finishes an interrupted export.
"""

from __future__ import annotations

import sys

from ..errors import ExportError

HELP = "export a dataset (nnU-Net v2, Decathlon/MONAI, NIfTI or NPZ) from DICOM, a Slicer database, a cohort table or an image folder"
DESCRIPTION = (
    "Export every case of SOURCE (a DICOM folder, a Slicer DICOM database folder, a cohort table "
    "(.csv/.json) or a folder of image files) as a training dataset in OUT: pseudonymous case ids, "
    "patient-level splits, provenance (medprep.json) and a QC report. For nnunet and msd, OUT is the "
    "parent folder ($nnUNet_raw) and the dataset folder is made in it. Re-running the same command "
    "finishes an interrupted export; exit 4 when some cases were quarantined."
)


def _channels(text: str | None):
    """``"T1=t1_mprage,FLAIR=flair"`` -> {"T1": "t1_mprage", "FLAIR": "flair"}; ``"T1,FLAIR"`` -> ["T1", "FLAIR"]."""
    if text is None:
        return None
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts:
        raise ExportError("--channels is empty", hint='write --channels "T1=t1_mprage,FLAIR=flair"')
    if all("=" in p for p in parts):
        pairs = [p.split("=", 1) for p in parts]
        return {name.strip(): pattern.strip() for name, pattern in pairs}
    if any("=" in p for p in parts):
        raise ExportError("--channels mixes NAME=PATTERN pairs and plain names", hint="use one form")
    return parts


def _workers(text: str) -> int | str:
    if text == "auto":
        return text
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ExportError(f"--workers {text!r} is not a number >= 1 or 'auto'")
    return value


def add_arguments(p) -> None:
    from ..export.formats import FORMATS
    from ..export.labels import GRID_POLICIES

    p.add_argument("source", help="DICOM folder, Slicer DICOM database folder, cohort table (.csv/.json) or image folder")
    p.add_argument("out", help="output folder (for nnunet/msd: the parent of the dataset folder, e.g. $nnUNet_raw)")
    p.add_argument("--format", choices=FORMATS, default="nnunet", help="dataset format (default nnunet)")
    p.add_argument("--recipe", help="preprocessing recipe JSON run on every case (default: none; CT: padding to air, int16 HU)")
    p.add_argument("--cohort", help="cohort table to read the cases from (instead of SOURCE)")
    p.add_argument("--labels", help="folder of label files (image folder: same stem; DICOM: named by SeriesInstanceUID or StudyInstanceUID)")
    p.add_argument("--labels-from", choices=("seg", "rtstruct", "auto"),
                   help="DICOM: labels from the SEG / RTSTRUCT objects that reference each case's series (auto: SEG, else RTSTRUCT)")  # fmt: skip
    p.add_argument("--label-map", help="label map JSON: names -> values, structure-name patterns, source value -> value remap")
    p.add_argument("--label-grid", choices=GRID_POLICIES, default="reject",
                   help="a label on another grid than its image: reject the case (default) or resample it (nearest)")  # fmt: skip
    p.add_argument("--dataset-id", type=int, help="nnU-Net dataset id (default: the lowest free >= 500) or Decathlon task id")
    p.add_argument("--dataset-name", help="dataset name (default MedPrep)")
    p.add_argument("--allow-reserved-id", action="store_true", help="allow nnU-Net dataset ids 1-10")
    p.add_argument("--folds", type=int, default=5, help="cross-validation folds (default 5)")
    p.add_argument("--test-fraction", type=float, default=0.0, help="fraction of labelled patients held out as test (default 0)")
    p.add_argument("--seed", type=int, default=0, help="seed of the splits and of random recipe steps (default 0)")
    p.add_argument("--stratify", help="balance splits by a cohort column, or 'labels' (which labels a case holds)")
    p.add_argument("--workers", default="1", help="cases exported in parallel: a number or 'auto' (default 1)")
    p.add_argument("--key-file", help="write the re-identification key (CSV: case, patient, study, source) here, outside the dataset")
    p.add_argument("--prefix", default="case", help="case id prefix (default 'case': case_0001, ...)")
    p.add_argument("--secret-file", help="file holding a secret (16+ bytes) that keys the pseudonym order; keep it outside the dataset")
    p.add_argument("--modality", help="DICOM: the modality of the stacks to take (default: the most common)")
    p.add_argument("--series-description", help="DICOM: take only stacks whose SeriesDescription matches this regular expression")
    p.add_argument("--min-slices", type=int, help="DICOM: take only stacks of at least this many slices (default 10)")
    p.add_argument("--min-slice-thickness", type=float, help="DICOM: take only stacks with slices at least this thick (mm)")
    p.add_argument("--max-slice-thickness", type=float, help="DICOM: take only stacks with slices at most this thick (mm)")
    p.add_argument("--series-uid", action="append", metavar="UID",
                   help="DICOM: take only stacks of this SeriesInstanceUID (repeat for several series; "
                   "not recorded in medprep.json)")  # fmt: skip
    p.add_argument("--channels", help='channels: DICOM "T1=t1_mprage,FLAIR=flair" (SeriesDescription patterns); image folder "T1,FLAIR"')
    p.add_argument("--channel-name", help="name of the one channel when the source does not say (e.g. CT)")
    p.add_argument("--include-age", action="store_true", help="put the patient's age in years into the sidecar facts")
    p.add_argument("--include-sex", action="store_true", help="put the patient's sex into the sidecar facts")
    p.add_argument("--no-qc", action="store_true", help="skip the QC montages and the HTML report")
    p.add_argument("--overwrite", action="store_true", help="replace an existing dataset made from other inputs or options")


def _selection(args):
    from ..export.stack_selection import StackSelection

    given = {
        "modality": args.modality,
        "description": args.series_description,
        "min_slices": args.min_slices,
        "min_thickness_mm": args.min_slice_thickness,
        "max_thickness_mm": args.max_slice_thickness,
        "series_uids": tuple(args.series_uid) if args.series_uid else None,
    }
    return StackSelection(**{k: v for k, v in given.items() if v is not None})


def run(args) -> int:
    from ..export.runner import EXIT_USAGE, export_dataset

    secret = None
    if args.secret_file:
        from ..errors import InputError

        try:
            with open(args.secret_file, "rb") as f:
                secret = f.read().strip()
        except OSError as exc:
            raise InputError(f"cannot read the secret file: {exc.strerror}", path=args.secret_file) from None
    source_options = {
        "selection": _selection(args),
        "channels": _channels(args.channels),
        "channel_name": args.channel_name,
        "include_age": args.include_age,
        "include_sex": args.include_sex,
    }
    if args.labels_from:
        source_options["labels_from"] = args.labels_from

    def log(line: str) -> None:
        if args.progress is not None:
            args.progress.close()
        print(f"medprep: {line}", file=sys.stderr)

    try:
        report = export_dataset(
            args.source, args.out, fmt=args.format, recipe=args.recipe, label_map=args.label_map,
            labels_dir=args.labels, cohort=args.cohort, grid_policy=args.label_grid,
            dataset_id=args.dataset_id, dataset_name=args.dataset_name, allow_reserved_id=args.allow_reserved_id,
            folds=args.folds, test_fraction=args.test_fraction, seed=args.seed, stratify=args.stratify,
            workers=_workers(args.workers), key_file=args.key_file, secret=secret, prefix=args.prefix,
            overwrite=args.overwrite, qc=not args.no_qc, source_options=source_options,
            command=args.argv[args.argv.index("export") + 1 :] if "export" in args.argv else None,
            progress=args.progress, log=log,
        )  # fmt: skip
    finally:
        if args.progress is not None:
            args.progress.close()
    for line in report.warnings:
        print(f"medprep: warning: {line}", file=sys.stderr)
    if report.excluded:
        print(f"medprep: {len(report.excluded)} input(s) left out (listed in the report and medprep.json)", file=sys.stderr)
    state = "already complete" if report.already_complete else ("finished (resumed)" if report.resumed else "written")
    print(f"{report.dataset_folder}: {len(report.exported)} case(s) exported, {state}")
    if report.quarantined:
        print(f"{len(report.quarantined)} case(s) quarantined (see quarantine.csv):")
        for case_id, reason in sorted(report.quarantined.items()):
            print(f"  {case_id}: {reason}")
    if report.report is not None:
        print(f"report: {report.report}")
    if not report.exported:
        return EXIT_USAGE
    return report.exit_code
