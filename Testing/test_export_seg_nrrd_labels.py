"""Slicer segmentations (``.seg.nrrd``) as the labels of an image folder or a cohort table: named
segments placed on the case's image grid and valued through the dataset's one label table, by
name — whatever their order, layer or label value in each file.

Real files: written by slicerio's writer (``add_segment`` puts an overlapping segment in a new
layer, as Slicer does), on an oblique grid, one cropped to a sub-box of its image as Slicer
crops on saving.
"""

from __future__ import annotations

import csv
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
from cli_run import run_medprep

slicerio = pytest.importorskip("slicerio", reason='needs slicerio (pip install "medprep[labels]")')

from MedPrepLib.errors import ExportError, MedPrepError  # noqa: E402
from MedPrepLib.export.image_folder import read_image_folder  # noqa: E402
from MedPrepLib.export.object_labels import ObjectLabel  # noqa: E402
from MedPrepLib.export.runner import export_dataset  # noqa: E402
from MedPrepLib.export.source_reader import source_kind  # noqa: E402
from MedPrepLib.geometry import Geometry  # noqa: E402
from MedPrepLib.imageio import read_image, write_image  # noqa: E402
from MedPrepLib.volume import Volume  # noqa: E402

_C, _S = np.cos(np.radians(15)), np.sin(np.radians(15))
GRID = Geometry(
    size=(16, 14, 8),
    spacing=(0.8, 0.9, 2.5),
    origin=(12.5, -30.0, 40.0),
    direction=np.array([[_C, -_S, 0.0], [_S, _C, 0.0], [0.0, 0.0, 1.0]]),
)
SHAPE = GRID.shape  # (8, 14, 16)
NAME = "Doe_Jane"  # a patient name in the file names: it must reach no output


def box(z0, z1, y0, y1, x0, x1) -> np.ndarray:
    m = np.zeros(SHAPE, bool)
    m[z0:z1, y0:y1, x0:x1] = True
    return m


LIVER = box(1, 6, 2, 10, 2, 10)
TUMOUR = box(3, 5, 7, 12, 7, 12)  # overlaps the liver: 2 * 3 * 3 = 18 voxels
SPLEEN = box(0, 3, 0, 4, 12, 16)
KIDNEY = box(5, 8, 10, 14, 0, 5)


def write_seg(path: Path, named, *, geometry: Geometry = GRID, crop=None) -> Path:
    """A .seg.nrrd of (name, (z, y, x) mask) in that order; ``crop`` = ((z0, y0, x0), (z1, y1, x1))
    writes only that box of the grid (as Slicer crops to the segments' extent)."""
    if crop is not None:
        (z0, y0, x0), (z1, y1, x1) = crop
        geometry = geometry.replace(origin=tuple(geometry.index_to_physical((x0, y0, z0))),
                                    size=(x1 - x0, y1 - y0, z1 - z0))  # fmt: skip
        named = [(n, m[z0:z1, y0:y1, x0:x1]) for n, m in named]
    path.parent.mkdir(parents=True, exist_ok=True)
    data = slicerio.create_segmentation(geometry.size, geometry.affine_lps())
    for name, mask in named:
        slicerio.add_segment(data, mask.transpose(2, 1, 0), {"name": name})
    slicerio.write_segmentation(str(path), data)
    return path


def write_ct(path: Path, seed: int, geometry: Geometry = GRID) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.random.default_rng(seed).integers(-1000, 400, geometry.shape).astype(np.int16)
    write_image(Volume(array, geometry), path)
    return path


def reference(masks: dict[str, np.ndarray], values: dict[str, int], order=None) -> np.ndarray:
    """The label the table should give: masks painted in ``order`` (later wins) with ``values``."""
    out = np.zeros(SHAPE, np.uint8)
    for name in order or masks:
        out[masks[name]] = values[name.lower()]
    return out


def labels_by_case(dataset: Path, key_file: Path) -> dict[str, np.ndarray]:
    """Source image name -> the exported label array (through the key file)."""
    rows = list(csv.DictReader(key_file.open()))
    return {
        Path(row["source"]).name.split(".")[0]: read_image(dataset / "labelsTr" / f"{row['case']}.nii.gz").array
        for row in rows
    }


def nnunet_verify(folder: Path, tmp: Path) -> None:
    pytest.importorskip("nnunetv2")
    from test_export_nnunet import verify

    checked = verify(folder, tmp)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "verify_dataset_integrity Done" in checked.stdout


