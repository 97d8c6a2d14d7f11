"""``medprep preprocess``: outputs, provenance beside the output, refusals and exit codes."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from MedPrepLib.cli import EXIT_ERROR, main
from MedPrepLib.imageio import read_image, write_image
from MedPrepLib.recipe import Recipe, compute_statistics, run_recipe
from MedPrepLib.volume import Volume

RECIPE = {
    "version": 1,
    "steps": [
        {"op": "pad_to_air"},
        {"op": "clip_scale", "min": -1000, "max": 400},
        {"op": "zscore", "mask": "label"},
    ],
}


@pytest.fixture()
def case(tmp_path):
    rng = np.random.default_rng(4)
    a = rng.integers(-1100, 1500, size=(6, 20, 24)).astype(np.int16)
    a[:, :2] = -2048
    lab = np.zeros(a.shape, np.uint8)
    lab[1:5, 5:15, 4:20] = 2
    geom = dict(spacing=(0.7, 0.7, 2.5), origin=(-30.0, 12.5, 100.0))
    image = write_image(Volume(a, **geom), tmp_path / "ct.nii.gz")
    label = write_image(Volume(lab, **geom), tmp_path / "seg.nii.gz")
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps(RECIPE))
    return tmp_path, image, label, recipe


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_preprocess_writes_image_label_and_provenance(case, capsys):
    d, image, label, recipe = case
    out, lab_out = d / "out" / "ct.nrrd", d / "out" / "seg.nrrd"
    out.parent.mkdir()
    argv = [
        "preprocess",
        str(image),
        str(out),
        "--recipe",
        str(recipe),
        "--label",
        str(label),
        "--label-output",
        str(lab_out),
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "wrote" in printed and "ct.nrrd (24 x 20 x 6, spacing 0.7, 0.7, 2.5 mm, float32)" in printed
    prov_path = d / "out" / "ct.provenance.json"
    prov = json.loads(prov_path.read_text())
    assert prov["format"] == "medprep-provenance" and prov["recipe"] == Recipe.from_dict(RECIPE).to_dict()
    assert [s["op"] for s in prov["steps"]] == ["pad_to_air", "clip_scale", "zscore"]
    assert str(d) not in prov_path.read_text()  # no input paths (folder names may name patients)
    # Same numbers as the library call.
    expected = run_recipe(Recipe.from_dict(RECIPE), read_image(image), read_image(label)).image
    got = read_image(out)
    np.testing.assert_array_equal(got.array, expected.array)
    assert got.geometry.isclose(expected.geometry)
    # (Keep each Volume alive while using its array: it may be a view on a SimpleITK buffer.)
    label_in, label_out = read_image(label), read_image(lab_out)
    np.testing.assert_array_equal(label_out.array, label_in.array)
    # Refuses to overwrite, before doing any work; --overwrite replays byte-identically.
    digest = sha256(out)
    assert main(argv) == EXIT_ERROR
    assert "output exists" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0
    assert sha256(out) == digest


def test_explicit_provenance_and_statistics(case):
    d, image, label, _ = case
    recipe = {"version": 1, "steps": [{"op": "ct_normalization", "samples_per_case": 500}]}
    (d / "ct.json").write_text(json.dumps(recipe))
    stats = compute_statistics(Recipe.from_dict(recipe), [(read_image(image), read_image(label))])
    (d / "stats.json").write_text(json.dumps(stats))
    argv = [
        "preprocess",
        str(image),
        str(d / "o.mha"),
        "--recipe",
        str(d / "ct.json"),
        "--statistics",
        str(d / "stats.json"),
        "--provenance",
        str(d / "p.json"),
    ]
    assert main(argv) == 0
    assert json.loads((d / "p.json").read_text())["statistics"] == stats
    assert not (d / "o.provenance.json").exists()


@pytest.mark.parametrize(
    "extra, recipe_json, message",
    [
        (
            [],
            {"version": 1, "steps": [{"op": "window", "preset": "lungs"}]},
            r"step 1 \(window\): 'preset' names an unknown preset",
        ),
        (
            [],
            {"version": 1, "steps": [{"op": "ct_normalization"}]},
            r"step 1 \(ct_normalization\): needs the dataset's",
        ),
        (["--label-output", "x.nrrd"], RECIPE, "--label-output needs --label"),
        (["--series", "1.2.3"], RECIPE, "--series applies to DICOM input only"),
        (
            [],
            {"version": 1, "steps": [{"op": "zscore", "mask": "label"}]},
            r"step 1 \(zscore\): 'mask' is \"label\" but no label",
        ),
    ],
)
def test_errors_are_one_line_and_exit_non_zero(case, capsys, extra, recipe_json, message):
    d, image, _, recipe = case
    recipe.write_text(json.dumps(recipe_json))
    code = main(["preprocess", str(image), str(d / "o.nii.gz"), "--recipe", str(recipe), *extra])
    err = capsys.readouterr().err
    assert code == EXIT_ERROR
    assert len(err.strip().splitlines()) == 1
    import re

    assert re.search(message, err), err
    assert not (d / "o.nii.gz").exists()


def test_missing_input_and_mismatched_label(case, capsys):
    d, image, _, recipe = case
    assert main(["preprocess", str(d / "nope.nii.gz"), str(d / "o.nii.gz"), "--recipe", str(recipe)]) == EXIT_ERROR
    assert "input not found" in capsys.readouterr().err
    other = write_image(Volume(np.zeros((3, 4, 5), np.uint8)), d / "small.nii.gz")
    argv = ["preprocess", str(image), str(d / "o.nii.gz"), "--recipe", str(recipe), "--label", str(other)]
    argv += ["--label-output", str(d / "lo.nii.gz")]
    assert main(argv) == EXIT_ERROR
    assert "the label's grid" in capsys.readouterr().err


@pytest.mark.pydicom_dependent
def test_dicom_series_padding_and_its_own_window(tmp_path, capsys):
    """A DICOM folder in: stored PixelPaddingValue 0 (-1024 HU after rescale) becomes air, then
    the series' own WindowCenter/WindowWidth; no identity reaches the provenance."""
    from dicom_factory import expected_stored, write_ct_series

    folder = tmp_path / "dicom"
    write_ct_series(folder, 4, rows=12, cols=16, PixelPaddingValue=0, WindowCenter="40", WindowWidth="400")
    recipe = tmp_path / "r.json"
    recipe.write_text(
        json.dumps(
            {
                "version": 1,
                "steps": [{"op": "pad_to_air", "out_of_field": False}, {"op": "window", "from_series": True}],
            }
        )
    )
    out = tmp_path / "out.nii.gz"
    assert main(["preprocess", str(folder), str(out), "--recipe", str(recipe)]) == 0
    hu = np.stack([expected_stored(k, 12, 16) for k in range(4)]).astype(np.float64) - 1024
    padded = hu == -1024
    hu[padded] = -1000
    expected = np.clip((hu + 160) / 400, 0, 1)
    got = read_image(out)
    np.testing.assert_allclose(got.array, expected, atol=1e-6)
    text = (tmp_path / "out.provenance.json").read_text()
    prov = json.loads(text)
    assert prov["steps"][0]["record"]["padding_values"] == [-1024.0]
    assert prov["steps"][0]["record"]["voxels_set_to_air"] == int(padded.sum()) > 0
    assert prov["steps"][1]["record"]["windows"] == [{"level": 40.0, "width": 400.0, "source": "series"}]
    assert "Synthetic" not in text and "SYNTH-0001" not in text
    assert (
        main(
            [
                "preprocess",
                str(folder),
                str(tmp_path / "o2.nii.gz"),
                "--recipe",
                str(recipe),
                "--series",
                "no-such-series",
            ]
        )
        == EXIT_ERROR
    )
    assert capsys.readouterr().err.count("\n") == 1
