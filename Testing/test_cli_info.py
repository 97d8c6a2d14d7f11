"""``medprep info``: geometry report, JSON shape, and one-line failures."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

from MedPrepLib.cli import main
from MedPrepLib.geometry import direction_from_code
from MedPrepLib.imageio import write_image
from MedPrepLib.volume import Volume


def test_info_json_reports_grid_orientation_and_range(tmp_path, capsys):
    arr = np.arange(2 * 3 * 4, dtype=np.int16).reshape(2, 3, 4) - 5
    vol = Volume(arr, spacing=(0.5, 0.75, 3.0), origin=(10, -20, 30), direction=direction_from_code("RAS"))
    path = write_image(vol, tmp_path / "v.nrrd")
    assert main(["info", str(path), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["size_xyz"] == [4, 3, 2] and info["shape_zyx"] == [2, 3, 4]
    assert info["spacing"] == [0.5, 0.75, 3.0] and info["origin"] == [10, -20, 30]
    assert info["orientation"] == "RAS" and info["dtype"] == "int16"
    assert (info["min"], info["max"]) == (-5, 18)


def test_info_text_mentions_orientation(tmp_path, capsys):
    path = write_image(Volume(np.zeros((2, 2, 2), np.uint8)), tmp_path / "v.mha")
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "orientation" in out and "LPS" in out


def test_info_on_nifti_with_nan_fails_in_one_line_naming_the_file(tmp_path):
    arr = np.zeros((3, 3, 3), np.float32)
    arr[1, 1, 1] = np.nan
    path = write_image(Volume(arr), tmp_path / "has_nan.nii.gz")
    proc = subprocess.run([sys.executable, "-m", "MedPrepLib", "info", str(path)], capture_output=True, text=True)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "has_nan.nii.gz" in lines[0] and "NaN" in lines[0]
    assert "Traceback" not in proc.stderr


def test_verbose_shows_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "MedPrepLib", "--verbose", "info", str(tmp_path / "missing.nii")],
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "missing.nii" in proc.stderr