def every_text(folder: Path) -> str:
    import gzip

    texts = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        texts.append(path.name + (gzip.decompress(data) if path.name.endswith(".gz") else data).decode("latin-1"))
    return "\n".join(texts)


@pytest.fixture
def beside(tmp_path):
    """Three CT images with their segmentations beside them, by each of the three names; other
    segment orders per file, and the second segmentation cropped to a sub-box of its image."""
    src = tmp_path / "images"
    write_ct(src / f"{NAME}_a.nii.gz", 1)
    write_ct(src / f"{NAME}_b.nrrd", 2)
    write_ct(src / f"{NAME}_c.mha", 3)
    write_seg(src / f"{NAME}_a.seg.nrrd", [("Liver", LIVER), ("Spleen", SPLEEN)])
    write_seg(src / f"{NAME}_b_seg.seg.nrrd", [("spleen", SPLEEN), ("LIVER", LIVER)], crop=((0, 0, 1), (7, 12, 16)))
    write_seg(src / f"{NAME}_c_label.seg.nrrd", [("Kidney", KIDNEY), ("spleen", SPLEEN), ("liver", LIVER)])
    return src


# --- which files are labels, by name ---------------------------------------------------------------


def test_a_seg_nrrd_is_a_label_beside_its_image_never_an_image(beside):
    found = read_image_folder(beside, channels=["CT"])
    assert sorted(c.key[0] for c in found.cases) == [f"{NAME}_a.nii.gz", f"{NAME}_b.nrrd", f"{NAME}_c.mha"]
    assert found.excluded == []
    assert all(isinstance(c.label, ObjectLabel) for c in found.cases)
    # every segment name found, alphabetically ignoring case; the first spelling (case order) kept
    assert dict(found.label_table.table.labels) == {"background": 0, "Kidney": 1, "Liver": 2, "Spleen": 3}
    case = pickle.loads(pickle.dumps(found.cases[1]))  # a worker process gets it pickled
    image = case.images["CT"]()
    label = case.label(image)  # the cropped segmentation, placed at its offset on the image grid
    assert label.geometry == image.geometry
    np.testing.assert_array_equal(label.array, reference({"spleen": SPLEEN, "liver": LIVER}, {"liver": 2, "spleen": 3}))


def test_a_labels_folder_names_segmentations_by_stem(tmp_path):
    images, labels = tmp_path / "images", tmp_path / "labels"
    write_ct(images / "ct_1.nii.gz", 1)
    write_ct(images / "ct_2.nii.gz", 2)
    write_seg(images / "stray.seg.nrrd", [("Liver", LIVER)])  # not an image, not a label here
    write_seg(labels / "ct_1.seg.nrrd", [("Liver", LIVER)])
    write_seg(labels / "ct_9.seg.nrrd", [("Liver", LIVER)])  # matches no image
    found = read_image_folder(images, labels=labels, channels=["CT"])
    cases = {c.key[0]: c for c in found.cases}
    assert set(cases) == {"ct_1.nii.gz", "ct_2.nii.gz"}
    assert isinstance(cases["ct_1.nii.gz"].label, ObjectLabel) and cases["ct_2.nii.gz"].label is None
    assert [(e.what, e.reason.split(";")[0]) for e in found.excluded] == [
        ("segmentation file 1", "a segmentation (.seg.nrrd) is a label, never an image"),
        ("label file 2", "matches no image (labels match images by file name without the ending)"),
    ]


def test_two_segmentations_for_one_case_are_left_out(tmp_path):
    write_ct(tmp_path / "a.nii.gz", 1)
    write_ct(tmp_path / "b.nii.gz", 2)
    write_seg(tmp_path / "a.seg.nrrd", [("Liver", LIVER)])
    write_seg(tmp_path / "a_seg.seg.nrrd", [("Liver", LIVER)])
    write_seg(tmp_path / "b_label.seg.nrrd", [("Liver", LIVER)])
    found = read_image_folder(tmp_path, channels=["CT"])
    assert [c.key[0] for c in found.cases] == ["b.nii.gz"]
    assert [(e.what, e.reason) for e in found.excluded] == [
        ("image file 1", "2 label files match it (label files 1, 2)")
    ]


def test_a_folder_of_segmentations_only_is_not_an_image_folder(tmp_path):
    write_seg(tmp_path / "only.seg.nrrd", [("Liver", LIVER)])
    assert source_kind(tmp_path) == "dicom"
    write_ct(tmp_path / "only.nii.gz", 1)
    assert source_kind(tmp_path) == "image_folder"


