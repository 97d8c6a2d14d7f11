"""``medprep info`` on DICOM: a file, a folder with one stack, a folder with several."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("pydicom")

from dicom_factory import expected_stored, write_ct_series  # noqa: E402

from MedPrepLib.cli import main  # noqa: E402

pytestmark = pytest.mark.pydicom_dependent


def test_info_on_a_dicom_folder_describes_the_stack_as_loaded(tmp_path, capsys):
    write_ct_series(tmp_path / "ct", 5, rows=24, cols=32, step=2.5, pixel_spacing=(0.7, 0.8), Modality="CT")
    assert main(["info", str(tmp_path / "ct"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["size_xyz"] == [32, 24, 5] and info["modality"] == "CT" and info["n_files"] == 5
    assert info["spacing"] == pytest.approx([0.8, 0.7, 2.5])
    assert info["orientation"] == "LPS" and info["dtype"] == "int16"
    hu = [expected_stored(k, 24, 32) - 1024 for k in range(5)]
    assert (info["min"], info["max"]) == (min(int(a.min()) for a in hu), max(int(a.max()) for a in hu))
    assert main(["info", str(tmp_path / "ct")]) == 0
    text = capsys.readouterr().out
    assert "orientation" in text and "CT" in text and "unknown image format" not in text


def test_info_on_one_dicom_file(tmp_path, capsys):
    paths = write_ct_series(tmp_path, 3)
    assert main(["info", str(paths[1]), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["size_xyz"] == [32, 24, 1] and info["n_files"] == 1
    assert any("single slice" in w for w in info["warnings"])


def test_info_on_a_folder_with_two_stacks_lists_them_and_describes_one(tmp_path, capsys):
    write_ct_series(tmp_path, 4, prefix="A")
    write_ct_series(tmp_path, 3, prefix="B", rows=16, cols=16)
    assert main(["info", str(tmp_path), "--json"]) == 0
    stacks = json.loads(capsys.readouterr().out)["stacks"]
    assert sorted(s["shape"][:3] for s in stacks) == [[16, 16, 3], [32, 24, 4]]
    small = next(s["id"] for s in stacks if s["shape"][0] == 16)
    assert main(["info", str(tmp_path), "--series", small, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["stack_id"] == small and info["size_xyz"] == [16, 16, 3]
    assert main(["info", str(tmp_path), "--series", "nope"]) == 2
    assert "no stack with id 'nope'" in capsys.readouterr().err


def test_info_refuses_series_on_an_image_file(tmp_path, capsys):
    from MedPrepLib.imageio import write_image
    from MedPrepLib.volume import Volume

    path = write_image(Volume(np.zeros((2, 2, 2), np.uint8)), tmp_path / "v.nii.gz")
    assert main(["info", str(path), "--series", "x"]) == 2
    assert "DICOM input only" in capsys.readouterr().err
