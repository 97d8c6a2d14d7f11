"""Cohort tables -> source cases: CSV and JSON read alike, relative paths from the table's folder,
missing files left out by row number, bad tables refused naming row and column, picklable
loaders, and no file name in any message."""

from __future__ import annotations

import json
import os
import pickle

import numpy as np
import pytest

from MedPrepLib.errors import ExportError, InputError, MedPrepError
from MedPrepLib.export.cohort import NO_PATIENT_WARNING, read_cohort
from MedPrepLib.imageio import write_image
from MedPrepLib.volume import Volume
from Testing.dicom_factory import write_ct_series

NAME = "Doe_Jane"  # in every folder name: it must not reach a message


def volume(value: int) -> Volume:
    return Volume(np.full((3, 4, 5), value, np.int16), spacing=(0.7, 0.7, 2.5))


@pytest.fixture
def cohort(tmp_path):
    """A table folder with images a, b, c (and a label for a, b) below a folder named after a patient."""
    root = tmp_path / NAME
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for n, name in enumerate("abc", 1):
        write_image(volume(n), root / "images" / f"{NAME}_{name}.nii.gz")
    for name in "ab":
        write_image(
            Volume(np.ones((3, 4, 5), np.uint8), spacing=(0.7, 0.7, 2.5)), root / "labels" / f"{NAME}_{name}.nii.gz"
        )
    return root


def write_csv(path, header, rows):
    path.write_text("\n".join([",".join(header)] + [",".join(r) for r in rows]) + "\n", encoding="utf-8")
    return path


ROWS = [
    [f"images/{NAME}_a.nii.gz", f"labels/{NAME}_a.nii.gz", "P1", "train", "siteA"],
    [f"images/{NAME}_b.nii.gz", f"labels/{NAME}_b.nii.gz", "P1", "", "siteB"],
    [f"images/{NAME}_c.nii.gz", "", "P2", "test", "siteA"],
]
HEADER = ["image", "label", "patient", "split", "site"]


def messages(found) -> str:
    return " ".join([*found.warnings, *(f"{e.what} {e.reason}" for e in found.excluded)])


def test_a_csv_table_gives_one_case_per_row(cohort):
    found = read_cohort(write_csv(cohort / "cohort.csv", HEADER, ROWS), channel_name="CT")
    assert found.excluded == [] and found.warnings == []
    a, b, c = found.cases
    assert a.key == (os.path.normpath(ROWS[0][0]),) and a.patient == b.patient == "P1" != c.patient
    assert (a.split, b.split, c.split) == ("train", None, "test")
    assert dict(a.columns) == {"site": "siteA"} and a.modality == "CT" and list(a.images) == ["CT"]
    assert a.key_row == ("P1", "", ROWS[0][0])
    assert c.label is None and len({a.fingerprint, b.fingerprint, c.fingerprint}) == 3
    # loaders are picklable (worker processes) and load the right files
    image, label = pickle.loads(pickle.dumps((b.images["CT"], b.label)))
    assert image().array[0, 0, 0] == 2 and label().dtype == np.uint8
    case = c.to_case("case_0003")
    assert case.image("CT").array[0, 0, 0] == 3 and not case.labelled


def test_relative_paths_are_read_from_the_tables_folder(cohort, monkeypatch):
    table = write_csv(cohort / "cohort.csv", HEADER, ROWS)
    monkeypatch.chdir(cohort.parent)
    found = read_cohort(os.path.relpath(table), channel_name="CT")
    assert len(found.cases) == 3 and found.cases[0].images["CT"]().array[0, 0, 0] == 1


def test_json_reads_like_csv(cohort):
    objects = [dict(zip(HEADER, row)) for row in ROWS]
    objects[0]["site"] = 7  # numbers become text
    (cohort / "cohort.json").write_text(json.dumps(objects))
    from_json = read_cohort(cohort / "cohort.json", channel_name="CT")
    from_csv = read_cohort(write_csv(cohort / "cohort.csv", HEADER, ROWS), channel_name="CT")
    assert [c.key for c in from_json.cases] == [c.key for c in from_csv.cases]
    assert [c.split for c in from_json.cases] == [c.split for c in from_csv.cases]
    assert from_json.cases[0].columns["site"] == "7"
    objects[1].pop("site")
    (cohort / "cohort.json").write_text(json.dumps(objects))
    with pytest.raises(ExportError, match="row 2 of the cohort table has other keys than row 1 \\(missing: site"):
        read_cohort(cohort / "cohort.json")


def test_without_a_patient_column_each_row_is_its_own_patient_with_one_warning(cohort):
    rows = [r[:2] for r in ROWS]
    found = read_cohort(write_csv(cohort / "cohort.csv", ["image", "label"], rows), channel_name="CT")
    assert found.warnings == [NO_PATIENT_WARNING]
    assert len({c.patient for c in found.cases}) == 3 and all(c.key_row[0] == "" for c in found.cases)


