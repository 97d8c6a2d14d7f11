"""The four export formats behind one interface: where a dataset folder is, where a case's files
go, how a case is written and how the index is written.

=========  ==================================  =============================================
format     dataset folder                      files (see the format's module)
=========  ==================================  =============================================
nnunet     ``OUT/DatasetNNN_Name`` (:mod:`.nnunet`)  one ``.nii.gz`` per channel + label
msd        ``OUT/TaskNN_Name`` (:mod:`.msd`)          one (3D or 4D) ``.nii.gz`` + label
nifti      ``OUT`` itself (:mod:`.plain`)             one ``.nii.gz`` per channel + label
npz        ``OUT`` itself (:mod:`.plain`)             one ``.npz`` per case
=========  ==================================  =============================================

The runner asks :class:`Format` for every format-specific decision, so the export loop is one.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..atomic import make_folder
from ..errors import ExportError
from ..imageio import write_image
from ..volume import Volume
from . import msd, nnunet, plain
from .cases import CaseFiles
from .state import file_sha256

FORMATS = ("nnunet", "msd", "nifti", "npz")
"""The ``--format`` choices."""

DEFAULT_NAME = "MedPrep"
"""The dataset name when none is given (``--dataset-name``)."""

MSD_FIRST_ID = 11
"""The lowest Decathlon task id offered by default: Task01-Task10 are the Decathlon's own."""
_TASK = re.compile(r"^Task(\d{2})_")


@dataclass(frozen=True)
class Format:
    """One export format with its options: the dataset folder and everything laid out in it."""

    name: str
    folder: Path
    """The dataset folder (made by the runner)."""
    dataset_name: str
    channels: tuple[str, ...]

    @property
    def label_values_consecutive(self) -> bool:
        """Whether the label values must be 0, 1, 2 ... (nnU-Net's rule)."""
        return self.name == "nnunet"

    def case_files(self, case_id: str, split: str, *, labelled: bool, fold: int | None = None) -> CaseFiles:
        """Where one case's files go, relative to :attr:`folder`."""
        n = len(self.channels)
        if self.name == "nnunet":
            return nnunet.case_files(case_id, split, channels=n, labelled=labelled, fold=fold)
        if self.name == "msd":
            return msd.case_files(case_id, split, labelled=labelled, fold=fold)
        return plain.case_files(case_id, split, fmt=self.name, channels=n, labelled=labelled, fold=fold)

    def scanned_folders(self) -> tuple[str, ...]:
        """The sub-folders that hold case files (and nothing else)."""
        if self.name in ("nnunet", "msd"):
            return ("imagesTr", "labelsTr", "imagesTs", "labelsTs")
        return ("images", "labels") if self.name == "nifti" else ("cases",)

    def write_case(self, files: CaseFiles, channels: Sequence[Volume], label: Volume | None) -> dict[str, str]:
        """Write one case's volumes at ``files`` (under :attr:`folder`), each staged and renamed,
        replacing what an interrupted run left. Returns relative path -> SHA-256 of every file
        written (computed as the bytes are written)."""
        folder = self.folder
        for path in files.files:
            make_folder((folder / path).parent)
        if self.name == "npz":
            plain.write_npz(folder / files.images[0], channels, label, overwrite=True)
            return {files.images[0]: file_sha256(folder / files.images[0])}
        volumes = [msd.image_volume(channels)] if self.name == "msd" else list(channels)
        pairs = list(zip(volumes, files.images, strict=True))
        if label is not None:
            pairs.append((label, files.label))
        digests = {}
        for volume, path in pairs:
            hasher = hashlib.sha256()
            write_image(volume, folder / path, overwrite=True, hasher=hasher)
            digests[path] = hasher.hexdigest()
        return digests

    def write_index(self, cases: Sequence[CaseFiles], labels: Mapping[str, int], *, description: str = "",
                    regions: Mapping | None = None) -> list[Path]:  # fmt: skip
        """Write the format's index (``dataset.json``, ``splits_final.json``, ``manifest.csv``...);
        ``regions``: nnU-Net region-based labels (:func:`.nnunet.dataset_json`)."""
        if self.name == "nnunet":
            return nnunet.write_index(
                self.folder, cases, labels=labels, channels=self.channels, name=self.dataset_name,
                description=description or None, regions=regions, overwrite=True,
            )  # fmt: skip
        if self.name == "msd":
            return msd.write_index(
                self.folder, cases, labels=labels, channels=self.channels, name=self.dataset_name,
                description=description, overwrite=True,
            )  # fmt: skip
        return plain.write_index(self.folder, cases, fmt=self.name, labels=labels, channels=self.channels, overwrite=True)


def _task_ids(out: Path) -> dict[int, set[str]]:
    used: dict[int, set[str]] = {}
    if out.is_dir():
        for entry in os.scandir(out):
            if entry.is_dir() and (m := _TASK.match(entry.name)):
                used.setdefault(int(m[1]), set()).add(entry.name)
    return used


def _default_id(used: dict[int, set[str]], folder_name, first: int, last: int, out: Path) -> int:
    """The id of the dataset of this name already in ``out`` (an export to resume or refuse),
    else the lowest free id from ``first``."""
    same = sorted(i for i, names in used.items() if folder_name(i) in names)
    if same:
        return same[0]
    for dataset_id in range(first, last + 1):
        if dataset_id not in used:
            return dataset_id
    raise ExportError(f"every dataset id from {first} to {last} is used in the output folder", path=out, hint="give one (--dataset-id)")


def dataset_format(
    name: str,
    out: str | os.PathLike,
    channels: Sequence[str],
    *,
    dataset_id: int | None = None,
    dataset_name: str | None = None,
    allow_reserved_id: bool = False,
) -> Format:
    """The :class:`Format` for ``--format name`` writing into ``out``.

    For ``nnunet`` ``out`` is ``$nnUNet_raw`` and the dataset folder ``DatasetNNN_Name`` is made in
    it (``dataset_id`` defaults to the id of a dataset of the same name already there — the
    export to resume — else the lowest free id >= 500; an id another dataset there uses is
    refused); for ``msd`` ``out`` holds ``TaskNN_Name`` (the same rule from id 11); for
    ``nifti``/``npz`` ``out`` is the dataset folder.
    """
    if name not in FORMATS:
        raise ExportError(f"unknown format {name!r}", hint="use one of: " + ", ".join(FORMATS))
    out = Path(out)
    dataset_name = DEFAULT_NAME if dataset_name is None else dataset_name
    channels = tuple(channels)
    if name == "nnunet":
        if dataset_id is None:
            dataset_id = _default_id(
                nnunet.used_dataset_ids(out), lambda i: f"Dataset{i:03d}_{dataset_name}", nnunet.DEFAULT_FIRST_ID, 999, out
            )
        folder = out / nnunet.check_dataset_id(dataset_id, dataset_name, out, allow_reserved=allow_reserved_id)
    elif name == "msd":
        if dataset_id is None:
            dataset_id = _default_id(_task_ids(out), lambda i: f"Task{i:02d}_{dataset_name}", MSD_FIRST_ID, 99, out)
        folder = out / msd.task_folder_name(dataset_id, dataset_name)
        others = sorted(_task_ids(out).get(dataset_id, set()) - {folder.name})
        if others:
            raise ExportError(f"Decathlon task id {dataset_id} is already used by {', '.join(others)}", path=out, hint="choose another id or the same name")
    else:
        if dataset_id is not None:
            raise ExportError(f"--dataset-id applies to nnunet and msd, not {name}")
        folder = out
    return Format(name, folder, dataset_name, channels)
