"""Pseudonyms, the sidecar allow-list and the key file; and a planted identity reaching no output.

Names, IDs, a birth date, an accession number, an institution and a UID are planted in the
headers and the source paths of a small cohort. The building blocks of an export run on it
(case ids, splits, sidecars, every format's files and index); then every written file of every
format is read — ``.nii.gz`` decompressed, ``.npz`` members decompressed — and none of the
planted strings may appear. Only the key file, written outside the dataset, holds them.
"""

from __future__ import annotations

import gzip
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pytest

from MedPrepLib.errors import ExportError
from MedPrepLib.export import msd, nnunet, plain
from MedPrepLib.export.privacy import (
    AGE_CEILING,
    SIDECAR_FIELDS,
    KeyRow,
    age_in_years,
    assign_case_ids,
    salted_token,
    sidecar,
    write_key_file,
)
from MedPrepLib.export.splits import SplitCase, make_splits
from MedPrepLib.imageio import write_image
from MedPrepLib.jsonfiles import write_json
from MedPrepLib.volume import Volume

SECRET = "0123456789abcdef-kept-outside"


# --- pseudonyms ------------------------------------------------------------------------------------


def test_case_ids_are_ranks_independent_of_order():
    keys = [("JD19700314", "1.2.826.0.1.3680043.2.1"), ("AB123", "1.2.3"), ("AB123", "1.2.4")]
    ids = assign_case_ids(keys)
    assert ids == assign_case_ids(list(reversed(keys)))
    assert ids[("AB123", "1.2.3")] == "case_0001" and ids[("JD19700314", "1.2.826.0.1.3680043.2.1")] == "case_0003"
    salted = assign_case_ids(keys, secret=SECRET, prefix="liver")
    assert salted == assign_case_ids(reversed(keys), secret=SECRET, prefix="liver")
    assert sorted(salted.values()) == ["liver_0001", "liver_0002", "liver_0003"]
    # with a secret the rank no longer follows the sorted keys (for some secret among a few)
    orders = {tuple(map(assign_case_ids(keys, secret=SECRET + str(n)).get, keys)) for n in range(6)}
    assert len(orders) > 1
    assert assign_case_ids([str(n) for n in range(12000)])["0"] == "case_00001"  # ids widen, still sort


def test_pseudonym_refusals():
    with pytest.raises(ExportError, match="at least 16"):
        assign_case_ids(["a"], secret="short")
    with pytest.raises(ExportError, match="repeat"):
        assign_case_ids([("P", "S"), ("P", "S")])
    with pytest.raises(ExportError, match="prefix"):
        assign_case_ids(["a"], prefix="../x")


def test_salted_token_needs_the_secret():
    uid = "1.2.826.0.1.3680043.8.498.1"
    assert salted_token(uid, SECRET) == salted_token(uid, SECRET)
    assert salted_token(uid, SECRET) != salted_token(uid, SECRET + "!")
    assert uid not in salted_token(uid, SECRET) and len(salted_token(uid, SECRET, length=32)) == 32


# --- the sidecar ---------------------------------------------------------------------------------

HEADER = {
    "Modality": "MR",
    "Manufacturer": "SIEMENS",
    "ManufacturerModelName": "Skyra",
    "MagneticFieldStrength": "3",
    "ConvolutionKernel": ["FC03", "Doe research kernel"],  # a site wrote the patient's name here
    "SliceThickness": "1.5",
    "PixelSpacing": ["0.5", "0.4"],
    "PatientName": "Doe^Jane^Q",
    "PatientID": "JD19700314",
    "PatientBirthDate": "19700314",
    "AccessionNumber": "ACC998877",
    "InstitutionName": "St Elsewhere Hospital",
    "StudyInstanceUID": "1.2.826.0.1.3680043.8.498.1",
    "StudyDate": "20240301",
    "PatientSex": "F",
    "PatientAge": "053Y",
}


