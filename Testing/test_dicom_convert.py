"""``medprep convert``: the CLI contract of issue 3 (exit codes, short stderr, no output left on
failure, several stacks listing their ids, faithful values)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pydicom")
sitk = pytest.importorskip("SimpleITK")

from dicom_factory import expected_stored, new_uid, write_ct_series  # noqa: E402

from MedPrepLib.cli import main  # noqa: E402
from MedPrepLib.dicom.scan import scan_files  # noqa: E402

pytestmark = pytest.mark.pydicom_dependent


def _run(capsys, *argv):
    code = main(["convert", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def _assert_clean_failure(code, err, output):
    assert code != 0
    lines = [line for line in err.splitlines() if line.strip()]
    assert 1 <= len(lines) <= 3, err
    assert "Traceback" not in err
    assert not output.exists()
    assert not list(output.parent.glob(".medprep-*")), "temporary files left behind"


def test_convert_series_writes_faithful_values(tmp_path, capsys):
    write_ct_series(tmp_path / "in", 4, rescale=(2.0, -1000.0), PixelPaddingValue=0)
    out = tmp_path / "ct.nii.gz"
    code, _, err = _run(capsys, tmp_path / "in", out)
    assert code == 0, err
    image = sitk.ReadImage(str(out))
    array = sitk.GetArrayFromImage(image)
    assert array.shape == (4, 24, 32)
    for k in range(4):
        np.testing.assert_array_equal(array[k], expected_stored(k, 24, 32) * 2 - 1000)
    np.testing.assert_allclose(image.GetSpacing(), (0.8, 0.7, 2.5), atol=1e-6)
    np.testing.assert_allclose(image.GetOrigin(), (-11, -11, 0), atol=1e-6)


@pytest.mark.parametrize("suffix", [".nii", ".nrrd", ".mha"])
def test_convert_to_each_format(tmp_path, capsys, suffix):
    write_ct_series(tmp_path / "in", 3)
    out = tmp_path / f"ct{suffix}"
    code, _, err = _run(capsys, tmp_path / "in", out)
    assert code == 0, err
    assert sitk.GetArrayFromImage(sitk.ReadImage(str(out))).shape == (3, 24, 32)


def test_convert_image_file_input(tmp_path, capsys):
    write_ct_series(tmp_path / "in", 3)
    first = tmp_path / "a.nrrd"
    assert _run(capsys, tmp_path / "in", first)[0] == 0
    second = tmp_path / "b.mha"
    code, _, err = _run(capsys, first, second)
    assert code == 0, err
    np.testing.assert_array_equal(
        sitk.GetArrayFromImage(sitk.ReadImage(str(first))), sitk.GetArrayFromImage(sitk.ReadImage(str(second)))
    )


def test_convert_single_dicom_file(tmp_path, capsys):
    paths = write_ct_series(tmp_path / "in", 3)
    out = tmp_path / "one.nii.gz"
    code, _, err = _run(capsys, paths[1], out)
    assert code == 0, err
    np.testing.assert_array_equal(
        sitk.GetArrayFromImage(sitk.ReadImage(str(out)))[0], expected_stored(1, 24, 32) - 1024
    )


def test_several_stacks_without_series_lists_ids_and_fails(tmp_path, capsys):
    write_ct_series(tmp_path / "in", 3, prefix="A")
    write_ct_series(tmp_path / "in", 3, prefix="B", rows=16, cols=16)
    out = tmp_path / "x.nii.gz"
    code, _, err = _run(capsys, tmp_path / "in", out)
    _assert_clean_failure(code, err, out)
    ids = [s.id for s in scan_files(sorted(str(p) for p in (tmp_path / "in").iterdir()), cache=False).stacks]
    assert len(ids) == 2 and all(i in err for i in ids)
    code, _, err = _run(capsys, tmp_path / "in", out, "--series", ids[1])
    assert code == 0, err
    assert out.exists()


def test_reject_policy_refuses_tilt_with_numbers(tmp_path, capsys):
    write_ct_series(tmp_path / "in", 5, tilt_deg=15)
    out = tmp_path / "tilt.nii.gz"
    code, _, err = _run(capsys, tmp_path / "in", out, "--geometry-policy", "reject")
    _assert_clean_failure(code, err, out)
    assert "15.00 degrees" in err
    code, _, err = _run(capsys, tmp_path / "in", out)
    assert code == 0, err


def test_existing_output_needs_overwrite(tmp_path, capsys):
    write_ct_series(tmp_path / "in", 3)
    out = tmp_path / "ct.nii.gz"
    out.write_bytes(b"precious")
    code, _, err = _run(capsys, tmp_path / "in", out)
    assert code != 0 and "Traceback" not in err
    assert out.read_bytes() == b"precious"
    code, _, err = _run(capsys, tmp_path / "in", out, "--overwrite")
    assert code == 0, err
    assert out.read_bytes() != b"precious"


def test_bad_output_suffix_and_missing_input(tmp_path, capsys):
    write_ct_series(tmp_path / "in", 3)
    bad = tmp_path / "ct.png"
    code, _, err = _run(capsys, tmp_path / "in", bad)
    _assert_clean_failure(code, err, bad)
    out = tmp_path / "x.nii.gz"
    code, _, err = _run(capsys, tmp_path / "nothing-here", out)
    _assert_clean_failure(code, err, out)


def test_4d_series_becomes_4d_nifti(tmp_path, capsys):
    nib = pytest.importorskip("nibabel")
    uid = new_uid()
    write_ct_series(tmp_path / "in" / "t1", 3, series_uid=uid, TemporalPositionIdentifier=1, prefix="A")
    write_ct_series(tmp_path / "in" / "t2", 3, series_uid=uid, TemporalPositionIdentifier=2, prefix="B")
    out = tmp_path / "4d.nii.gz"
    code, _, err = _run(capsys, tmp_path / "in", out)
    assert code == 0, err
    img = nib.load(str(out))
    assert img.shape == (32, 24, 3, 2)
    np.testing.assert_allclose(np.linalg.norm(img.affine[:3, :3], axis=0), (0.8, 0.7, 2.5), atol=1e-6)


def test_real_process_exit_code_and_stderr(tmp_path):
    write_ct_series(tmp_path / "in", 3, prefix="A")
    write_ct_series(tmp_path / "in", 3, prefix="B", rows=16, cols=16)
    out = tmp_path / "x.nii.gz"
    proc = subprocess.run(
        [sys.executable, "-m", "MedPrepLib", "convert", str(tmp_path / "in"), str(out)],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
    )
    _assert_clean_failure(proc.returncode, proc.stderr, out)
