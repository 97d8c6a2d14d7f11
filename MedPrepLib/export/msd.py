"""The Medical Segmentation Decathlon layout, as MONAI and nnU-Net's MSD converter read it.

``TaskNN_Name/`` (NN two digits; Name without ``_``, since nnU-Net's ``convert_MSD_dataset``
splits the folder name at its one underscore)::

    imagesTr/<case>.nii.gz   all channels of a case in one file: 3D for one channel, 4D (x, y, z, c) for several
    labelsTr/<case>.nii.gz
    imagesTs/<case>.nii.gz   test cases
    labelsTs/<case>.nii.gz   labels of labelled test cases (outside the Decathlon index)
    dataset.json             written last

``dataset.json`` is the Decathlon's: ``name``, ``description``, ``tensorImageSize`` (``"3D"`` or
``"4D"``), ``modality`` ``{"0": "CT", ...}``, ``labels`` ``{"0": "background", "1": ...}``,
``numTraining``, ``numTest``, ``training`` ``[{"image": "./imagesTr/x.nii.gz", "label": ...,
"fold": k}]`` and ``test`` ``["./imagesTs/y.nii.gz", ...]``. MONAI's
``load_decathlon_datalist`` joins the paths to the file's folder; the ``fold`` key is Auto3DSeg's
(``datafold_read`` validates on fold k and trains on the others; ``AutoRunner`` wants folds 0 ..
K-1, each present).

This module only names files, stacks channels for the 4D file, and writes the index; the runner
writes the volumes through :func:`MedPrepLib.imageio.write_image`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..atomic import make_folder
from ..errors import ExportError
from ..jsonfiles import write_json
from ..volume import Volume
from .cases import CaseFiles, check_case_id, check_channel_names, check_label_table
from .index import check_index, check_layout

FILE_ENDING = ".nii.gz"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")


def task_folder_name(task_id: int, name: str) -> str:
    """``Task<NN>_<name>``.

    >>> task_folder_name(3, "Liver")
    'Task03_Liver'
    """
    if isinstance(task_id, bool) or not isinstance(task_id, int) or not 1 <= task_id <= 99:
        raise ExportError(f"Decathlon task id {task_id!r} is not a number from 1 to 99 (--dataset-id)")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ExportError(
            f"Decathlon task name {name!r} is not usable",
            hint="use letters, digits and '-' (no '_': tools split TaskNN_Name at it) (--dataset-name)",
        )
    return f"Task{task_id:02d}_{name}"


def case_files(case_id: str, split: str, *, labelled: bool, fold: int | None = None) -> CaseFiles:
    """Where a case's files go, relative to the dataset folder (one image file for all channels).

    >>> case_files("case_0001", "train", labelled=True, fold=2).files
    ('imagesTr/case_0001.nii.gz', 'labelsTr/case_0001.nii.gz')
    """
    check_case_id(case_id)
    return split_folder_files(case_id, split, [case_id + FILE_ENDING], labelled=labelled, fold=fold)


def split_folder_files(
    case_id: str, split: str, image_names: Sequence[str], *, labelled: bool, fold: int | None, file_ending: str = FILE_ENDING
) -> CaseFiles:
    """A case's files in the Decathlon's folders, which nnU-Net's layout keeps: the image files
    ``image_names`` in ``imagesTr`` (``split`` "train") or ``imagesTs``, the label
    ``<case_id><file_ending>`` in ``labelsTr`` or ``labelsTs`` when ``labelled``."""
    images = "imagesTr" if split == "train" else "imagesTs"
    labels = "labelsTr" if split == "train" else "labelsTs"
    return CaseFiles(
        case_id=case_id,
        split=split,
        fold=fold,
        images=tuple(f"{images}/{name}" for name in image_names),
        label=f"{labels}/{case_id}{file_ending}" if labelled else None,
        labelled=labelled,
    )


def image_volume(channels: Sequence[Volume]) -> Volume:
    """The volume to write for a case: the one channel itself, or the channels stacked last,
    (z, y, x, c), which :func:`~MedPrepLib.imageio.write_image` writes as a 4D NIfTI.

    All channels must share one grid (the runner resamples them onto the first channel's). The
    stack is one copy, laid out (c, z, y, x) in memory, the order the NIfTI file holds, so the
    writer needs no second copy.
    """
    channels = list(channels)
    if not channels:
        raise ExportError("a case needs at least one channel")
    if len(channels) == 1:
        return channels[0]
    first = channels[0]
    for n, other in enumerate(channels[1:], start=1):
        if other.array.ndim != 3 or not other.geometry.isclose(first.geometry) or other.dtype != first.dtype:
            raise ExportError(
                f"channel {n} does not share channel 0's grid and voxel type ({other!r} vs {first!r})",
                hint="resample every channel onto the first one's grid with one voxel type before writing",
            )
    if first.array.ndim != 3:
        raise ExportError("channels to stack must be 3D volumes")
    stacked = np.stack([c.array for c in channels], axis=0)  # (c, z, y, x): the file's order
    return Volume(np.moveaxis(stacked, 0, -1), first.geometry, metadata={"channel_axis": "channel"})


def dataset_json(
    cases: Sequence[CaseFiles],
    *,
    labels: Mapping[str, int],
    channels: Sequence[str],
    name: str,
    description: str = "",
) -> dict:
    """The Decathlon ``dataset.json`` content (see the module doc); cases sorted by id."""
    table = check_label_table(labels)
    channels = check_channel_names(channels)
    cases = sorted(cases, key=lambda c: c.case_id)
    training = []
    for case in (c for c in cases if c.split == "train"):
        item = {"image": f"./{case.images[0]}", "label": f"./{case.label}"}
        if case.fold is not None:
            item["fold"] = case.fold
        training.append(item)
    test = [f"./{c.images[0]}" for c in cases if c.split == "test"]
    return {
        "name": name,
        "description": description,
        "tensorImageSize": "4D" if len(channels) > 1 else "3D",
        "modality": {str(n): channel for n, channel in enumerate(channels)},
        "labels": {str(value): label for label, value in table.items()},
        "numTraining": len(training),
        "numTest": len(test),
        "training": training,
        "test": test,
    }


def write_index(
    dataset_folder: str | os.PathLike,
    cases: Sequence[CaseFiles],
    *,
    labels: Mapping[str, int],
    channels: Sequence[str],
    name: str,
    description: str = "",
    overwrite: bool = False,
) -> list[Path]:
    """Write ``dataset.json`` for the written ``cases`` (as :func:`case_files` named them).

    Refuses (ExportError) a missing listed file, a file in ``imagesTr``/``labelsTr``/``imagesTs``
    of no listed case, a case laid out differently and an empty fold.
    """
    folder = Path(dataset_folder)
    content = dataset_json(cases, labels=labels, channels=channels, name=name, description=description)
    check_layout(
        folder,
        cases,
        lambda c: case_files(c.case_id, c.split, labelled=c.labelled, fold=c.fold),
        what="the Decathlon format",
        helper="msd.case_files",
    )
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        make_folder(folder / sub)  # nnU-Net's MSD converter asserts all three exist
    check_index(folder, cases, scanned=("imagesTr", "labelsTr", "imagesTs", "labelsTs"))
    return [write_json(content, folder / "dataset.json", overwrite=overwrite)]
