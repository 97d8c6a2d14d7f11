"""Issue 9's acceptance list, end to end through ``medprep export``, where the other export tests
stop short of it.

* Acceptance 2 for DICOM: names, IDs, birth dates, accession numbers, institution, physicians,
  other IDs, study IDs and every UID planted in the headers (and names in folder and file names)
  reach no output of any format — QC report and montages included, gzip and npz members
  decompressed — and no console line, with 1 and 2 workers; the key file (outside the dataset)
  is the one place the PatientID goes, and a key file inside the dataset is refused.
* Acceptance 1 for multi-channel data: a Decathlon dataset of two channels (FLAIR on another grid,
  resampled onto T1's) that MONAI's ``load_decathlon_datalist`` + ``LoadImaged`` read item by
  item, with Auto3DSeg's ``fold`` keys; the same source as nnU-Net passes
  ``verify_dataset_integrity``.
* Label maps through the export (remap, names, a value outside the map quarantined, the
  non-consecutive refusal for nnU-Net), ``--label-grid resample``.
* SIGTERM and SIGINT part-way leave a dataset the same command finishes, byte-identical to an
  uninterrupted run; ``--workers auto`` changes no byte.
* A Slicer DICOM database as SOURCE; the exit codes; the nnU-Net dataset id rules.
"""

from __future__ import annotations

import hashlib
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest
from cli_run import assert_refused, cli_env, run_medprep
from dicom_factory import new_uid, write_ct_series
from export_data import all_output_text, case_arrays, cohort_table, image_folder, leftovers, tree_digest, write_volume

from MedPrepLib.imageio import read_image, write_image
from MedPrepLib.volume import Volume

pytestmark = pytest.mark.pydicom_dependent

# ------------------------------------------------------------------------------------------------
# Acceptance 2: a DICOM cohort with identity planted everywhere

PATIENTS = (
    {
        "PatientName": "Zwirnbeck^Orlanda", "PatientID": "ZW-90417", "PatientBirthDate": "19621103",
        "AccessionNumber": "ACC77123", "InstitutionName": "Klinikum Vellmarhausen",
        "ReferringPhysicianName": "Drumpfer^Kasimir", "OtherPatientIDs": "OPI-55510", "StudyID": "STY8841",
    },
    {
        "PatientName": "Hexelbaum^Friedolin", "PatientID": "HX-31337", "PatientBirthDate": "19480229",
        "AccessionNumber": "ACC66021", "InstitutionName": "Spital Quellbrunnen",
        "ReferringPhysicianName": "Vorderwitz^Almuthe", "OtherPatientIDs": "OPI-77002", "StudyID": "STY5150",
    },
    {
        "PatientName": "Murkenfeld^Ysoldine", "PatientID": "MK-20555", "PatientBirthDate": "19911224",
        "AccessionNumber": "ACC31990", "InstitutionName": "Praxis Gruenwaldheim",
        "ReferringPhysicianName": "Oppelstedt^Wendeline", "OtherPatientIDs": "OPI-60606", "StudyID": "STY2727",
    },
)  # fmt: skip
FOLDER_ONLY = ("MRN4471920", "Ward7Bravo")
"""Planted only in folder and file names, never in a header."""


def _tokens(identity: dict) -> set[str]:
    """Every identifying piece of one patient: name parts, IDs, the birth date in two spellings,
    institution and physician words."""
    out = set()
    for key, value in identity.items():
        out |= {t for t in re.split(r"[\^\s]+", value) if len(t) >= 5}
        out.add(value)
        if key == "PatientBirthDate":
            out.add(f"{value[:4]}-{value[4:6]}-{value[6:]}")
    return out


