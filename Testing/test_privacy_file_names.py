"""No patient name from folder names, file names or headers reaches a written file or the console.

A patient's name is planted in the folder name, every file name and the headers (PatientName,
PatientID, PatientBirthDate, OtherPatientNames) of a DICOM series whose geometry makes the
loader talk: a missing slice (resampled, with a warning) and a slice sent twice under another
file name (dropped, with a warning). Then the messy-folder workflow runs through the real
command line: scan, convert, preprocess, restore, and a refusal. The name may appear on the
console only inside the paths the user typed; without ``--verbose`` it appears nowhere else, and
in no file written. With ``--verbose`` the file names are shown (the way to find a bad file).
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pydicom")

from cli_run import cli_env, run_medprep  # noqa: E402
from dicom_factory import write_ct_series  # noqa: E402

pytestmark = pytest.mark.pydicom_dependent

NAME_PARTS = ("doe", "jane", "jd19700314", "19700314", "janie")
FOLDER = "Doe_Jane_JD19700314"


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    root = tmp_path_factory.mktemp("privacy")
    series = root / "incoming" / FOLDER / "CT_chest"
    paths = write_ct_series(
        series,
        8,
        gap_after=4,  # one missing slice: regularised with a warning naming the slices
        prefix="Doe_Jane_",
        PatientName="Doe^Jane",
        PatientID="JD19700314",
        PatientBirthDate="19700314",
        OtherPatientNames="Janie Doe",
    )
    # the same slice again under another name and SOPInstanceUID: dropped with a warning
    import pydicom

    ds = pydicom.dcmread(paths[2])
    ds.SOPInstanceUID = ds.SOPInstanceUID + ".9"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.save_as(series / "Doe_Jane_copy_of_slice.dcm")
    (root / "out").mkdir()
    (root / "recipe.json").write_text(
        json.dumps({"version": 1, "steps": [{"op": "resample", "spacing": [1.0, 1.0, 1.0]}, {"op": "clip_scale", "min": -1000, "max": 1000}]})
    )
    return root, series


def _typed_paths_removed(text: str, typed: list[str]) -> str:
    for path in sorted(typed, key=len, reverse=True):
        text = text.replace(path, "<typed path>")
    return text


def _assert_clean(text: str, where: str) -> None:
    low = text.lower()
    for part in NAME_PARTS:
        assert part not in low, f"{part!r} found in {where}: {text[max(0, low.index(part) - 200): low.index(part) + 100]!r}"


def _written_bytes(path: Path) -> bytes:
    data = path.read_bytes()
    return gzip.decompress(data) if path.name.endswith(".gz") else data


def _run(root: Path, *args, verbose: bool = False):
    argv = (["--verbose"] if verbose else []) + [str(a) for a in args]
    proc = run_medprep(*argv, cwd=root, env=cli_env(HOME=str(root / "home")))
    typed = [str(a) for a in args]
    return proc, _typed_paths_removed(proc.stdout + proc.stderr, typed)


def test_no_name_in_any_written_file_or_console_line(workspace):
    root, series = workspace
    out = root / "out"
    console = []

    proc, text = _run(root, "scan", series)
    assert proc.returncode == 0, proc.stderr
    console.append(("scan", text))

    proc, text = _run(root, "convert", series, out / "ct.nii.gz")
    assert proc.returncode == 0, proc.stderr
    assert "warning" in text.lower()  # the loader did speak about the gap and the duplicate
    console.append(("convert", text))

    proc, text = _run(root, "info", series)
    assert proc.returncode == 0, proc.stderr
    console.append(("info", text))

    proc, text = _run(root, "preprocess", series, out / "pre.nii.gz", "--recipe", root / "recipe.json")
    assert proc.returncode == 0, proc.stderr
    console.append(("preprocess", text))

    from MedPrepLib.imageio import read_image, write_image
    from MedPrepLib.volume import Volume

    pre = read_image(out / "pre.nii.gz")
    write_image(Volume((pre.array > 0.5).astype(np.uint8), pre.geometry), root / "pred.nii.gz")
    proc, text = _run(root, "restore", root / "pred.nii.gz", out / "back.nii.gz", "--provenance", out / "pre.provenance.json")
    assert proc.returncode == 0, proc.stderr
    console.append(("restore", text))

    # a refusal about the stack (geometry policy reject) names no file either
    proc, text = _run(root, "convert", series, out / "refused.nii.gz", "--geometry-policy", "reject")
    assert proc.returncode == 2
    console.append(("convert --geometry-policy reject", text))

    for command, text in console:
        _assert_clean(text, f"the console output of {command}")
    written = sorted(p for p in out.rglob("*") if p.is_file())
    assert {p.name for p in written} == {"ct.nii.gz", "pre.nii.gz", "pre.provenance.json", "back.nii.gz"}
    for path in written:
        _assert_clean(_written_bytes(path).decode("latin-1"), f"the written file {path.name}")
    assert not (root / "home").exists() or not any((root / "home").rglob("*.sqlite"))  # MEDPREP_CACHE=off


def test_verbose_shows_the_file_names(workspace, tmp_path):
    root, series = workspace
    proc, text = _run(root, "convert", series, tmp_path / "v.nii.gz", verbose=True)
    assert proc.returncode == 0, proc.stderr
    assert "Doe_Jane_copy_of_slice.dcm" in text  # the slices the warnings are about, by file name
    shutil.rmtree(tmp_path, ignore_errors=True)


def test_paths_typed_relative_are_shown_as_typed(workspace, tmp_path):
    """Typed from inside the patient's folder, a relative path holds no name: nothing MedPrep
    prints may add the folders around it (an absolute path would)."""
    root, series = workspace
    inside = series.parent  # .../Doe_Jane_JD19700314
    env = cli_env(HOME=str(root / "home"))
    runs = [
        ("scan", "CT_chest"),
        ("info", "CT_chest"),
        ("convert", "CT_chest", str(tmp_path / "rel.nii.gz")),
        ("convert", "CT_chest", str(tmp_path / "refused.nii.gz"), "--geometry-policy", "reject"),
        ("convert", "no_such_folder", str(tmp_path / "x.nii.gz")),
        ("preprocess", "CT_chest", str(tmp_path / "p.nii.gz"), "--recipe", str(root / "recipe.json"), "--series", "nope"),
    ]
    for args in runs:
        proc = run_medprep(*args, cwd=inside, env=env)
        text = _typed_paths_removed(proc.stdout + proc.stderr, [a for a in args if a.startswith("/")])
        _assert_clean(text, f"the console output of {' '.join(args[:1])} with a relative input")
