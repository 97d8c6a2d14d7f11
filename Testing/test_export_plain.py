"""Plain NIfTI and npz datasets read back: files, geometry, manifest, label table, stable bytes.

The NIfTI files are read with nibabel (voxels in (x, y, z) and the RAS affine of our LPS grid);
each ``.npz`` with ``numpy.load`` (every member, no pickle), its geometry rebuilt into the
same :class:`Geometry`, and written twice two seconds apart to the same bytes (zip entries carry
a fixed timestamp, unlike ``numpy.savez_compressed``). ``manifest.csv`` lists every case with
its split, fold and files, in the columns of a cohort table.
"""

from __future__ import annotations

import csv
import json
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from MedPrepLib.errors import ExportError, OutputExistsError
from MedPrepLib.export import plain
from MedPrepLib.export.splits import SplitCase, make_splits
from MedPrepLib.geometry import Geometry
from MedPrepLib.imageio import write_image
from MedPrepLib.volume import Volume

LABELS = {"background": 0, "lesion": 1}
DIRECTION = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


def case_volumes(n: int, channels: int):
    rng = np.random.default_rng(n)
    grid = dict(spacing=(0.5, 0.6, 2.0), origin=(n, -3.0, 7.5), direction=DIRECTION)
    images = [Volume(rng.normal(0, 1, (5, 6, 7)).astype(np.float32), **grid) for _ in range(channels)]
    label = Volume((rng.random((5, 6, 7)) > 0.7).astype(np.uint8), **grid)
    return images, label


def build(folder: Path, fmt: str, channels: list[str]):
    split_cases = [SplitCase(f"c{n:03d}", patient=f"p{n // 2}") for n in range(6)]
    split_cases.append(SplitCase("c100", patient="x", labelled=False))
    splits = make_splits(split_cases, folds=3, seed=0)
    written, volumes = [], {}
    for n, sc in enumerate(split_cases):
        files = plain.case_files(
            sc.case_id, splits.split_of(sc.case_id), fmt=fmt, channels=len(channels), labelled=sc.labelled,
            fold=splits.fold_of(sc.case_id),
        )
        images, label = case_volumes(n, len(channels))
        label = label if sc.labelled else None
        for sub in ("images", "labels", "cases"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        if fmt == "nifti":
            for image, path in zip(images, files.images):
                write_image(image, folder / path)
            if label is not None:
                write_image(label, folder / files.label)
        else:
            plain.write_npz(folder / files.images[0], images, label)
        written.append(files)
        volumes[sc.case_id] = (images, label)
    plain.write_index(folder, written, fmt=fmt, labels=LABELS, channels=channels)
    return written, volumes


def read_manifest(folder: Path) -> list[dict]:
    with (folder / "manifest.csv").open(newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("channels", [["CT"], ["T1", "T2"]], ids=["one", "two"])
def test_nifti_dataset_reads_back(tmp_path, channels):
    nib = pytest.importorskip("nibabel")
    written, volumes = build(tmp_path, "nifti", channels)
    rows = read_manifest(tmp_path)
    image_columns = ["image"] if len(channels) == 1 else [f"image.{c}" for c in channels]
    assert list(rows[0]) == ["case", "split", "fold", *image_columns, "label"]
    assert [r["case"] for r in rows] == sorted(volumes)
    assert json.loads((tmp_path / "labels.json").read_text()) == LABELS
    for row in rows:
        images, label = volumes[row["case"]]
        assert row["split"] == ("test" if label is None else "train") and (row["fold"] == "") == (label is None)
        for column, volume in zip(image_columns, images):
            img = nib.load(tmp_path / row[column])
            assert np.array_equal(np.asarray(img.dataobj), np.transpose(volume.array))
            np.testing.assert_allclose(img.affine, volume.geometry.affine_ras(), atol=1e-5)
        if label is None:
            assert row["label"] == ""
        else:
            assert np.array_equal(np.asarray(nib.load(tmp_path / row["label"]).dataobj), np.transpose(label.array))
    assert sorted(int(r["fold"]) for r in rows if r["fold"]) == [0, 0, 1, 1, 2, 2]


@pytest.mark.parametrize("channels", [["CT"], ["T1", "T2"]], ids=["one", "two"])
def test_npz_dataset_reads_back(tmp_path, channels):
    written, volumes = build(tmp_path, "npz", channels)
    rows = read_manifest(tmp_path)
    assert list(rows[0]) == ["case", "split", "fold", "file", "labelled"]
    for row in rows:
        images, label = volumes[row["case"]]
        with np.load(tmp_path / row["file"], allow_pickle=False) as data:
            assert sorted(data.files) == sorted(["image", "spacing", "origin", "direction"] + (["label"] if label is not None else []))
            expected = images[0].array if len(images) == 1 else np.stack([v.array for v in images], axis=-1)
            assert data["image"].dtype == np.float32 and np.array_equal(data["image"], expected)
            geometry = Geometry(size=data["image"].shape[:3][::-1], spacing=data["spacing"], origin=data["origin"], direction=data["direction"])
            assert geometry == images[0].geometry
            # the documented formula: the point of array[k, j, i]
            k, j, i = 4, 2, 3
            point = data["origin"] + data["direction"] @ (data["spacing"] * np.array([i, j, k]))
            np.testing.assert_allclose(point, images[0].geometry.index_to_physical((i, j, k)))
            if label is not None:
                assert data["label"].dtype == np.uint8 and np.array_equal(data["label"], label.array)
        assert row["labelled"] == ("1" if label is not None else "0")


def test_npz_bytes_do_not_depend_on_the_clock(tmp_path):
    images, label = case_volumes(1, 2)
    first = plain.write_npz(tmp_path / "a.npz", images, label)
    time.sleep(2.1)  # zip timestamps have a two-second resolution
    second = plain.write_npz(tmp_path / "b.npz", images, label)
    assert first.read_bytes() == second.read_bytes()
    for info in zipfile.ZipFile(first).infolist():
        assert info.date_time == plain.ZIP_DATE_TIME and info.compress_type == zipfile.ZIP_DEFLATED
    with pytest.raises(OutputExistsError, match="exists"):
        plain.write_npz(tmp_path / "a.npz", images, label)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".medprep-tmp")]


def test_npz_refuses_mismatched_grids(tmp_path):
    images, label = case_volumes(1, 1)
    shifted = Volume(label.array, spacing=label.spacing, origin=(9.0, 9.0, 9.0), direction=DIRECTION)
    with pytest.raises(ExportError, match="label is not on channel 0's grid"):
        plain.write_npz(tmp_path / "a.npz", images, shifted)
    assert not (tmp_path / "a.npz").exists()


def test_index_refusals(tmp_path):
    files = plain.case_files("c1", "train", fmt="nifti", channels=1, labelled=True, fold=0)
    with pytest.raises(ExportError, match="missing"):
        plain.write_index(tmp_path, [files], fmt="nifti", labels=LABELS, channels=["CT"])
    assert not (tmp_path / "manifest.csv").exists()
    build(tmp_path / "d", "npz", ["CT"])
    (tmp_path / "d" / "cases" / "leftover.npz").write_bytes(b"")
    (tmp_path / "d" / "manifest.csv").unlink()
    cases = [plain.case_files(r, "train", fmt="npz", channels=1, labelled=True, fold=0) for r in ("c000",)]
    with pytest.raises(ExportError, match="belong to no exported case"):
        plain.write_index(tmp_path / "d", cases, fmt="npz", labels=LABELS, channels=["CT"])
    with pytest.raises(ExportError, match="format"):
        plain.case_files("c1", "train", fmt="hdf5", channels=1, labelled=True)