def test_sidecar_keeps_the_allow_list_only():
    out = sidecar(HEADER)
    assert out == {
        "modality": "MR",
        "manufacturer": "SIEMENS",
        "model": "Skyra",
        "field_strength_t": 3.0,
        "slice_thickness_mm": 1.5,
        "pixel_spacing_mm": [0.4, 0.5],  # (x, y): DICOM's column spacing first
    }  # the kernel held the patient's name: dropped
    assert set(out) <= set(SIDECAR_FIELDS)
    asked = sidecar(HEADER, include_age=True, include_sex=True, spacing=(0.4, 0.5, 1.5))
    assert asked["age_years"] == 53 and asked["sex"] == "F" and asked["spacing_mm"] == [0.4, 0.5, 1.5]
    assert "pixel_spacing_mm" not in asked


def test_sidecar_reads_a_pydicom_dataset():
    pydicom = pytest.importorskip("pydicom")
    ds = pydicom.Dataset()
    for keyword, value in HEADER.items():
        setattr(ds, keyword, value)
    ds.KVP = "120"
    out = sidecar(ds, include_age=True)
    assert out["kvp"] == 120.0 and out["age_years"] == 53 and out["model"] == "Skyra"
    assert "convolution_kernel" not in out and "Doe" not in json.dumps(out)


@pytest.mark.parametrize(
    ("header", "years"),
    [
        ({"PatientAge": "018M"}, 1),
        ({"PatientAge": "003W"}, 0),
        ({"PatientAge": "095Y"}, AGE_CEILING),
        ({"PatientBirthDate": "19700314", "StudyDate": "20240313"}, 53),
        ({"PatientBirthDate": "19700314", "StudyDate": "20240314"}, 54),
        ({"PatientAge": "garbage"}, None),
        ({}, None),
    ],
)
def test_age_in_years(header, years):
    assert age_in_years(header) == years


# --- the key file ----------------------------------------------------------------------------------


def test_key_file_refused_inside_the_dataset(tmp_path):
    dataset = tmp_path / "Dataset501_X"
    dataset.mkdir()
    rows = [KeyRow("case_0002", "JD19700314", "1.2.3", "/in/Doe_Jane"), KeyRow("case_0001", "AB", "", "x.nii.gz")]
    for inside in (dataset / "key.csv", dataset / "sub" / "key.csv", dataset):
        with pytest.raises(ExportError, match="inside the dataset folder"):
            write_key_file(inside, rows, dataset_folder=dataset)
    (tmp_path / "link").symlink_to(dataset)
    with pytest.raises(ExportError, match="inside the dataset folder"):
        write_key_file(tmp_path / "link" / "key.csv", rows, dataset_folder=dataset)
    written = write_key_file(tmp_path / "key.csv", rows, dataset_folder=dataset)
    assert written.read_text().splitlines() == [
        "case,patient,study,source",
        "case_0001,AB,,x.nii.gz",
        "case_0002,JD19700314,1.2.3,/in/Doe_Jane",
    ]
    assert not list(dataset.iterdir())


# --- nothing planted reaches any output ------------------------------------------------------------

PLANTED = ("doe", "jane", "jd19700314", "19700314", "acc998877", "elsewhere", "1.2.826.0.1.3680043.8.498", "rick", "rr-1", "edgar", "ep-2")


def planted_cohort(root: Path):
    """Four studies of three patients; names and IDs in headers and in the source paths."""
    cohort = []
    for n, (name, pid) in enumerate([("Doe^Jane", "JD19700314"), ("Doe^Jane", "JD19700314"), ("Roe^Rick", "RR-1"), ("Poe^Edgar", "EP-2")]):
        header = dict(HEADER, PatientName=name, PatientID=pid, StudyInstanceUID=f"1.2.826.0.1.3680043.8.498.{n + 10}")
        header["ConvolutionKernel"] = ["FC03", f"{name.split('^')[0]} {pid} kernel"]  # the patient's own name and ID
        source = root / "incoming" / f"{name.replace('^', '_')}_{pid}" / f"study_{n}"
        cohort.append((header, str(source)))
    return cohort


