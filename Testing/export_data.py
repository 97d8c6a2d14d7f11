"""Small synthetic export sources for the export tests: image folders, cohort tables, DICOM studies.

Volumes are tiny (a few thousand voxels) so that whole exports run in a second; each holds a
bright box whose label is known, at a position that depends on the case, so that a mixed-up case
would show.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import os
import zipfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk

SPACING = (0.8, 0.8, 2.5)


def case_arrays(n: int, shape=(12, 20, 24), *, two_labels: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(image int16 HU, label uint8) of synthetic case ``n``: air around a soft-tissue block, a
    box of label 1 (and a small box of label 2 in odd cases) whose place depends on ``n``."""
    z, y, x = shape
    image = np.full(shape, -1000, np.int16)
    image[1 : z - 1, 2 : y - 2, 2 : x - 2] = 40 + n
    label = np.zeros(shape, np.uint8)
    a = 2 + n % 4
    label[3:8, a : a + 6, 5:12] = 1
    image[label == 1] = 200 + 10 * n
    if two_labels and n % 2:
        label[4:6, a + 1 : a + 3, 13:16] = 2
        image[label == 2] = 600
    return image, label


def write_volume(array: np.ndarray, path: str | os.PathLike, spacing=SPACING, origin=(0.0, 0.0, 0.0)) -> Path:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin(origin)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path))
    return path


def image_folder(folder: str | os.PathLike, n_cases: int = 6, *, shape=(12, 20, 24), names=None) -> Path:
    """``<name>.nii.gz`` + ``<name>_seg.nii.gz`` per case (rule 2 of the image-folder source)."""
    folder = Path(folder)
    for n in range(n_cases):
        name = names[n] if names else f"ct{n:02d}"
        image, label = case_arrays(n, shape)
        write_volume(image, folder / f"{name}.nii.gz")
        write_volume(label, folder / f"{name}_seg.nii.gz")
    return folder


def cohort_table(folder: str | os.PathLike, rows: list[dict], name: str = "cohort.csv") -> Path:
    """A CSV cohort table with the keys of ``rows`` as columns (first row's order)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    columns = list(rows[0])
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


def tree_digest(folder: str | os.PathLike) -> dict[str, str]:
    """Relative path -> SHA-256 of every file below ``folder`` (hidden ones included)."""
    folder = Path(folder)
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = Path(root) / name
            out[path.relative_to(folder).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return dict(sorted(out.items()))


def leftovers(folder: str | os.PathLike) -> list[str]:
    """Staging folders, work folders and other MedPrep temporary names below ``folder``."""
    found = []
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            if name.startswith(".medprep"):
                found.append(os.path.relpath(os.path.join(root, name), folder))
    return found


def all_output_text(folder: str | os.PathLike) -> bytes:
    """Every byte written below ``folder``, with gzip files and zip (npz) members decompressed,
    and the file and folder names: what a planted identifier must not appear in."""
    chunks = []
    for root, dirs, files in os.walk(folder):
        chunks.extend(n.encode() for n in dirs + files)
        for name in files:
            path = Path(root) / name
            data = path.read_bytes()
            chunks.append(data)
            if data[:2] == b"\x1f\x8b":
                chunks.append(gzip.decompress(data))
            if data[:4] == b"PK\x03\x04":
                with zipfile.ZipFile(path) as zf:
                    for member in zf.namelist():
                        chunks.append(member.encode())
                        chunks.append(zf.read(member))
    return b"\n".join(chunks)
