"""Rough edges of the command line (issue 7, point 13): progress while converting, a word on
success from restore, a clear recipe version message, a 4D NIfTI keeping its time spacing."""

from __future__ import annotations

import json

import numpy as np
import SimpleITK as sitk
from cli_run import on_a_terminal

from MedPrepLib.cli import main
from MedPrepLib.imageio import read_image, write_image
from MedPrepLib.volume import Volume


def test_convert_shows_its_progress_while_writing(tmp_path):
    noise = np.random.default_rng(0).integers(-1000, 2000, (60, 256, 256), dtype=np.int16)
    sitk.WriteImage(sitk.GetImageFromArray(noise), str(tmp_path / "in.nii"), False)
    code, shown = on_a_terminal("convert", tmp_path / "in.nii", tmp_path / "out.nii.gz")
    assert code == 0, shown
    fractions = {line.rsplit("]", 1)[-1].strip() for line in shown.split("\r") if "writing out.nii.gz" in line}
    assert len(fractions) >= 2, shown  # the write itself is reported as it goes, not only its end
    assert shown.endswith("\r")  # erased before the success line


def test_restore_says_what_it_wrote(tmp_path, capsys):
    image = Volume(np.zeros((8, 10, 12), np.int16), spacing=(0.7, 0.7, 2.5))
    write_image(image, tmp_path / "ct.nii.gz")
    (tmp_path / "r.json").write_text(json.dumps({"version": 1, "steps": [{"op": "resample", "spacing": [1, 1, 1]}]}))
    assert main(["preprocess", str(tmp_path / "ct.nii.gz"), str(tmp_path / "pre.nii.gz"), "--recipe", str(tmp_path / "r.json")]) == 0
    pre = read_image(tmp_path / "pre.nii.gz")
    pred = np.zeros(pre.shape, np.uint8)
    pred[5:10, 3:6, 2:8] = 2
    write_image(Volume(pred, pre.geometry), tmp_path / "pred.nii.gz")
    capsys.readouterr()
    argv = ["restore", str(tmp_path / "pred.nii.gz"), str(tmp_path / "back.nii.gz"), "--provenance", str(tmp_path / "pre.provenance.json")]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"wrote {tmp_path / 'back.nii.gz'} (12 x 10 x 8" in out and "labels 2" in out


def test_a_string_version_says_it_must_be_the_number_1(tmp_path, capsys):
    (tmp_path / "r.json").write_text(json.dumps({"version": "1", "steps": [{"op": "zscore"}]}))
    assert main(["recipe", "--check", str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err
    assert "'version' must be the number 1, got \"1\"" in err and "not supported" not in err
    (tmp_path / "r.json").write_text(json.dumps({"version": 2, "steps": [{"op": "zscore"}]}))
    assert main(["recipe", "--check", str(tmp_path / "r.json")]) == 2
    assert "recipe version 2 is not supported" in capsys.readouterr().err


def test_a_4d_nifti_keeps_its_time_spacing_through_preprocess(tmp_path):
    series = sitk.GetImageFromArray(np.arange(3 * 6 * 7 * 8, dtype=np.int16).reshape(3, 6, 7, 8), isVector=False)
    series.SetSpacing((1.2, 1.2, 3.0, 2.5))  # pixdim[4] = 2.5: e.g. seconds between volumes
    sitk.WriteImage(series, str(tmp_path / "fmri.nii.gz"))
    (tmp_path / "r.json").write_text(json.dumps({"version": 1, "steps": [{"op": "zscore"}, {"op": "resample", "spacing": [2, 2, 2]}]}))
    assert main(["preprocess", str(tmp_path / "fmri.nii.gz"), str(tmp_path / "o.nii.gz"), "--recipe", str(tmp_path / "r.json")]) == 0
    out = sitk.ReadImage(str(tmp_path / "o.nii.gz"))
    assert out.GetDimension() == 4 and out.GetSize()[3] == 3
    assert out.GetSpacing()[3] == 2.5