@pytest.mark.parametrize("plain_label", ["b_seg.nii.gz", "b_label.nrrd"])
def test_labels_mixing_segmentations_and_label_images_are_refused(tmp_path, plain_label):
    write_ct(tmp_path / "a.nii.gz", 1)
    write_ct(tmp_path / "b.nii.gz", 2)
    write_seg(tmp_path / "a.seg.nrrd", [("Liver", LIVER)])
    write_image(Volume(LIVER.astype(np.uint8), GRID), tmp_path / plain_label)
    with pytest.raises(ExportError, match=r"mix 1 Slicer segmentations \(.seg.nrrd\) and 1 label images") as caught:
        read_image_folder(tmp_path, channels=["CT"])
    assert "every case a .seg.nrrd" in caught.value.hint and "a.seg" not in str(caught.value)
    with pytest.raises(ExportError, match="mix"):
        export_dataset(tmp_path, tmp_path / "out", qc=False)


def test_an_unreadable_segmentation_leaves_its_case_out_with_the_reason(tmp_path):
    write_ct(tmp_path / f"{NAME}.nii.gz", 1)
    write_ct(tmp_path / "b.nii.gz", 2)
    (tmp_path / f"{NAME}.seg.nrrd").write_text("not a segmentation")
    write_seg(tmp_path / "b.seg.nrrd", [("Liver", LIVER)])
    found = read_image_folder(tmp_path, channels=["CT"])
    assert [c.key[0] for c in found.cases] == ["b.nii.gz"]
    (excluded,) = found.excluded
    assert excluded.what == "label file 1" and excluded.reason.startswith("not a readable Slicer segmentation")
    assert NAME not in excluded.reason


def test_the_fingerprint_holds_the_segmentation_and_a_rerun_notices_an_edit(tmp_path):
    src = tmp_path / "images"
    write_ct(src / "a.nii.gz", 1)
    write_ct(src / "b.nii.gz", 2)
    seg = write_seg(src / "a.seg.nrrd", [("Liver", LIVER)])
    write_seg(src / "b.seg.nrrd", [("Liver", LIVER)])
    before = {c.key: c.fingerprint for c in read_image_folder(src, channels=["CT"]).cases}
    export_dataset(src, tmp_path / "out", qc=False, folds=2)
    write_seg(seg, [("Liver", LIVER & ~TUMOUR)])
    os.utime(seg, ns=(os.stat(seg).st_atime_ns, os.stat(seg).st_mtime_ns + 10**9))  # an edit a second later
    after = {c.key: c.fingerprint for c in read_image_folder(src, channels=["CT"]).cases}
    assert after[("a.nii.gz",)] != before[("a.nii.gz",)] and after[("b.nii.gz",)] == before[("b.nii.gz",)]
    with pytest.raises(MedPrepError, match="(?i)overwrite"):
        export_dataset(src, tmp_path / "out", qc=False, folds=2)
    export_dataset(src, tmp_path / "out", qc=False, folds=2, overwrite=True)


# --- the export, end to end -------------------------------------------------------------------------


def test_an_image_folder_with_segmentations_exports_an_nnunet_dataset_by_name(beside, tmp_path):
    key = tmp_path / "key.csv"
    report = export_dataset(beside, tmp_path / "raw", fmt="nnunet", folds=2, key_file=key)
    assert report.exit_code == 0 and len(report.exported) == 3 and report.excluded == []
    folder = tmp_path / "raw" / "Dataset500_MedPrep"
    dataset = json.loads((folder / "dataset.json").read_text())
    assert dataset["labels"] == {"background": 0, "Kidney": 1, "Liver": 2, "Spleen": 3}
    assert dataset["numTraining"] == 3
    values = {"kidney": 1, "liver": 2, "spleen": 3}
    expected = {
        f"{NAME}_a": reference({"liver": LIVER, "spleen": SPLEEN}, values),
        f"{NAME}_b": reference({"liver": LIVER, "spleen": SPLEEN}, values),
        f"{NAME}_c": reference({"kidney": KIDNEY, "liver": LIVER, "spleen": SPLEEN}, values),
    }
    got = labels_by_case(folder, key)
    assert set(got) == set(expected)
    for name, label in got.items():
        np.testing.assert_array_equal(label, expected[name], err_msg=name)
    record = json.loads((folder / "medprep.json").read_text())
    assert record["labels"] == dataset["labels"]
    text = every_text(folder)
    assert NAME not in text and str(beside) not in text and ".seg.nrrd" not in text
    nnunet_verify(folder, tmp_path)