@pytest.fixture(scope="module")
def dicom_cohort(tmp_path_factory) -> dict:
    """Three patients (the first with two studies) as DICOM under folders and file names that
    carry their names; per study a 12-slice CT and a 3-slice stack whose description names the
    patient (left out: too few slices); labels named by the CT's SeriesInstanceUID."""
    from MedPrepLib.dicom.load import load_stack
    from MedPrepLib.sources import find_stacks

    base = tmp_path_factory.mktemp("acceptance_dicom")
    root = base / f"Export {FOLDER_ONLY[0]} {FOLDER_ONLY[1]}"
    labels = base / "labels Zwirnbeck Hexelbaum"
    ct_series = []
    for p, identity in enumerate(PATIENTS):
        last, first = identity["PatientName"].split("^")
        for s in range(2 if p == 0 else 1):
            study, frame = new_uid(), new_uid()
            folder = root / f"{last}_{first} {identity['PatientID']}" / f"{identity['PatientBirthDate']}_{identity['AccessionNumber']}_{s}"
            common = dict(study_uid=study, FrameOfReferenceUID=frame, origin=(-11.0, -11.0, 10.0 * s), **identity)
            series = new_uid()
            write_ct_series(folder / "CT", 12, series_uid=series, SeriesNumber=2, SeriesDescription="Thorax",
                            prefix=f"{last}_{FOLDER_ONLY[0]}_", **common)  # fmt: skip
            write_ct_series(folder / "extra", 3, SeriesNumber=9, SeriesDescription=f"extra for {first}",
                            prefix=f"{first}_", **common)  # fmt: skip
            ct_series.append(series)
    stacks = find_stacks(root).stacks
    labels.mkdir()
    uids = set()
    for stack in stacks:
        for path in stack.paths:
            ds = pydicom.dcmread(path, stop_before_pixels=True)
            uids |= {str(ds.StudyInstanceUID), str(ds.SeriesInstanceUID), str(ds.SOPInstanceUID), str(ds.FrameOfReferenceUID)}
        if stack.series_instance_uid in ct_series:
            volume = load_stack(stack)
            label = np.zeros(volume.shape, np.uint8)
            label[3:8, 4:14, 6:20] = 1
            label[5:7, 6:9, 8:12] = 2
            write_image(Volume(label, volume.geometry), labels / f"{stack.series_instance_uid}.nii.gz")
    from MedPrepLib.export.dicom_source import dicom_cases

    cases = dicom_cases(root).cases
    hashes = {s.id for s in stacks} | {s.id[1:] for s in stacks}
    hashes |= {c.patient for c in cases} | {c.patient[:16] for c in cases} | {c.fingerprint for c in cases}
    for uid in uids:
        for algorithm in ("sha256", "sha1", "md5"):
            digest = hashlib.new(algorithm, uid.encode()).hexdigest()
            hashes |= {digest, digest[:10], digest[:16]}
    tokens = set(FOLDER_ONLY)
    for identity in PATIENTS:
        tokens |= _tokens(identity)
    return {"root": root, "labels": labels, "tokens": tokens, "uids": uids, "hashes": hashes, "n_uids": len(uids)}


def _planted_in(blob: bytes, cohort: dict) -> list[str]:
    low = blob.lower()
    found = [t for t in cohort["tokens"] if t.lower().encode() in low]
    found += [u for u in cohort["uids"] if u.encode() in blob]
    found += [h for h in cohort["hashes"] if h.encode() in low]
    return found