def every_text(folder: Path):
    """(relative path, decoded content) of every file, gz decompressed, npz members decompressed."""
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        if path.name.endswith(".gz"):
            data = gzip.decompress(data)
        if path.suffix == ".npz":
            with zipfile.ZipFile(path) as zf:
                data = b"".join(zf.read(name) + name.encode() for name in zf.namelist())
        yield str(path.relative_to(folder)), data.decode("latin-1").lower()


def test_planted_identity_reaches_no_output(tmp_path):
    cohort = planted_cohort(tmp_path)
    ids = assign_case_ids([(h["PatientID"], h["StudyInstanceUID"]) for h, _ in cohort], secret=SECRET)
    rng = np.random.default_rng(0)
    cases = []
    for header, source in cohort:
        case_id = ids[(header["PatientID"], header["StudyInstanceUID"])]
        grid = dict(spacing=(0.4, 0.5, 1.5), origin=(0.0, 0.0, 0.0))
        # the volume's metadata carries identity, as a careless source might leave it
        meta = {"source": source, "PatientName": header["PatientName"]}
        image = Volume(rng.integers(0, 500, (4, 5, 6)).astype(np.int16), **grid, metadata=meta)
        label = Volume((rng.random((4, 5, 6)) > 0.5).astype(np.uint8), **grid, metadata=meta)
        cases.append((case_id, header, source, image, label))
    splits = make_splits([SplitCase(c[0], c[1]["PatientID"]) for c in cases], folds=2, seed=0)
    labels = {"background": 0, "lesion": 1}
    out = tmp_path / "out"
    datasets = {
        "nnunet": out / nnunet.dataset_folder_name(501, "Planted"),
        "msd": out / msd.task_folder_name(1, "Planted"),
        "nifti": out / "plain_nifti",
        "npz": out / "plain_npz",
    }
    for fmt, folder in datasets.items():
        written = []
        for case_id, header, _, image, label in cases:
            split, fold = splits.split_of(case_id), splits.fold_of(case_id)
            if fmt == "nnunet":
                files = nnunet.case_files(case_id, split, channels=1, labelled=True, fold=fold)
            elif fmt == "msd":
                files = msd.case_files(case_id, split, labelled=True, fold=fold)
            else:
                files = plain.case_files(case_id, split, fmt=fmt, channels=1, labelled=True, fold=fold)
            for path in files.files:
                (folder / path).parent.mkdir(parents=True, exist_ok=True)
            if fmt == "npz":
                plain.write_npz(folder / files.images[0], [image], label)
            else:
                write_image(image, folder / files.images[0])
                write_image(label, folder / files.label)
            write_json(sidecar(header, include_age=True, include_sex=True), folder / f"{case_id}.sidecar.json")
            written.append(files)
        if fmt == "nnunet":
            nnunet.write_index(folder, written, labels=labels, channels=["MR"], name="Planted")
        elif fmt == "msd":
            msd.write_index(folder, written, labels=labels, channels=["MR"], name="Planted")
        else:
            plain.write_index(folder, written, fmt=fmt, labels=labels, channels=["MR"])
    (tmp_path / "private").mkdir()
    key_file = write_key_file(
        tmp_path / "private" / "key.csv",
        [KeyRow(c[0], c[1]["PatientID"], c[1]["StudyInstanceUID"], c[2]) for c in cases],
        dataset_folder=datasets["nnunet"],
    )
    checked = 0
    for fmt, folder in datasets.items():
        for name, text in every_text(folder):
            checked += 1
            leaked = [p for p in PLANTED if p in text or p in name.lower()]
            assert not leaked, f"{fmt}: {name} holds {leaked}"
    assert checked >= 4 * 4
    # ids say nothing: not taken from the key, not in the order of the patient ids
    assert all(v.startswith("case_") and v[5:].isdigit() for v in ids.values())
    key_text = key_file.read_text().lower()
    assert "jd19700314" in key_text and "doe_jane" in key_text  # the key file is the one place
    assert not str(key_file).startswith(str(out) + os.sep)
