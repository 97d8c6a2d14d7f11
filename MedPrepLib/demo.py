"""The demonstration run behind ``medprep demo``: the whole job on built-in data.

What a user does with their own archive, through the same public API, on a synthetic cohort:

1. write a small CT cohort as DICOM (``dicom/``): five patients, six studies — patient 1 has
   two studies, patient 2's study also holds a localizer and a dose report (which the export
   skips, with reasons), patient 3 was scanned with a gantry tilt (which the loader resamples);
2. make a label map per series (lungs 1, bone 2, by HU thresholds) on the grid MedPrep loads the
   series onto, named by SeriesInstanceUID (``labels/``), and the label map that names them;
3. export everything to an nnU-Net v2 raw dataset (``nnUNet_raw/Dataset500_MedPrepDemo``) with
   pseudonymous case ids, patient-level folds, provenance, a QC report and a key file kept
   outside the dataset (``key.csv``) — exactly ``medprep export dicom nnUNet_raw --labels labels
   --label-map label_map.json --dataset-name MedPrepDemo --key-file key.csv``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .atomic import make_folder
from .progress import as_progress
from .sampledata import DemoPatient, chest_ct_phantom, write_ct_series, write_dose_report, write_localizer
from .volume import Volume

LABELS = {1: "lungs", 2: "bone"}
DATASET_NAME = "MedPrepDemo"
PHANTOM_SHAPE = (36, 128, 128)
"""(z, y, x) voxels of each demo series: small, so the demo runs in seconds."""
PHANTOM_SPACING = (2.6, 2.6, 5.0)


@dataclass(frozen=True)
class DemoStudy:
    """One study of the demo cohort: its patient, seeds and what is special about it."""

    patient: DemoPatient
    seed: int
    tilt_deg: float = 0.0
    extras: bool = False
    """A localizer and a dose report in the study as well."""
    slices: int = PHANTOM_SHAPE[0]


def demo_cohort() -> list[DemoStudy]:
    """The five synthetic patients and their six studies (pseudonyms, no real person)."""
    p = [DemoPatient(f"DEMO^PATIENT{n}", f"MEDPREP-DEMO-{n:04d}") for n in range(1, 6)]
    return [
        DemoStudy(p[0], 1),
        DemoStudy(p[0], 2, slices=32),  # a follow-up of patient 1: same fold
        DemoStudy(p[1], 3, extras=True),
        DemoStudy(p[2], 4, tilt_deg=12.0),
        DemoStudy(p[3], 5, slices=40),
        DemoStudy(p[4], 6),
    ]


@dataclass
class DemoReport:
    """What the demo wrote (name -> path) and a human-readable account of it."""

    out: Path
    files: dict[str, Path] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    export: object = None
    """The :class:`~MedPrepLib.export.runner.ExportReport` of the export."""


def threshold_labels(ct: Volume) -> Volume:
    """A reference label map from HU thresholds: 1 = lungs (-950..-600 HU inside the body),
    2 = bone (>= 300 HU). Same grid as ``ct``; uint8."""
    from scipy import ndimage

    hu = ct.array
    body = ndimage.binary_fill_holes(hu > -500, structure=np.ones((1, 3, 3), bool))
    labels = np.zeros(hu.shape, np.uint8)
    labels[body & (hu > -950) & (hu < -600)] = 1
    labels[hu >= 300] = 2
    return Volume(labels, ct.geometry)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap 2|A∩B| / (|A| + |B|) of two boolean masks (1.0 when both are empty)."""
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


