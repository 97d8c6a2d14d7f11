"""``medprep demo`` on built-in data: the phantom and its DICOM series are what they claim."""

from __future__ import annotations

import json

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from MedPrepLib.cli import main
from MedPrepLib.demo import PHANTOM_SHAPE, PHANTOM_SPACING, demo_cohort
from MedPrepLib.imageio import read_image
from MedPrepLib.sampledata import PADDING_STORED, _uid, chest_ct_phantom, write_ct_series


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
    folder = out / "nnUNet_raw" / "Dataset500_MedPrepDemo"
    assert text.rstrip().splitlines()[-1] == f"QC report: {(folder / 'qc' / 'report.html').resolve()}"
    # the cohort: 5 patients, 6 studies; the localizer and the dose report are left out with reasons
    record = json.loads((folder / "medprep.json").read_text())
    assert len(record["cases"]) == 6 and not record["quarantined"]
    reasons = sorted(e["reason"] for e in record["excluded"])
    assert any("localizer" in r for r in reasons) and any("dose report" in r for r in reasons)
    dataset = json.loads((folder / "dataset.json").read_text())
    assert dataset["channel_names"] == {"0": "CT"} and dataset["labels"] == {"background": 0, "lungs": 1, "bone": 2}
    # patient 1's two studies are in one fold
    key = {row.split(",")[0]: row.split(",")[1] for row in (out / "key.csv").read_text().splitlines()[1:]}
    folds = json.loads((folder / "splits_final.json").read_text())
    fold_of = {case: k for k, split in enumerate(folds) for case in split["val"]}
    twice = [case for case, patient in key.items() if patient == "MEDPREP-DEMO-0001"]
    assert len(twice) == 2 and fold_of[twice[0]] == fold_of[twice[1]]
    # each exported image is its series in HU as int16 (the phantom itself, padding set to air,
    # where the series is not tilted), its label on the same grid
    study_of = {row.split(",")[0]: row.split(",")[2] for row in (out / "key.csv").read_text().splitlines()[1:]}
    studies = {_uid(f"demo-study-{s.seed}study"): s for s in demo_cohort()}
    for case in key:
        image = read_image(folder / "imagesTr" / f"{case}_0000.nii.gz")
        label = read_image(folder / "labelsTr" / f"{case}.nii.gz")
        assert image.dtype == np.int16 and label.dtype == np.uint8 and image.geometry == label.geometry
        assert set(np.unique(label.array)) <= {0, 1, 2} and (label.array == 1).any() and (label.array == 2).any()
        study = studies[study_of[case]]
        if not study.tilt_deg:
            phantom = chest_ct_phantom((study.slices, *PHANTOM_SHAPE[1:]), PHANTOM_SPACING, seed=study.seed)
            np.testing.assert_array_equal(image.array, phantom.array)
            assert image.geometry.isclose(phantom.geometry, atol_mm=1e-4)
    tilted = [c for c in record["cases"] if any("gantry tilt" in w for w in c["warnings"])]
    assert len(tilted) == 1
    # no identity of the synthetic patients anywhere in the dataset (the key file is outside it)
    for path in folder.rglob("*"):
        if path.is_file() and path.suffix in (".json", ".csv", ".html"):
            body = path.read_text()
            assert "MEDPREP-DEMO" not in body and "DEMO^PATIENT" not in body and "DEMO_PATIENT" not in body, path
    # a second run refuses to overwrite
    assert main(["demo", str(out)]) != 0


def test_demo_dataset_passes_nnunet_planning(tmp_path):
    """Acceptance: nnU-Net's own verify_dataset_integrity and plan_and_preprocess run through on
    the demo's dataset."""
    pytest.importorskip("nnunetv2")
    from test_export_nnunet import run_nnunet

    out = tmp_path / "demo"
    assert main(["demo", str(out)]) == 0
    raw = tmp_path / "nnUNet_raw"
    raw.mkdir()
    (out / "nnUNet_raw" / "Dataset500_MedPrepDemo").rename(raw / "Dataset500_MedPrepDemo")
    code = (
        "import sys; from nnunetv2.experiment_planning.plan_and_preprocess_entrypoints import plan_and_preprocess_entry; "
        "sys.argv = ['nnUNetv2_plan_and_preprocess', '-d', '500', '-c', '3d_fullres', '-np', '1', '--verify_dataset_integrity']; "
        "plan_and_preprocess_entry()"
    )
    result = run_nnunet(code, tmp_path)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    pre = tmp_path / "nnUNet_preprocessed" / "Dataset500_MedPrepDemo"
    plans = json.loads((pre / "nnUNetPlans.json").read_text())
    assert plans["configurations"]["3d_fullres"]["normalization_schemes"] == ["CTNormalization"]
    assert json.loads((pre / "splits_final.json").read_text()) == json.loads((raw / "Dataset500_MedPrepDemo" / "splits_final.json").read_text())
    assert len(list((pre / "nnUNetPlans_3d_fullres").glob("*.pkl"))) == 6