@pytest.mark.parametrize(
    ("fmt", "workers"), [("nnunet", "1"), ("msd", "1"), ("nifti", "1"), ("npz", "1"), ("nnunet", "2")]
)
def test_planted_dicom_identity_reaches_no_output_and_no_console(dicom_cohort, tmp_path, fmt, workers):
    assert dicom_cohort["n_uids"] == 4 * 15 + 8 + 4 + 4  # every file's SOP UID, 8 series, 4 studies, 4 frames
    out = tmp_path / "out"
    private = tmp_path / "private"
    private.mkdir()
    key = private / "key.csv"
    result = run_medprep(
        "export", dicom_cohort["root"], out, "--format", fmt, "--labels", dicom_cohort["labels"], "--folds", "2",
        "--workers", workers, "--key-file", key, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    console = result.stdout + result.stderr
    assert not _planted_in(console.encode(), dicom_cohort), console
    assert "Traceback" not in console
    folder = next(p for p in [out, *out.iterdir()] if (p / "medprep.json").is_file())
    record = json.loads((folder / "medprep.json").read_text())
    assert len(record["cases"]) == 4 and not record["quarantined"]
    assert all(c["facts"]["label"]["present"] == [1, 2] for c in record["cases"])  # the labels were found
    assert len([e for e in record["excluded"] if e["what"].startswith("stack ")]) == 4  # the 3-slice stacks, listed
    assert (folder / "qc" / "report.html").is_file() and len(list((folder / "qc").glob("case_*.png"))) == 4
    blob = all_output_text(out)
    assert not _planted_in(blob, dicom_cohort)
    # the key file, outside the dataset, is where the PatientIDs and study UIDs are
    rows = key.read_text().splitlines()
    assert rows[0] == "case,patient,study,source" and len(rows) == 5
    assert sorted(r.split(",")[1] for r in rows[1:]) == sorted(["ZW-90417", "ZW-90417", "HX-31337", "MK-20555"])
    assert all(r.split(",")[2] in dicom_cohort["uids"] for r in rows[1:])


def test_a_key_file_inside_the_dataset_is_refused(dicom_cohort, tmp_path):
    out = tmp_path / "raw"
    inside = out / "Dataset500_MedPrep" / "private" / "key.csv"
    result = run_medprep(
        "export", dicom_cohort["root"], out, "--labels", dicom_cohort["labels"], "--folds", "2", "--no-qc",
        "--key-file", inside,
    )  # fmt: skip
    assert_refused(result, contains="key")
    assert not inside.exists() and not (out / "Dataset500_MedPrep" / "dataset.json").exists()
    nifti = tmp_path / "flat"
    result = run_medprep("export", dicom_cohort["root"], nifti, "--format", "nifti", "--labels", dicom_cohort["labels"],
                         "--folds", "2", "--no-qc", "--key-file", nifti / "key.csv")  # fmt: skip
    assert_refused(result, contains="key")
    assert not (nifti / "key.csv").exists()


# ------------------------------------------------------------------------------------------------
# Acceptance 1: multi-channel datasets as MONAI and nnU-Net read them

T1_SHAPE = (12, 20, 24)
FLAIR_SPACING = (1.6, 1.6, 2.5)
FLAIR_ORIGIN = (-1.6, -1.6, 0.0)
FLAIR_SHAPE = (12, 12, 14)


def _flair_ramp() -> np.ndarray:
    """FLAIR voxels = 10 x the physical x (mm) of the voxel: linear interpolation onto T1's grid
    reproduces it exactly (8 x T1's x index)."""
    x_mm = FLAIR_ORIGIN[0] + FLAIR_SPACING[0] * np.arange(FLAIR_SHAPE[2])
    return np.broadcast_to(np.rint(10 * x_mm).astype(np.int16), FLAIR_SHAPE).copy()


@pytest.fixture(scope="module")
def two_channel_cohort(tmp_path_factory) -> Path:
    """Seven patients with T1 + FLAIR (FLAIR coarser and shifted), the last one unlabelled."""
    root = tmp_path_factory.mktemp("two_channels")
    rows = []
    for n in range(7):
        t1, label = case_arrays(n, T1_SHAPE)
        write_volume(t1, root / "data" / f"t1_{n}.nii.gz")
        write_volume(_flair_ramp(), root / "data" / f"flair_{n}.nii.gz", spacing=FLAIR_SPACING, origin=FLAIR_ORIGIN)
        labelled = n < 6
        if labelled:
            write_volume(label, root / "data" / f"seg_{n}.nii.gz")
        rows.append({"image.T1": f"data/t1_{n}.nii.gz", "image.FLAIR": f"data/flair_{n}.nii.gz",
                     "label": f"data/seg_{n}.nii.gz" if labelled else "", "patient": f"p{n}"})  # fmt: skip
    return cohort_table(root, rows)


def test_a_two_channel_decathlon_dataset_loads_in_monai(two_channel_cohort, tmp_path):
    pytest.importorskip("monai")
    from monai.data import load_decathlon_datalist
    from monai.transforms import LoadImaged

    result = run_medprep("export", two_channel_cohort, tmp_path, "--format", "msd", "--folds", "3", "--no-qc")
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "Task11_MedPrep"
    dataset = json.loads((folder / "dataset.json").read_text())
    assert dataset["tensorImageSize"] == "4D" and dataset["modality"] == {"0": "T1", "1": "FLAIR"}
    assert dataset["numTraining"] == 6 and dataset["numTest"] == 1
    training = load_decathlon_datalist(str(folder / "dataset.json"), True, "training")
    test = load_decathlon_datalist(str(folder / "dataset.json"), True, "test")
    assert len(training) == 6 and len(test) == 1
    assert sorted({item["fold"] for item in training}) == [0, 1, 2]
    load = LoadImaged(keys=["image", "label"], ensure_channel_first=True, image_only=True)
    for item in training:
        loaded = load(item)
        image, label = loaded["image"], loaded["label"]
        assert image.shape == (2, 24, 20, 12) and label.shape == (1, 24, 20, 12), item
        assert set(np.unique(np.asarray(label))) <= {0, 1, 2}
        # FLAIR resampled in physical space onto T1's grid: the ramp 10 x mm at T1's x = 0.8 i mm
        flair = np.asarray(image[1])
        np.testing.assert_allclose(flair, np.broadcast_to(8.0 * np.arange(24)[:, None, None], flair.shape), atol=1e-3)
    (only,) = test
    assert LoadImaged(keys=["image"], ensure_channel_first=True, image_only=True)(only)["image"].shape == (2, 24, 20, 12)
    record = json.loads((folder / "medprep.json").read_text())
    assert all(any("FLAIR resampled" in w for w in c["warnings"]) for c in record["cases"])


def test_a_two_channel_nnunet_dataset_passes_verify_dataset_integrity(two_channel_cohort, tmp_path):
    pytest.importorskip("nnunetv2")
    from test_export_nnunet import verify

    raw = tmp_path / "raw"
    result = run_medprep("export", two_channel_cohort, raw, "--format", "nnunet", "--folds", "3", "--no-qc")
    assert result.returncode == 0, result.stderr
    folder = raw / "Dataset500_MedPrep"
    dataset = json.loads((folder / "dataset.json").read_text())
    assert dataset["channel_names"] == {"0": "T1", "1": "FLAIR"} and dataset["numTraining"] == 6
    assert sorted(p.name for p in (folder / "imagesTs").iterdir()) == ["case_0007_0000.nii.gz", "case_0007_0001.nii.gz"]
    checked = verify(folder, tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "verify_dataset_integrity Done" in checked.stdout


# ------------------------------------------------------------------------------------------------
# label maps and the label grid policy through the export


def _label_cohort(root: Path, values: dict[int, int], n: int = 4, *, odd: dict[int, int] | None = None) -> Path:
    """A cohort whose labels hold case_arrays' 1 and 2 as ``values[1]``, ``values[2]``; case
    ``k`` of ``odd`` gets a voxel of value ``odd[k]``."""
    rows = []
    for k in range(n):
        image, label = case_arrays(k)
        source = np.zeros_like(label)
        for old, new in values.items():
            source[label == old] = new
        if odd and k in odd:
            source[0, 0, 0] = odd[k]
        write_volume(image, root / "data" / f"i{k}.nii.gz")
        write_volume(source, root / "data" / f"l{k}.nii.gz")
        rows.append({"image": f"data/i{k}.nii.gz", "label": f"data/l{k}.nii.gz", "patient": f"p{k}"})
    return cohort_table(root, rows)


def test_a_label_map_remaps_names_and_quarantines_values_outside_it(tmp_path):
    table = _label_cohort(tmp_path / "src", {1: 3, 2: 7}, 5, odd={4: 5})
    label_map = tmp_path / "labels.json"
    label_map.write_text(json.dumps({"labels": {"liver": 1, "tumour": 2}, "remap": {"3": 1, "7": 2}}))
    raw = tmp_path / "raw"
    result = run_medprep("export", table, raw, "--channel-name", "CT", "--label-map", label_map, "--folds", "2", "--no-qc")
    assert result.returncode == 4, result.stderr
    folder = raw / "Dataset500_MedPrep"
    dataset = json.loads((folder / "dataset.json").read_text())
    assert dataset["labels"] == {"background": 0, "liver": 1, "tumour": 2} and dataset["numTraining"] == 4
    for k in range(4):
        _, expected = case_arrays(k)
        written = read_image(folder / "labelsTr" / f"case_{k + 1:04d}.nii.gz")
        np.testing.assert_array_equal(written.array, expected)
    lines = (folder / "quarantine.csv").read_text().splitlines()
    assert len(lines) == 2 and lines[1].startswith("case_0005,")
    assert "5" in lines[1] and "label table does not name" in lines[1], lines[1]
    assert "case_0005" in result.stdout
    record = json.loads((folder / "medprep.json").read_text())
    assert record["labels"] == {"background": 0, "liver": 1, "tumour": 2}


def test_non_consecutive_labels_for_nnunet_are_refused_with_a_hint(tmp_path):
    table = _label_cohort(tmp_path / "src", {1: 1, 2: 3})  # values 0, 1, 3
    raw = tmp_path / "raw"
    result = run_medprep("export", table, raw, "--channel-name", "CT", "--folds", "2", "--no-qc")
    line = assert_refused(result, contains=("consecutive", "--label-map"))
    assert "[0, 1, 3]" in line
    assert not (raw / "Dataset500_MedPrep" / "dataset.json").exists()
    # other formats take the values as they are
    flat = tmp_path / "flat"
    result = run_medprep("export", table, flat, "--format", "nifti", "--channel-name", "CT", "--folds", "2", "--no-qc")
    assert result.returncode == 0, result.stderr


def _short_label_folder(root: Path) -> Path:
    src = image_folder(root, 3)
    image, label = case_arrays(5)
    write_volume(image, src / "short.nii.gz")
    write_volume(label[:-1], src / "short_seg.nii.gz")  # one slice short, the same origin and spacing
    return src


def test_label_grid_resample_takes_a_label_one_slice_short(tmp_path):
    from MedPrepLib.export.runner import export_dataset

    src = _short_label_folder(tmp_path / "src")
    options = dict(folds=2, qc=False, source_options={"channel_name": "CT"})
    rejected = export_dataset(src, tmp_path / "reject", **options)
    assert rejected.exit_code == 4 and len(rejected.quarantined) == 1
    (reason,) = rejected.quarantined.values()
    assert "the label has 11 slices, the image 12" in reason
    resampled = export_dataset(src, tmp_path / "resample", grid_policy="resample", **options)
    assert resampled.exit_code == 0 and len(resampled.exported) == 4
    (case_id,) = set(resampled.exported) - set(rejected.exported)
    folder = resampled.dataset_folder
    record = json.loads((folder / "medprep.json").read_text())
    (case,) = [c for c in record["cases"] if c["case"] == case_id]
    assert case["facts"]["label"]["resampled"] is True
    assert any("resampled onto its image's grid" in w and "11 slices" in w for w in case["warnings"]), case["warnings"]
    written = read_image(folder / "labelsTr" / f"{case_id}.nii.gz")
    image = read_image(folder / "imagesTr" / f"{case_id}_0000.nii.gz")
    _, label = case_arrays(5)
    assert written.geometry == image.geometry and written.shape == label.shape
    np.testing.assert_array_equal(written.array[:-1], label[:-1])
    assert not written.array[-1].any()  # outside the label's field of view: background


# ------------------------------------------------------------------------------------------------
# SIGTERM / SIGINT, --workers auto


@pytest.fixture(scope="module")
def bigger_folder(tmp_path_factory) -> dict:
    """Ten cases big enough to interrupt part-way, and their uninterrupted export."""
    root = tmp_path_factory.mktemp("interrupt")
    src = image_folder(root / "src", 10, shape=(40, 64, 64))
    args = ["--format", "nnunet", "--channel-name", "CT", "--folds", "3"]
    clean = run_medprep("export", src, root / "clean", *args, timeout=300)
    assert clean.returncode == 0, clean.stderr
    folder = root / "clean" / "Dataset500_MedPrep"
    return {"src": src, "args": args, "clean": tree_digest(folder), "clean_folder": folder}


def _record_difference(folder: Path, clean: Path) -> str:
    """Where two medprep.json differ (top-level keys, and the cases by id), for the message."""
    a, b = (json.loads((f / "medprep.json").read_text()) for f in (folder, clean))
    keys = [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]
    cases = [x["case"] for x, y in zip(a.get("cases", []), b.get("cases", [])) if x != y]
    return f"medprep.json differs in {keys}, cases {cases}"


@pytest.mark.parametrize(("signame", "workers"), [("SIGTERM", "1"), ("SIGINT", "2")])
def test_sigterm_and_sigint_leave_a_dataset_the_same_command_finishes(bigger_folder, tmp_path, signame, workers):
    signum = getattr(signal, signame)
    out = tmp_path / "out"
    args = ["export", str(bigger_folder["src"]), str(out), *bigger_folder["args"], "--workers", workers]
    proc = subprocess.Popen([sys.executable, "-m", "MedPrepLib", *args], env=cli_env(), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 120
    sent = False
    while time.monotonic() < deadline and proc.poll() is None:
        if len(list(out.glob("Dataset*/.medprep-export/cases/*.json"))) >= 3:
            proc.send_signal(signum)
            sent = True
            break
        time.sleep(0.01)
    _, stderr = proc.communicate(timeout=60)
    assert sent and proc.returncode == 128 + signum, (proc.returncode, stderr)
    assert "Traceback" not in stderr and f"interrupted by {signame}" in stderr, stderr
    partial = out / "Dataset500_MedPrep"
    assert not (partial / "dataset.json").exists() and not (partial / "medprep.json").exists()
    assert [p for p in leftovers(partial) if p != ".medprep-export" and ".medprep-tmp-" not in p] == []
    time.sleep(0.3)  # workers die with their parent
    again = run_medprep(*args, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "resumed" in again.stdout
    assert tree_digest(partial) == bigger_folder["clean"], _record_difference(partial, bigger_folder["clean_folder"])
    assert not leftovers(partial)


_SLOW_RENAMES = """
import multiprocessing, os, time
_replace = os.replace
def _slow_replace(src, dst, *args, **kwargs):
    if multiprocessing.parent_process() is not None and ".medprep-tmp-" in os.fspath(src):
        time.sleep(1.0)  # the worker sits in its staging folder
    return _replace(src, dst, *args, **kwargs)
os.replace = _slow_replace
"""


def test_an_interrupted_parallel_export_removes_what_its_workers_half_wrote(tmp_path):
    """README: SIGTERM and Ctrl-C 'remove what it had half-written'. Worker renames are slowed
    (sitecustomize), and the signal comes when a worker's staging folder is there."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(_SLOW_RENAMES)
    src = image_folder(tmp_path / "src", 6)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "MedPrepLib", "export", str(src), str(out), "--channel-name", "CT", "--folds", "2",
           "--no-qc", "--workers", "2"]  # fmt: skip
    env = cli_env()
    env["PYTHONPATH"] = str(hook) + ":" + env["PYTHONPATH"]
    proc = subprocess.Popen(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    staged = []
    while time.monotonic() < deadline and proc.poll() is None and not staged:
        staged = [p for p in out.glob("Dataset*/*/.medprep-tmp-*") if f"-{proc.pid}-" not in p.name]
        time.sleep(0.005)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert staged and proc.returncode == 128 + signal.SIGTERM, stderr
    time.sleep(0.3)
    assert [p for p in leftovers(out / "Dataset500_MedPrep") if p != ".medprep-export"] == []


def test_workers_auto_gives_the_bytes_of_one_worker(tmp_path):
    src = image_folder(tmp_path / "src", 5)
    digests = []
    for workers in ("1", "auto"):
        result = run_medprep("export", src, tmp_path / workers, "--channel-name", "CT", "--folds", "2", "--workers", workers)
        assert result.returncode == 0, result.stderr
        digests.append(tree_digest(tmp_path / workers / "Dataset500_MedPrep"))
    assert digests[0] == digests[1]
    assert any(p.endswith(".png") for p in digests[0])  # with the QC montages and report


# ------------------------------------------------------------------------------------------------
# a Slicer DICOM database as SOURCE


def test_a_slicer_database_exports(tmp_path):
    from test_dicom_slicerdb import PATIENT_NAME, build_database

    series = build_database(tmp_path / "db", "0.8.1", absolute=False)
    labels = tmp_path / "labels"
    labels.mkdir()
    from MedPrepLib.dicom.load import load_stack
    from MedPrepLib.sources import find_stacks

    for stack in find_stacks(tmp_path / "db").stacks:
        volume = load_stack(stack)
        label = np.zeros(volume.shape, np.uint8)
        label[:, 2:6, 2:6] = 1
        write_image(Volume(label, volume.geometry), labels / f"{stack.series_instance_uid}.nii.gz")
    assert len(list(labels.iterdir())) == len(series) == 2
    digests = []
    for n, source in enumerate((tmp_path / "db", tmp_path / "db" / "ctkDICOM.sql")):
        out = tmp_path / f"run{n}" / "dataset"  # nifti: OUT is the dataset folder, its name recorded
        result = run_medprep("export", source, out, "--format", "nifti", "--min-slices", "3", "--labels", labels, "--folds", "2", "--no-qc")
        assert result.returncode == 0, result.stderr
        record = json.loads((out / "medprep.json").read_text())
        assert len(record["cases"]) == 2 and all(c["facts"]["label"]["present"] == [1] for c in record["cases"])
        shapes = sorted(read_image(out / "images" / f"{c['case']}.nii.gz").shape[0] for c in record["cases"])
        assert shapes == [3, 4]
        blob = all_output_text(out)
        assert PATIENT_NAME.split("^")[0].encode() not in blob and b"FIXTURE-ID-7" not in blob and b"SYNTH-0001" not in blob
        assert not [u for u in series if u.encode() in blob]
        digests.append(tree_digest(out))
    assert digests[0] == digests[1]  # the folder or its ctkDICOM.sql: the same dataset


# ------------------------------------------------------------------------------------------------
# exit codes


def test_exit_codes(tmp_path):
    src = image_folder(tmp_path / "src", 3)
    ok = run_medprep("export", src, tmp_path / "ok", "--channel-name", "CT", "--folds", "2", "--no-qc")
    assert ok.returncode == 0 and not ok.stderr.count("error"), ok.stderr
    # 4: some quarantined
    image, label = case_arrays(3)
    write_volume(image, src / "half.nii.gz")
    write_volume(label.astype(np.float32) * 0.5, src / "half_seg.nii.gz")
    some = run_medprep("export", src, tmp_path / "some", "--channel-name", "CT", "--folds", "2", "--no-qc")
    assert some.returncode == 4, some.stderr
    assert (tmp_path / "some" / "Dataset500_MedPrep" / "dataset.json").is_file()
    # 2: every case quarantined, and no dataset.json
    bad = tmp_path / "bad"
    for k in range(2):
        image, label = case_arrays(k)
        write_volume(image, bad / f"c{k}.nii.gz")
        write_volume(label[:-1], bad / f"c{k}_seg.nii.gz")
    none = run_medprep("export", bad, tmp_path / "none", "--channel-name", "CT", "--folds", "2", "--no-qc")
    assert none.returncode == 2 and "Traceback" not in none.stderr, none.stderr
    lines = none.stderr.splitlines()
    assert len(lines) == 3 and all("quarantined: the label is not on its image's grid" in line for line in lines[:2])
    assert lines[2].startswith("medprep: error: ") and "no case could be exported: all 2 were quarantined" in lines[2]
    folder = tmp_path / "none" / "Dataset500_MedPrep"
    assert not (folder / "dataset.json").exists() and (folder / "quarantine.csv").is_file()


@pytest.mark.parametrize(
    ("option", "says"),
    [
        (("--workers", "0"), "--workers"),
        (("--workers", "many"), "--workers"),
        (("--dataset-name", "two words"), "--dataset-name"),
        (("--test-fraction", "-0.2"), "--test-fraction"),
        (("--format", "nifti", "--dataset-id", "3"), "--dataset-id"),
    ],
)
def test_usage_errors_exit_2_with_one_line(tmp_path, option, says):
    src = image_folder(tmp_path / "src", 3)
    result = run_medprep("export", src, tmp_path / "out", "--channel-name", "CT", "--no-qc", *option)
    assert_refused(result, contains=says)
    assert not (tmp_path / "out" / "Dataset500_MedPrep" / "dataset.json").exists()


def test_argparse_usage_errors_exit_2_without_a_traceback(tmp_path):
    src = image_folder(tmp_path / "src", 2)
    for option in (("--format", "bogus"), ("--folds", "two"), ("--label-grid", "stretch")):
        result = run_medprep("export", src, tmp_path / "out", *option)
        assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
        errors = [line for line in result.stderr.splitlines() if "error:" in line]
        assert len(errors) == 1 and option[0] in errors[0], result.stderr
        assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("option", [("--folds", "1"), ("--folds", "0"), ("--test-fraction", "1.5")])
def test_impossible_splits_are_usage_errors(tmp_path, option):
    src = image_folder(tmp_path / "src", 4)
    result = run_medprep("export", src, tmp_path / "out", "--channel-name", "CT", "--no-qc", *option)
    assert_refused(result, contains=option[0])


# ------------------------------------------------------------------------------------------------
# nnU-Net dataset ids: never over another dataset


def test_nnunet_dataset_ids_are_the_lowest_free_and_reserved_ones_need_a_flag(tmp_path):
    src = image_folder(tmp_path / "src", 3)
    raw = tmp_path / "raw"
    common = ("--channel-name", "CT", "--folds", "2", "--no-qc")
    first = run_medprep("export", src, raw, *common)
    assert first.returncode == 0 and "Dataset500_MedPrep" in first.stdout, first.stderr
    second = run_medprep("export", src, raw, *common, "--dataset-name", "Other")
    assert second.returncode == 0 and "Dataset501_Other" in second.stdout, second.stderr
    again = run_medprep("export", src, raw, *common)  # the same name finds its own dataset
    assert again.returncode == 0 and "Dataset500_MedPrep" in again.stdout and "already complete" in again.stdout
    taken = run_medprep("export", src, raw, *common, "--dataset-name", "Third", "--dataset-id", "501")
    assert_refused(taken, contains="Dataset501_Other")
    (raw / "Dataset502_Foreign").mkdir()  # someone else's dataset: skipped, not touched
    third = run_medprep("export", src, raw, *common, "--dataset-name", "Third")
    assert third.returncode == 0 and "Dataset503_Third" in third.stdout, third.stderr
    assert not any((raw / "Dataset502_Foreign").iterdir())
    reserved = run_medprep("export", src, raw, *common, "--dataset-id", "5", "--dataset-name", "Heart")
    assert_refused(reserved, contains="--allow-reserved-id")
    assert not (raw / "Dataset005_Heart").exists()
    allowed = run_medprep("export", src, raw, *common, "--dataset-id", "5", "--dataset-name", "Heart", "--allow-reserved-id")
    assert allowed.returncode == 0 and (raw / "Dataset005_Heart" / "dataset.json").is_file(), allowed.stderr
    assert sorted(p.name for p in raw.iterdir()) == [
        "Dataset005_Heart", "Dataset500_MedPrep", "Dataset501_Other", "Dataset502_Foreign", "Dataset503_Third",
    ]  # fmt: skip