def write_demo_sources(out: Path, *, overwrite: bool = False, progress=None) -> tuple[int, int]:
    """Write the cohort's DICOM (``out/dicom``), its labels (``out/labels``) and the label map
    (``out/label_map.json``); returns (files written, label files written)."""
    from .export.case_job import library_warnings
    from .imageio import write_image
    from .recipe import write_json
    from .sources import load_path

    prog = as_progress(progress)
    n_files = n_labels = 0
    cohort = demo_cohort()
    make_folder(out / "labels")
    for n, study in enumerate(cohort, 1):
        prog.update("writing the DICOM cohort", (n - 1) / len(cohort))
        shape = (study.slices, *PHANTOM_SHAPE[1:])
        phantom = chest_ct_phantom(shape, PHANTOM_SPACING, seed=study.seed)
        study_folder = out / "dicom" / study.patient.name.replace("^", "_") / f"study{study.seed}"
        seed = f"demo-study-{study.seed}"
        write_ct_series(phantom, study_folder / "axial", study_seed=seed, patient=study.patient,
                        tilt_deg=study.tilt_deg, overwrite=overwrite)  # fmt: skip
        n_files += study.slices
        if study.extras:
            make_folder(study_folder / "scout")
            make_folder(study_folder / "dose")
            write_localizer(phantom, study_folder / "scout" / "IM0001.dcm", study_seed=seed, patient=study.patient,
                            overwrite=overwrite)  # fmt: skip
            write_dose_report(study_folder / "dose" / "IM0001.dcm", study_seed=seed, patient=study.patient,
                              overwrite=overwrite)  # fmt: skip
            n_files += 2
        with library_warnings():  # the export reports the tilt; no need to say it twice
            ct = load_path(study_folder / "axial")  # the grid MedPrep loads the series onto (the tilted one resampled)
        series_uid = ct.metadata["series_instance_uid"]  # label files are named by it (source_reader)
        write_image(threshold_labels(ct), out / "labels" / f"{series_uid}.nii.gz", overwrite=overwrite)
        n_labels += 1
    write_json({"labels": {name: value for value, name in LABELS.items()}}, out / "label_map.json", overwrite=overwrite)
    prog.update("writing the DICOM cohort", 1.0)
    return n_files, n_labels


def run_demo(out: str | Path, *, overwrite: bool = False, workers: int | str = "auto", progress=None) -> DemoReport:
    """Run the demo into folder ``out``; returns what was written and a text report."""
    from .export.runner import export_dataset

    prog = as_progress(progress)
    out = Path(out)
    make_folder(out)
    report = DemoReport(out)
    n_files, n_labels = write_demo_sources(out, overwrite=overwrite, progress=prog.sub(0.0, 0.3))
    cohort = demo_cohort()
    report.files.update(dicom=out / "dicom", labels=out / "labels", label_map=out / "label_map.json")
    report.lines.append(
        f"DICOM: {len({s.patient.patient_id for s in cohort})} patients, {len(cohort)} studies, {n_files} files in "
        f"{out / 'dicom'} (a localizer, a dose report and a gantry-tilted series among them)"
    )
    report.lines.append(f"Labels: {n_labels} label maps (lungs 1, bone 2) named by SeriesInstanceUID in {out / 'labels'}")
    exported = export_dataset(
        out / "dicom", out / "nnUNet_raw", fmt="nnunet", labels_dir=out / "labels", label_map=out / "label_map.json",
        dataset_name=DATASET_NAME, key_file=out / "key.csv", workers=workers, overwrite=overwrite,
        command=["dicom", "nnUNet_raw", "--labels", "labels", "--label-map", "label_map.json", "--dataset-name",
                 DATASET_NAME, "--key-file", "key.csv"],
        progress=prog.sub(0.3, 1.0),
    )  # fmt: skip
    report.export = exported
    folder = exported.dataset_folder
    report.files.update(dataset=folder, key_file=out / "key.csv")
    splits = folder / "splits_final.json"
    n_folds = len(json.loads(splits.read_text())) if splits.is_file() else 0
    report.lines.append(
        f"Exported to nnU-Net v2: {folder} — {len(exported.exported)} cases, {n_folds} folds by patient, "
        f"{len(exported.quarantined)} quarantined"
    )
    for what, reason in exported.excluded:
        report.lines.append(f"  left out: {what}: {reason}")
    report.lines.append(f"Key file (case -> patient, keep it private, outside the dataset): {out / 'key.csv'}")
    report.lines.append(
        f"Next: nnUNet_raw={out / 'nnUNet_raw'} nnUNetv2_plan_and_preprocess -d {int(folder.name[7:10])} -c 3d_fullres"
    )
    if exported.report is not None:
        report.files["report"] = exported.report
    prog.update("demo done", 1.0)
    return report