@pytest.mark.parametrize("overlap", ["priority", "regions"])
def test_a_label_map_values_overlapping_layers_from_a_labels_folder(tmp_path, overlap):
    images, labels = tmp_path / "images", tmp_path / "labels"
    for n in (1, 2, 3):
        write_ct(images / f"ct_{n}.nii.gz", n)
    # the tumour overlaps the liver: a second layer; other names, orders and a sub-box per file
    write_seg(labels / "ct_1.seg.nrrd", [("Liver", LIVER), ("Tumour", TUMOUR), ("Spleen", SPLEEN)])
    write_seg(labels / "ct_2.seg.nrrd", [("GTV_1", TUMOUR), ("liver", LIVER)], crop=((1, 2, 2), (6, 12, 12)))
    write_seg(labels / "ct_3.seg.nrrd", [("spleen", SPLEEN), ("Body", np.ones(SHAPE, bool)), ("LIVER", LIVER),
                                         ("tumor", TUMOUR)])  # fmt: skip
    label_map = {
        "labels": {"background": 0, "liver": 1, "tumour": 2, "spleen": 3},
        "match": {"tumour": ["(?i)^(tumou?r|gtv)"], "background": ["(?i)^body$"]},
        "unmatched": "reject",
        "overlap": overlap,
        **({"priority": ["liver", "tumour"]} if overlap == "priority" else {"within": {"tumour": "liver"}}),
    }
    map_file = tmp_path / "label_map.json"
    map_file.write_text(json.dumps(label_map))
    key = tmp_path / "key.csv"
    report = export_dataset(images, tmp_path / "raw", labels_dir=labels, label_map=map_file, folds=2, key_file=key,
                            qc=False)  # fmt: skip
    assert report.exit_code == 0 and len(report.exported) == 3, report.quarantined
    folder = tmp_path / "raw" / "Dataset500_MedPrep"
    values = label_map["labels"]
    masks = {"liver": LIVER, "tumour": TUMOUR, "spleen": SPLEEN}
    got = labels_by_case(folder, key)
    np.testing.assert_array_equal(got["ct_1"], reference(masks, values, ["spleen", "liver", "tumour"]))
    np.testing.assert_array_equal(got["ct_2"], reference({"liver": LIVER, "tumour": TUMOUR}, values))
    np.testing.assert_array_equal(got["ct_3"], reference(masks, values, ["spleen", "liver", "tumour"]))
    dataset = json.loads((folder / "dataset.json").read_text())
    if overlap == "regions":
        assert dataset["labels"] == {"background": 0, "liver": [1, 2], "tumour": 2, "spleen": 3}
    else:
        assert dataset["labels"] == values
    nnunet_verify(folder, tmp_path)


def test_overlapping_segments_without_a_label_map_are_quarantined_with_the_reason(tmp_path):
    write_ct(tmp_path / "a.nii.gz", 1)
    write_ct(tmp_path / "b.nii.gz", 2)
    write_seg(tmp_path / "a.seg.nrrd", [("Liver", LIVER), ("Tumour", TUMOUR)])
    write_seg(tmp_path / "b.seg.nrrd", [("Liver", LIVER)])
    report = export_dataset(tmp_path, tmp_path / "out", qc=False, folds=2)
    assert report.exit_code == 4 and len(report.exported) == 1
    (reason,) = report.quarantined.values()
    assert "share 18 voxels" in reason


def test_a_segmentation_on_another_grid_follows_the_label_grid_policy(tmp_path):
    write_ct(tmp_path / "a.nii.gz", 1)
    write_ct(tmp_path / "b.nii.gz", 2)
    write_seg(tmp_path / "a.seg.nrrd", [("Liver", LIVER)])
    coarse = GRID.replace(spacing=(1.6, 1.8, 2.5), size=(8, 7, 8))
    write_seg(tmp_path / "b.seg.nrrd", [("Liver", np.ones(coarse.shape, bool))], geometry=coarse)
    report = export_dataset(tmp_path, tmp_path / "reject", qc=False, folds=2)
    assert report.exit_code == 4 and "not on its image's grid" in next(iter(report.quarantined.values()))
    report = export_dataset(tmp_path, tmp_path / "resample", qc=False, folds=2, grid_policy="resample")
    assert report.exit_code == 0 and len(report.exported) == 2


