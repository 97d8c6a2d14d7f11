"""Plain datasets for one's own training code: NIfTI files or one ``.npz`` per case, with a manifest.

``nifti``::

    images/<case>.nii.gz            one channel; several: images/<case>_<CCCC>.nii.gz, CCCC = 0000, 0001 ...
    labels/<case>.nii.gz
    labels.json                     the label table, {"background": 0, "liver": 1, ...}
    manifest.csv                    written last

``npz``::

    cases/<case>.npz                members image, label (when labelled), spacing, origin, direction
    labels.json
    manifest.csv                    written last

``manifest.csv`` has one row per case, sorted by case id: ``case``, ``split`` (train/test),
``fold`` (empty for test), then for ``nifti`` ``image`` (one channel) or ``image.<channel>`` per
channel — the columns of a MedPrep cohort table — and ``label``; for ``npz`` ``file`` and
``labelled`` (``1``/``0``). Paths are relative to the dataset folder.

In an ``.npz``, ``image`` is the (z, y, x) array, or (z, y, x, c) for several channels (channels
last, as a MedPrep volume), ``label`` (z, y, x); ``spacing`` (mm) and ``origin`` (mm, LPS) are
(x, y, z) ordered and ``direction`` is the 3x3 matrix whose columns are the LPS directions of the
x, y, z index axes (SimpleITK's meaning): the point of voxel ``array[k, j, i]`` is
``origin + direction @ (spacing * (i, j, k))``. The file is a standard zip that ``numpy.load``
reads, with fixed member timestamps and attributes, so the same case always gives the same bytes
(``numpy.savez_compressed`` stamps the current time).
"""

from __future__ import annotations

import csv
import io
import os
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..atomic import atomic_write_text, check_writable, make_folder, output_error, publish, staging_folder
from ..errors import ExportError
from ..jsonfiles import write_json
from ..volume import Volume
from .cases import CaseFiles, check_case_id, check_channel_names, check_label_table
from .index import check_index, check_layout

FORMATS = ("nifti", "npz")
ZIP_DATE_TIME = (1980, 1, 1, 0, 0, 0)
"""The earliest time a zip entry can hold, for every member: no clock in the bytes."""
NPZ_COMPRESS_LEVEL = 1
_CHUNK_BYTES = 4 << 20


def case_files(case_id: str, split: str, *, fmt: str, channels: int, labelled: bool, fold: int | None = None) -> CaseFiles:
    """Where a case's files go in a ``nifti`` or ``npz`` dataset, relative to its folder.

    >>> case_files("case_0001", "train", fmt="nifti", channels=2, labelled=True, fold=0).files
    ('images/case_0001_0000.nii.gz', 'images/case_0001_0001.nii.gz', 'labels/case_0001.nii.gz')
    >>> case_files("case_0001", "test", fmt="npz", channels=2, labelled=True).files
    ('cases/case_0001.npz',)
    """
    check_case_id(case_id)
    if fmt == "nifti":
        if channels < 1:
            raise ExportError(f"{channels} channels: a case needs at least one")
        names = [f"{case_id}.nii.gz"] if channels == 1 else [f"{case_id}_{c:04d}.nii.gz" for c in range(channels)]
        images = tuple(f"images/{n}" for n in names)
        label = f"labels/{case_id}.nii.gz" if labelled else None
    elif fmt == "npz":
        images, label = (f"cases/{case_id}.npz",), None
    else:
        raise ExportError(f"plain format {fmt!r} is not one of {', '.join(FORMATS)}")
    return CaseFiles(case_id=case_id, split=split, fold=fold, images=images, label=label, labelled=labelled)


# --- the npz file --------------------------------------------------------------------------------


def _member(zf: zipfile.ZipFile, name: str, shape: tuple[int, ...], dtype: np.dtype, chunks) -> None:
    """Write one ``.npy`` member from an iterable of byte chunks (C order), streamed."""
    info = zipfile.ZipInfo(f"{name}.npy", date_time=ZIP_DATE_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.create_system = 3  # as written on Unix, whatever the platform
    info.external_attr = 0o644 << 16
    if hasattr(info, "compress_level"):
        info.compress_level = NPZ_COMPRESS_LEVEL
    else:  # Python < 3.13
        info._compresslevel = NPZ_COMPRESS_LEVEL
    with zf.open(info, "w", force_zip64=True) as f:
        header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False, "shape": shape}
        np.lib.format.write_array_header_1_0(f, header)
        for chunk in chunks:
            f.write(chunk)


def _array_chunks(array: np.ndarray):
    flat = np.ascontiguousarray(array).reshape(-1).view(np.uint8)
    for start in range(0, flat.size, _CHUNK_BYTES):
        yield flat[start : start + _CHUNK_BYTES]