def test_a_missing_file_is_left_out_by_row_number(cohort):
    rows = [list(r) for r in ROWS]
    rows[1][1] = f"labels/{NAME}_gone.nii.gz"
    rows[2][0] = f"images/{NAME}_gone.nii.gz"
    found = read_cohort(write_csv(cohort / "cohort.csv", HEADER, rows), channel_name="CT")
    assert [c.key_row[2] for c in found.cases] == [ROWS[0][0]]
    assert [e.what for e in found.excluded] == ["row 2", "row 3"]
    assert "column label" in found.excluded[0].reason and "column image" in found.excluded[1].reason
    assert NAME not in messages(found) and "gone" not in messages(found)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda h, r: (["picture", *h[1:]], r), r"no 'image' column \(columns: picture, label"),
        (lambda h, r: (h, [r[0], [*r[1][:3], "validation", r[1][4]]]), r"row 2, column split: 'validation' is not"),
        (lambda h, r: (h, [r[0], r[0]]), r"rows 1 and 2 name the same file \(columns image and image\)"),
        (lambda h, r: (h, [r[0], [r[1][0], r[0][1], *r[1][2:]]]), r"rows 1 and 2 name the same file \(columns label"),
        (lambda h, r: (h, [r[0], ["", *r[1][1:]]]), r"row 2, column image: no image"),
        (lambda h, r: (h, [r[0], [r[2][0], "", "P2", "train", ""]]), r"row 2 is marked 'train' but has no label"),
        (lambda h, r: (h, [r[0], [r[1][0], r[1][1], "", "", ""]]), r"row 2, column patient: empty"),
        (lambda h, r: ([*h, "site"], r), r"two columns named 'site'"),
        (lambda h, r: (["image", "image.T1"], [x[:2] for x in r]), "both an 'image' column and"),
    ],
)
def test_bad_tables_are_refused_naming_row_and_column(cohort, change, match):
    header, rows = change(HEADER, [list(r) for r in ROWS])
    with pytest.raises(ExportError, match=match) as info:
        read_cohort(write_csv(cohort / "cohort.csv", header, rows), channel_name="CT")
    assert NAME not in info.value.message


def test_quoted_values_and_a_bom(cohort):
    text = "image,label,note\n" + f'images/{NAME}_a.nii.gz,,"two\nlines, and a comma"\n'
    (cohort / "q.csv").write_text("\ufeff" + text, encoding="utf-8")
    (case,) = read_cohort(cohort / "q.csv", channel_name="CT").cases
    assert case.columns["note"] == "two\nlines, and a comma"


def test_unknown_table_formats_and_missing_tables(cohort):
    (cohort / "cohort.xlsx").write_text("")
    with pytest.raises(ExportError, match="a cohort table is a .csv, .tsv, .json file"):
        read_cohort(cohort / "cohort.xlsx")
    with pytest.raises(ExportError, match="does not exist") as info:
        read_cohort(cohort / "none.csv")
    assert NAME not in str(info.value) and NAME in info.value.detail


def test_several_channels_from_the_header(cohort):
    header = ["image.T1", "image.FLAIR", "label", "patient"]
    rows = [[f"images/{NAME}_a.nii.gz", f"images/{NAME}_b.nii.gz", f"labels/{NAME}_a.nii.gz", "P1"]]
    found = read_cohort(write_csv(cohort / "mr.csv", header, rows))
    (case,) = found.cases
    assert list(case.images) == ["T1", "FLAIR"] and case.modality == "" and found.warnings == []
    assert case.images["FLAIR"]().array[0, 0, 0] == 2 and len(case.key) == 2
    with pytest.raises(ExportError, match="a channel name is for a table with one 'image' column"):
        read_cohort(cohort / "mr.csv", channel_name="CT")


def test_the_channel_of_an_image_column_is_named_after_the_dicom_modality(cohort):
    write_ct_series(cohort / "dicom" / "s1", 3)
    write_ct_series(cohort / "dicom" / "s2", 3)
    found = read_cohort(write_csv(cohort / "ct.csv", ["image", "patient"], [["dicom/s1", "P1"], ["dicom/s2", "P2"]]))
    assert found.warnings == [] and [list(c.images) for c in found.cases] == [["CT"], ["CT"]]
    assert all(c.modality == "CT" for c in found.cases)
    assert found.cases[0].images["CT"]().shape[0] == 3
    # image files carry no modality: channel 'image', with a warning saying how to name it
    found = read_cohort(write_csv(cohort / "files.csv", ["image", "patient"], [[ROWS[0][0], "P1"]]))
    assert list(found.cases[0].images) == ["image"] and found.cases[0].modality == ""
    assert len(found.warnings) == 1 and "--channel-name CT" in found.warnings[0]


def test_a_loader_error_keeps_the_path_out_of_its_message(cohort):
    (cohort / "images" / f"{NAME}_broken.nii.gz").write_bytes(b"not an image")
    found = read_cohort(write_csv(cohort / "c.csv", ["image"], [[f"images/{NAME}_broken.nii.gz"]]), channel_name="CT")
    with pytest.raises(InputError) as info:
        found.cases[0].images["CT"]()
    assert isinstance(info.value, MedPrepError) and info.value.message.startswith("channel CT: ")
    assert NAME not in str(info.value) and NAME in info.value.one_line(verbose=True)


def test_the_fingerprint_follows_the_files(cohort):
    table = write_csv(cohort / "cohort.csv", HEADER, ROWS)
    before = [c.fingerprint for c in read_cohort(table, channel_name="CT").cases]
    assert before == [c.fingerprint for c in read_cohort(table, channel_name="CT").cases]
    os.utime(cohort / "labels" / f"{NAME}_b.nii.gz", ns=(1, 1))
    after = [c.fingerprint for c in read_cohort(table, channel_name="CT").cases]
    assert after[0] == before[0] and after[1] != before[1] and after[2] == before[2]
