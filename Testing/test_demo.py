"""``medprep demo`` on built-in data: the phantom and its DICOM series are what they claim."""

from __future__ import annotations

import json

import numpy as np
import pydicom
import SimpleITK as sitk

from MedPrepLib.cli import main
from MedPrepLib.demo import dice
from MedPrepLib.imageio import read_image
from MedPrepLib.recipe import Recipe, run_recipe
from MedPrepLib.sampledata import PADDING_STORED, chest_ct_phantom, write_ct_series
from MedPrepLib.sources import load_path


def test_phantom_has_chest_anatomy_in_hu():
    vol = chest_ct_phantom(seed=1)
    a = vol.array
    assert a.dtype == np.int16
    # tissue classes present in realistic proportions
    lung = np.mean((a > -950) & (a < -700))
    bone = np.mean(a > 300)
    soft = np.mean((a > -50) & (a < 100))
    assert 0.03 < lung < 0.3 and 0.001 < bone < 0.05 and 0.1 < soft < 0.5
    # same seed, same phantom
    np.testing.assert_array_equal(chest_ct_phantom(seed=1).array, a)
    assert vol.geometry.orientation == "LPS"


def test_series_reads_back_in_hu_with_geometry_by_an_independent_reader(tmp_path):
    vol = chest_ct_phantom(shape_zyx=(6, 64, 64), spacing_xyz=(2.0, 2.0, 4.0))
    paths = write_ct_series(vol, tmp_path)
    ds = pydicom.dcmread(paths[0])
    assert str(ds.PatientName) == "MEDPREP^DEMO" and ds.RescaleIntercept == -1024
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames([str(p) for p in paths])
    image = reader.Execute()
    hu = sitk.GetArrayFromImage(image)
    inside = hu != PADDING_STORED - 1024
    np.testing.assert_array_equal(hu[inside], vol.array[inside])
    assert (~inside).any()  # the circle outside the field of view carries PixelPaddingValue
    np.testing.assert_allclose(image.GetSpacing(), vol.spacing)
    np.testing.assert_allclose(image.GetOrigin(), vol.origin, atol=1e-6)


def test_demo_command_runs_the_whole_job_and_reports(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", str(out)]) == 0
    text = capsys.readouterr().out
    assert str(out.resolve()) in text
    assert len(list((out / "dicom").glob("*.dcm"))) == 48
    names = {p.name for p in out.iterdir()}
    assert {"ct.nii.gz", "label.nii.gz", "recipe.json", "provenance.json", "ct_preprocessed.nii.gz",
            "label_preprocessed.nii.gz", "label_restored.nii.gz"} <= names
    # the loaded CT is the phantom in HU (padding outside the field of view kept as stored)
    ct = read_image(out / "ct.nii.gz")
    phantom = chest_ct_phantom()
    inside = ct.array != PADDING_STORED - 1024
    np.testing.assert_array_equal(ct.array[inside], phantom.array[inside])
    assert ct.geometry.isclose(phantom.geometry, atol_mm=1e-4)
    # preprocessed: 1.5 mm, RAS, [0, 1], and the recipe replays to the same bytes
    pre = read_image(out / "ct_preprocessed.nii.gz")
    assert pre.geometry.orientation == "RAS"
    np.testing.assert_allclose(pre.spacing, (1.5, 1.5, 1.5), atol=1e-5)
    assert 0.0 <= pre.array.min() and pre.array.max() <= 1.0
    replay = run_recipe(Recipe.load(out / "recipe.json"), load_path(out / "dicom"))  # from the same DICOM
    np.testing.assert_array_equal(replay.image.array, pre.array)
    # the restored label overlaps the original per label
    label, restored = read_image(out / "label.nii.gz"), read_image(out / "label_restored.nii.gz")
    for value in (1, 2):
        assert dice(label.array == value, restored.array == value) > 0.98
    # no patient identity in any written sidecar; outputs have ordinary permissions
    for sidecar in ("recipe.json", "provenance.json"):
        body = (out / sidecar).read_text()
        assert "MEDPREP^DEMO" not in body and "MEDPREP-DEMO-0001" not in body
        assert (out / sidecar).stat().st_mode & 0o044  # readable by others like any file
    assert json.loads((out / "provenance.json").read_text())["format"] == "medprep-provenance"
    # a second run refuses to overwrite
    assert main(["demo", str(out)]) != 0
