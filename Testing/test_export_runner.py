"""The export runner end to end: `medprep export` / export_dataset on small synthetic sources.

What is checked, each against the consumers' own code where one exists:
* the same dataset, byte for byte, with 1 and 2 workers, and after a SIGKILL and a re-run (no
  temporary files left);
* quarantine of bad cases (label one slice short, label with 0.5 values, unreadable image) with
  their reasons, exit 4, and the rest a valid nnU-Net dataset (verify_dataset_integrity);
* re-running a complete export does nothing; changed inputs are refused without --overwrite;
* a source without labels is an inference set (exit 0, all in imagesTs);
* statistics come from the training cases only;
* patient-level splits from a cohort table with several studies per patient.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from cli_run import cli_env, run_medprep
from export_data import (
    all_output_text,
    case_arrays,
    cohort_table,
    image_folder,
    leftovers,
    tree_digest,
    write_volume,
)

from MedPrepLib.export.runner import export_dataset, sanitized_command
from MedPrepLib.imageio import read_image


def _export(source, out, **kwargs):
    kwargs.setdefault("fmt", "nnunet")
    kwargs.setdefault("folds", 3)
    kwargs.setdefault("qc", False)
    kwargs.setdefault("source_options", {"channel_name": "CT"})
    return export_dataset(source, out, **kwargs)


def test_an_image_folder_becomes_an_nnunet_dataset(tmp_path):
    src = image_folder(tmp_path / "src", 6)
    report = _export(src, tmp_path / "raw")
    folder = report.dataset_folder
    assert folder == tmp_path / "raw" / "Dataset500_MedPrep" and report.exit_code == 0
    assert report.exported == [f"case_{n:04d}" for n in range(1, 7)]
    dataset = json.loads((folder / "dataset.json").read_text())
    assert dataset["channel_names"] == {"0": "CT"} and dataset["numTraining"] == 6
    assert dataset["labels"] == {"background": 0, "label_1": 1, "label_2": 2}
    splits = json.loads((folder / "splits_final.json").read_text())
    assert len(splits) == 3 and sorted(c for s in splits for c in s["val"]) == report.exported
    # the image is the source's HU as int16 on the source grid, the label uint8 on the same grid
    record = json.loads((folder / "medprep.json").read_text())
    by_case = {c["case"]: c for c in record["cases"]}
    for n in range(6):
        image, label = case_arrays(n)
        # which case id got which source: the pseudonyms follow the sorted inputs (ct00 ... ct05)
        case_id = f"case_{n + 1:04d}"
        written = read_image(folder / "imagesTr" / f"{case_id}_0000.nii.gz")
        written_label = read_image(folder / "labelsTr" / f"{case_id}.nii.gz")
        assert written.dtype == np.int16 and written_label.dtype == np.uint8
        np.testing.assert_array_equal(written.array, image)
        np.testing.assert_array_equal(written_label.array, label)
        assert written.geometry == written_label.geometry
        assert by_case[case_id]["facts"]["label"]["present"] == ([1, 2] if n % 2 else [1])
    assert not leftovers(folder)
    # every written file is in medprep.json with its sha256
    digests = tree_digest(folder)
    listed = {**record["files"], **{p: h for c in record["cases"] for p, h in c["files"].items()}}
    assert {p: digests[p] for p in listed} == listed
    assert set(digests) - set(listed) == {"medprep.json"}


def test_workers_do_not_change_a_byte(tmp_path):
    src = image_folder(tmp_path / "src", 6)
    one = _export(src, tmp_path / "one", workers=1).dataset_folder
    two = _export(src, tmp_path / "two", workers=2).dataset_folder
    assert tree_digest(one) == tree_digest(two)


def _kill_when_cases_done(cmd: list[str], work: Path, n_done: int, env) -> int:
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        records = list(work.glob("Dataset*/.medprep-export/cases/*.json"))
        if len(records) >= n_done:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    return proc.wait(timeout=60)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_sigkill_then_rerun_is_byte_identical(tmp_path, workers):
    src = image_folder(tmp_path / "src", 10, shape=(40, 64, 64))
    args = ["export", str(src), "--format", "nnunet", "--channel-name", "CT", "--folds", "3", "--workers", workers]
    env = cli_env()
    clean = run_medprep(*args[:2], str(tmp_path / "clean"), *args[2:], env=env, timeout=300)
    assert clean.returncode == 0, clean.stderr
    cmd = [sys.executable, "-m", "MedPrepLib", *args[:2], str(tmp_path / "killed"), *args[2:]]
    code = _kill_when_cases_done(cmd, tmp_path / "killed", 3, env)
    assert code == -signal.SIGKILL, "the export finished before it could be killed; make the cases bigger"
    partial = tmp_path / "killed" / "Dataset500_MedPrep"
    assert not (partial / "dataset.json").exists() and not (partial / "medprep.json").exists()
    time.sleep(0.5)  # the workers die with their parent (PR_SET_PDEATHSIG)
    again = run_medprep(*args[:2], str(tmp_path / "killed"), *args[2:], env=env, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "resumed" in again.stdout
    assert tree_digest(partial) == tree_digest(tmp_path / "clean" / "Dataset500_MedPrep")
    assert not leftovers(partial)


def test_bad_cases_are_quarantined_and_the_rest_is_valid(tmp_path):
    src = image_folder(tmp_path / "src", 6)
    image, label = case_arrays(7)
    write_volume(image, src / "short.nii.gz")
    write_volume(label[:-1], src / "short_seg.nii.gz")  # one slice short
    write_volume(image, src / "half.nii.gz")
    write_volume(label.astype(np.float32) * 0.5, src / "half_seg.nii.gz")  # 0.5 values
    (src / "broken.nii.gz").write_bytes(b"\x1f\x8b\x08\x00" + b"not an image" * 20)
    write_volume(label, src / "broken_seg.nii.gz")
    result = run_medprep("export", src, tmp_path / "raw", "--channel-name", "CT", "--folds", "3")
    assert result.returncode == 4, result.stderr
    folder = tmp_path / "raw" / "Dataset500_MedPrep"
    lines = (folder / "quarantine.csv").read_text().splitlines()
    assert lines[0] == "case,reason" and len(lines) == 4
    reasons = " | ".join(lines[1:])
    assert "slices" in reasons and "non-integer" in reasons
    dataset = json.loads((folder / "dataset.json").read_text())
    assert dataset["numTraining"] == 6
    record = json.loads((folder / "medprep.json").read_text())
    assert len(record["quarantined"]) == 3 and len(record["cases"]) == 6
    for case in record["quarantined"]:
        assert not list(folder.glob(f"*/{case['case']}*")), "a quarantined case left files"
    # a second run does nothing and says the same
    again = run_medprep("export", src, tmp_path / "raw", "--channel-name", "CT", "--folds", "3")
    assert again.returncode == 4 and "already complete" in again.stdout
    pytest.importorskip("nnunetv2")
    from test_export_nnunet import verify

    checked = verify(folder, tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_changed_inputs_are_refused_without_overwrite(tmp_path):
    src = image_folder(tmp_path / "src", 4)
    _export(src, tmp_path / "raw", folds=2)
    image, _ = case_arrays(0)
    write_volume(image + 1, src / "ct00.nii.gz")
    result = run_medprep("export", src, tmp_path / "raw", "--channel-name", "CT", "--folds", "2", "--no-qc")
    assert result.returncode == 2 and "other inputs or options" in result.stderr
    result = run_medprep("export", src, tmp_path / "raw", "--channel-name", "CT", "--folds", "2", "--no-qc", "--overwrite")
    assert result.returncode == 0, result.stderr
    written = read_image(tmp_path / "raw" / "Dataset500_MedPrep" / "imagesTr" / "case_0001_0000.nii.gz")
    np.testing.assert_array_equal(written.array, image + 1)


def test_a_folder_of_other_files_is_never_deleted(tmp_path):
    src = image_folder(tmp_path / "src", 4)
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    result = run_medprep("export", src, out, "--format", "nifti", "--channel-name", "CT", "--folds", "2", "--overwrite")
    assert result.returncode == 2 and "not a MedPrep export" in result.stderr
    assert (out / "notes.txt").read_text() == "keep me"


def test_a_source_without_labels_is_an_inference_set(tmp_path):
    src = tmp_path / "src"
    for n in range(3):
        write_volume(case_arrays(n)[0], src / f"ct{n}.nii.gz")
    result = run_medprep("export", src, tmp_path / "raw", "--channel-name", "CT", "--no-qc")
    assert result.returncode == 0, result.stderr
    assert "no case has a label" in result.stderr
    folder = tmp_path / "raw" / "Dataset500_MedPrep"
    assert sorted(p.name for p in (folder / "imagesTs").iterdir()) == [f"case_{n:04d}_0000.nii.gz" for n in (1, 2, 3)]
    assert not any((folder / "imagesTr").iterdir()) and not (folder / "splits_final.json").exists()
    assert json.loads((folder / "dataset.json").read_text())["numTraining"] == 0


def test_statistics_come_from_the_training_cases_only(tmp_path):
    from MedPrepLib.recipe import Recipe
    from MedPrepLib.recipe.statistics import compute_statistics

    rows = []
    for n in range(6):
        image, label = case_arrays(n)
        if n >= 4:
            image = image + 3000  # test cases far off: any leak would move the statistics
        write_volume(image, tmp_path / "data" / f"i{n}.nii.gz")
        write_volume(label, tmp_path / "data" / f"l{n}.nii.gz")
        rows.append({"image": f"data/i{n}.nii.gz", "label": f"data/l{n}.nii.gz", "patient": f"p{n}", "split": "test" if n >= 4 else "train"})
    table = cohort_table(tmp_path, rows)
    recipe = {"version": 1, "steps": [{"op": "ct_normalization"}]}
    report = export_dataset(table, tmp_path / "raw", recipe=recipe, folds=2, qc=False, source_options={"channel_name": "CT"})
    record = json.loads((report.dataset_folder / "medprep.json").read_text())
    train = [(read_image(tmp_path / "data" / f"i{n}.nii.gz"), read_image(tmp_path / "data" / f"l{n}.nii.gz")) for n in range(4)]
    expected = compute_statistics(Recipe.from_dict(recipe), train)
    assert record["statistics"]["CT"] == json.loads(json.dumps(expected))
    assert record["splits"]["test"] == ["case_0005", "case_0006"]


def test_patient_level_splits_from_a_cohort(tmp_path):
    rows = []
    for n in range(18):
        image, label = case_arrays(n)
        write_volume(image, tmp_path / "data" / f"i{n}.nii.gz")
        write_volume(label, tmp_path / "data" / f"l{n}.nii.gz")
        rows.append({"image": f"data/i{n}.nii.gz", "label": f"data/l{n}.nii.gz", "patient": f"patient{n % 7}"})
    table = cohort_table(tmp_path, rows)
    report = export_dataset(table, tmp_path / "raw", folds=3, test_fraction=0.3, seed=4, qc=False,
                            source_options={"channel_name": "CT"})  # fmt: skip
    record = json.loads((report.dataset_folder / "medprep.json").read_text())
    assert len(record["cases"]) == 18
    # which patient each case id is: the pseudonyms are assigned from the source's case keys
    from MedPrepLib.export.cohort import read_cohort
    from MedPrepLib.export.privacy import assign_case_ids

    source = read_cohort(table)
    assigned = assign_case_ids([c.key for c in source.cases])
    patient_of = {assigned[c.key]: c.patient for c in source.cases}
    where: dict[str, set[str]] = {}
    for k, fold in enumerate(record["splits"]["folds"]):
        for case_id in fold:
            where.setdefault(patient_of[case_id], set()).add(f"fold {k}")
    for case_id in record["splits"]["test"]:
        where.setdefault(patient_of[case_id], set()).add("test")
    assert len(where) == 7 and all(len(parts) == 1 for parts in where.values()), where
    assert record["splits"]["test"], "a test fraction of 0.3 holds out some patients"
    nnunet_splits = json.loads((report.dataset_folder / "splits_final.json").read_text())
    assert [sorted(s["val"]) for s in nnunet_splits] == record["splits"]["folds"]


def test_the_recorded_command_holds_no_paths_and_no_workers():
    argv = ["/data/Doe^Jane/dicom", "/out/raw", "--format", "nnunet", "--recipe", "/home/jd/r.json", "--workers", "2",
            "--key-file=/secret/key.csv", "--folds", "3"]  # fmt: skip
    text = sanitized_command(argv)
    assert text == "medprep export <SOURCE> <OUT> --format nnunet --recipe <RECIPE> --key-file=<KEY_FILE> --folds 3"
    # a path after a flag is still a path
    flags_first = sanitized_command(["--include-age", "/data/Doe^Jane", "--no-qc", "/out", "--include-sex"])
    assert flags_first == "medprep export --include-age <SOURCE> --no-qc <OUT> --include-sex"


def test_the_command_sanitiser_knows_every_flag_of_the_cli():
    from MedPrepLib.cli import build_parser
    from MedPrepLib.export.runner import FLAG_OPTIONS

    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction").choices["export"]
    flags = {o for a in [*sub._actions, *parser._actions] if a.nargs == 0 for o in a.option_strings} - {"--version"}
    assert flags <= FLAG_OPTIONS, flags - FLAG_OPTIONS


def test_planted_names_in_paths_reach_no_output(tmp_path):
    planted = "Doe^Jane"
    src = image_folder(tmp_path / f"{planted} MRN12345", 4, names=[f"{planted}_MRN12345_{n}" for n in range(4)])
    rows = [{"image": str(p), "label": str(p).replace(".nii.gz", "_seg.nii.gz"), "patient": "MRN12345"}
            for p in sorted(src.glob("*[0-9].nii.gz"))]  # fmt: skip
    table = cohort_table(tmp_path / "tables", rows)
    for fmt in ("nnunet", "msd", "nifti", "npz"):
        out = tmp_path / f"out_{fmt}"
        result = run_medprep("export", table, out, "--format", fmt, "--channel-name", "CT", "--folds", "2", "--no-qc")
        assert result.returncode == 0, result.stderr
        for text in (result.stdout + result.stderr).split("\n"):
            assert "Doe" not in text and "MRN12345" not in text, text
        blob = all_output_text(out)
        assert b"Doe" not in blob and b"MRN12345" not in blob and b"Jane" not in blob, fmt


def _dice(a: np.ndarray, b: np.ndarray, value: int) -> float:
    x, y = a == value, b == value
    return 2.0 * np.count_nonzero(x & y) / max(1, np.count_nonzero(x) + np.count_nonzero(y))


def test_restore_maps_a_prediction_back_through_the_dataset(tmp_path):
    src = image_folder(tmp_path / "src", 4, shape=(24, 40, 48))
    recipe = {"version": 1, "steps": [{"op": "resample", "spacing": [1.2, 1.2, 1.5]}, {"op": "reorient", "to": "RAS"}]}
    report = _export(src, tmp_path / "raw", folds=2, recipe=recipe)
    folder = report.dataset_folder
    pred = folder / "labelsTr" / "case_0002.nii.gz"  # the exported label stands in for a prediction
    out = tmp_path / "restored.nii.gz"
    result = run_medprep("restore", pred, out, "--dataset", folder, "--case", "case_0002")
    assert result.returncode == 0, result.stderr
    restored = read_image(out)
    original = read_image(src / "ct01_seg.nii.gz")
    assert restored.geometry.isclose(original.geometry, atol_mm=1e-3)
    assert _dice(restored.array, original.array, 1) > 0.9 and _dice(restored.array, original.array, 2) > 0.5
    # refusals: an unknown case, and --dataset without --case
    unknown = run_medprep("restore", pred, tmp_path / "x.nii.gz", "--dataset", folder, "--case", "case_0099")
    assert unknown.returncode == 2 and "no case 'case_0099'" in unknown.stderr
    half = run_medprep("restore", pred, tmp_path / "x.nii.gz", "--dataset", folder)
    assert half.returncode == 2 and "--case" in half.stderr


@pytest.mark.parametrize("stratify", ["site", "labels"])
def test_stratified_folds_balance_a_column_or_the_labels_present(tmp_path, stratify):
    rows = []
    for n in range(12):
        image, label = case_arrays(n)  # odd cases hold label 2 as well: the "labels" strata
        write_volume(image, tmp_path / "data" / f"i{n}.nii.gz")
        write_volume(label, tmp_path / "data" / f"l{n}.nii.gz")
        rows.append({"image": f"data/i{n}.nii.gz", "label": f"data/l{n}.nii.gz", "patient": f"p{n}",
                     "site": "A" if n % 2 else "B"})  # fmt: skip
    table = cohort_table(tmp_path, rows)
    report = export_dataset(table, tmp_path / "raw", folds=3, stratify=stratify, qc=False, source_options={"channel_name": "CT"})
    record = json.loads((report.dataset_folder / "medprep.json").read_text())
    two_labels = {c["case"] for c in record["cases"] if c["facts"]["label"]["present"] == [1, 2]}
    assert len(two_labels) == 6  # site A is exactly the cases holding label 2
    for fold in record["splits"]["folds"]:
        assert len(fold) == 4 and len(two_labels & set(fold)) == 2, record["splits"]["folds"]
    missing = run_medprep("export", table, tmp_path / "raw2", "--stratify", "hospital", "--channel-name", "CT", "--no-qc")
    assert missing.returncode == 2 and "no column 'hospital'" in missing.stderr