def test_the_cli_exports_an_image_folder_of_segmentations(beside, tmp_path):
    map_file = tmp_path / "label_map.json"
    map_file.write_text(json.dumps({"labels": {"liver": 1, "spleen": 2, "kidney": 3}}))
    result = run_medprep("export", beside, tmp_path / "raw", "--label-map", map_file, "--channel-name", "CT",
                         "--folds", "2", "--no-qc")  # fmt: skip
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "raw" / "Dataset500_MedPrep"
    dataset = json.loads((folder / "dataset.json").read_text())
    assert dataset["labels"] == {"background": 0, "liver": 1, "spleen": 2, "kidney": 3}
    assert dataset["channel_names"] == {"0": "CT"}
    record = json.loads((folder / "medprep.json").read_text())
    assert "<LABEL_MAP>" in record["command"] and str(beside) not in record["command"]
    assert NAME not in result.stdout + result.stderr and NAME not in every_text(folder)
    for label in (folder / "labelsTr").iterdir():
        assert set(np.unique(read_image(label).array)) <= {0, 1, 2, 3}


# --- a cohort table's label column ---------------------------------------------------------------


def test_a_cohort_table_label_column_names_segmentations(tmp_path):
    for n, names in ((1, [("Liver", LIVER), ("Spleen", SPLEEN)]), (2, [("spleen", SPLEEN), ("liver", LIVER)])):
        write_ct(tmp_path / "data" / f"ct_{n}.nii.gz", n)
        write_seg(tmp_path / "data" / f"seg_{n}.seg.nrrd", names)
    table = tmp_path / "cohort.csv"
    table.write_text(
        "image,label,patient\ndata/ct_1.nii.gz,data/seg_1.seg.nrrd,p1\ndata/ct_2.nii.gz,data/seg_2.seg.nrrd,p2\n"
    )
    key = tmp_path / "key.csv"
    report = export_dataset(table, tmp_path / "raw", folds=2, key_file=key, qc=False)
    assert report.exit_code == 0 and len(report.exported) == 2
    folder = tmp_path / "raw" / "Dataset500_MedPrep"
    assert json.loads((folder / "dataset.json").read_text())["labels"] == {"background": 0, "Liver": 1, "Spleen": 2}
    for label in labels_by_case(folder, key).values():
        np.testing.assert_array_equal(label, reference({"liver": LIVER, "spleen": SPLEEN}, {"liver": 1, "spleen": 2}))
    write_image(Volume(LIVER.astype(np.uint8), GRID), tmp_path / "data" / "plain.nii.gz")
    table.write_text("image,label\ndata/ct_1.nii.gz,data/seg_1.seg.nrrd\ndata/ct_2.nii.gz,data/plain.nii.gz\n")
    with pytest.raises(ExportError, match="labels of the 'label' column mix"):
        export_dataset(table, tmp_path / "mixed", qc=False)


def test_stratify_by_labels_reads_the_segmentations_on_their_images(tmp_path):
    for n in range(4):
        write_ct(tmp_path / f"ct_{n}.nii.gz", n)
        named = [("Liver", LIVER)] + ([("Kidney", KIDNEY)] if n % 2 else [])
        write_seg(tmp_path / f"ct_{n}.seg.nrrd", named)
    report = export_dataset(tmp_path, tmp_path / "raw", folds=2, stratify="labels", qc=False)
    assert report.exit_code == 0 and len(report.exported) == 4
    record = json.loads((report.dataset_folder / "medprep.json").read_text())
    kidney = {c["case"] for c in record["cases"] if 1 in c["facts"]["label"]["present"]}  # Kidney = 1
    assert len(kidney) == 2
    assert [len(set(fold) & kidney) for fold in record["splits"]["folds"]] == [1, 1]


def test_a_label_maps_remap_is_not_applied_to_segmentation_values(tmp_path):
    """One label map serves label files and segmentations; its remap is of label-file values
    and must not move a value the table gave a segment by name."""
    for n in (1, 2):
        write_ct(tmp_path / f"ct_{n}.nii.gz", n)
        write_seg(tmp_path / f"ct_{n}.seg.nrrd", [("Liver", LIVER), ("Spleen", SPLEEN)])
    label_map = {"labels": {"liver": 1, "spleen": 2}, "remap": {"2": 1, "7": 2}}
    key = tmp_path / "key.csv"
    report = export_dataset(tmp_path, tmp_path / "raw", label_map=label_map, folds=2, key_file=key, qc=False)
    assert report.exit_code == 0 and any("remap is for label files" in w for w in report.warnings)
    for label in labels_by_case(report.dataset_folder, key).values():
        np.testing.assert_array_equal(label, reference({"liver": LIVER, "spleen": SPLEEN}, {"liver": 1, "spleen": 2}))