def _interleaved_chunks(channels: Sequence[np.ndarray]):
    """(z, y, x, c) bytes slice by slice, without building the whole stacked array."""
    for z in range(channels[0].shape[0]):
        yield np.stack([c[z] for c in channels], axis=-1).tobytes()


def write_npz(
    path: str | os.PathLike,
    channels: Sequence[Volume],
    label: Volume | None = None,
    *,
    overwrite: bool = False,
) -> Path:
    """Write one case as an ``.npz`` (see the module doc), staged and renamed.

    ``channels`` are the case's image channels on one grid (one: ``image`` is (z, y, x); several:
    (z, y, x, c), interleaved slice by slice); ``label`` must be on the same grid.
    """
    path = Path(path)
    channels = list(channels)
    if not channels:
        raise ExportError("a case needs at least one channel", path=path)
    first = channels[0]
    for n, volume in enumerate([*channels[1:], *([label] if label is not None else [])], start=1):
        what = f"channel {n}" if n < len(channels) else "the label"
        if volume.array.ndim != 3 or not volume.geometry.isclose(first.geometry):
            raise ExportError(f"{what} is not on channel 0's grid ({volume!r} vs {first!r})", path=path)
    if first.array.ndim != 3:
        raise ExportError(f"channel 0 is not a 3D volume ({first!r})", path=path)
    if len({c.dtype for c in channels}) > 1:
        raise ExportError(f"channels have different voxel types {[str(c.dtype) for c in channels]}", path=path)
    check_writable(path, overwrite=overwrite)
    g = first.geometry
    with staging_folder(path.parent) as tmp:
        staged = tmp / path.name
        try:
            with zipfile.ZipFile(staged, "w", compression=zipfile.ZIP_DEFLATED) as zf:
                if len(channels) == 1:
                    _member(zf, "image", first.shape, first.dtype, _array_chunks(first.array))
                else:
                    shape = (*first.shape, len(channels))
                    _member(zf, "image", shape, first.dtype, _interleaved_chunks([c.array for c in channels]))
                if label is not None:
                    _member(zf, "label", label.shape, label.dtype, _array_chunks(label.array))
                for name, value in (("spacing", g.spacing), ("origin", g.origin), ("direction", g.direction)):
                    array = np.asarray(value, dtype=np.float64)
                    _member(zf, name, array.shape, array.dtype, _array_chunks(array))
        except OSError as exc:
            raise output_error(exc, path) from None
        publish([staged], path.parent)
    return path


# --- the index -----------------------------------------------------------------------------------


def manifest_text(cases: Sequence[CaseFiles], *, fmt: str, channels: Sequence[str]) -> str:
    """The ``manifest.csv`` text (see the module doc)."""
    channels = check_channel_names(channels)
    if fmt == "nifti":
        image_columns = ["image"] if len(channels) == 1 else [f"image.{c}" for c in channels]
        header = ["case", "split", "fold", *image_columns, "label"]
    elif fmt == "npz":
        header = ["case", "split", "fold", "file", "labelled"]
    else:
        raise ExportError(f"plain format {fmt!r} is not one of {', '.join(FORMATS)}")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for case in sorted(cases, key=lambda c: c.case_id):
        fold = "" if case.fold is None else str(case.fold)
        if fmt == "nifti":
            writer.writerow([case.case_id, case.split, fold, *case.images, case.label or ""])
        else:
            writer.writerow([case.case_id, case.split, fold, case.images[0], "1" if case.labelled else "0"])
    return buffer.getvalue()


def write_index(
    dataset_folder: str | os.PathLike,
    cases: Sequence[CaseFiles],
    *,
    fmt: str,
    labels: Mapping[str, int],
    channels: Sequence[str],
    overwrite: bool = False,
) -> list[Path]:
    """Write ``labels.json`` and then ``manifest.csv`` for the written ``cases``.

    Refuses (ExportError) a missing listed file, a file in ``images``/``labels``/``cases`` of no
    listed case, a case laid out differently from :func:`case_files` and an empty fold.
    """
    folder = Path(dataset_folder)
    table = check_label_table(labels)
    text = manifest_text(cases, fmt=fmt, channels=channels)
    check_layout(
        folder,
        cases,
        lambda c: case_files(c.case_id, c.split, fmt=fmt, channels=len(channels), labelled=c.labelled, fold=c.fold),
        what=f"the {fmt} format",
        helper="plain.case_files",
    )
    make_folder(folder)
    check_index(folder, cases, scanned=("images", "labels") if fmt == "nifti" else ("cases",))
    return [
        write_json(table, folder / "labels.json", overwrite=overwrite),
        atomic_write_text(folder / "manifest.csv", text, overwrite=overwrite),
    ]
