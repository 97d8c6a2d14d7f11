"""The nnU-Net v2 raw dataset layout, exactly as nnU-Net's own code reads it.

``DatasetNNN_Name/`` (NNN: three digits, ids 1-10 reserved for the Medical Segmentation Decathlon
unless ``allow_reserved``), inside the folder nnU-Net calls ``$nnUNet_raw``::

    imagesTr/<case>_<CCCC>.nii.gz   one file per channel, CCCC = channel index 0000, 0001, ...
    labelsTr/<case>.nii.gz          the label of each training case
    imagesTs/<case>_<CCCC>.nii.gz   the test cases (labelled or not)
    labelsTs/<case>.nii.gz          labels of labelled test cases (for evaluation; nnU-Net ignores it)
    splits_final.json               [{"train": [...], "val": [...]}, ...], one per fold
    dataset.json                    written last

What nnU-Net checks (``verify_dataset_integrity``, ``LabelManager``, the planners), and what is
written for it: ``dataset.json`` has ``channel_names`` with string keys ``"0"``, ``"1"``... (a
channel named ``CT``, in any case, gets nnU-Net's CT normalisation, any other name z-scoring),
``labels`` name -> consecutive integers with ``"background": 0``, ``numTraining`` equal to the
number of case ids in ``imagesTr``, ``file_ending`` ``".nii.gz"``, and ``SimpleITKIO`` as reader
(it checks that image and label grids agree). nnU-Net copies ``splits_final.json`` from the raw
to the preprocessed folder when planning, and trains fold k on ``train`` and validates on ``val``.

This module only names files and writes the index; the runner writes the volumes (through
:func:`MedPrepLib.imageio.write_image`) at the paths :func:`case_files` gives.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

from .. import __version__
from ..atomic import make_folder
from ..errors import ExportError
from ..jsonfiles import write_json
from .cases import CaseFiles, check_case_id, check_channel_names, check_label_table
from .index import check_index, check_layout
from .msd import split_folder_files

FILE_ENDING = ".nii.gz"
RESERVED_IDS = range(1, 11)
"""nnU-Net v2 keeps Dataset001-Dataset010 for the Decathlon tasks."""
DEFAULT_FIRST_ID = 500
"""The lowest id :func:`lowest_free_dataset_id` offers: clear of nnU-Net's published datasets."""
MAX_CHANNELS = 10000

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
_DATASET = re.compile(r"^Dataset(\d{3})_")


def dataset_folder_name(dataset_id: int, name: str, *, allow_reserved: bool = False) -> str:
    """``Dataset<NNN>_<name>``; refuses ids outside 1-999, and 1-10 without ``allow_reserved``.

    >>> dataset_folder_name(501, "Liver")
    'Dataset501_Liver'
    """
    if isinstance(dataset_id, bool) or not isinstance(dataset_id, int) or not 1 <= dataset_id <= 999:
        raise ExportError(f"nnU-Net dataset id {dataset_id!r} is not a number from 1 to 999 (--dataset-id)")
    if dataset_id in RESERVED_IDS and not allow_reserved:
        raise ExportError(
            f"nnU-Net dataset id {dataset_id} is reserved for the Medical Segmentation Decathlon",
            hint=f"choose another (the lowest free one >= {DEFAULT_FIRST_ID} is the default), or allow it (--allow-reserved-id)",
        )
    if not isinstance(name, str) or not _NAME.match(name):
        raise ExportError(
            f"nnU-Net dataset name {name!r} is not usable",
            hint="use letters, digits, '_' and '-' (--dataset-name)",
        )
    return f"Dataset{dataset_id:03d}_{name}"


def used_dataset_ids(*folders: str | os.PathLike) -> dict[int, set[str]]:
    """``{id: {folder names}}`` of the ``DatasetNNN_*`` entries in ``folders`` (missing folders
    are skipped). Pass ``$nnUNet_raw`` and also ``$nnUNet_preprocessed`` / ``$nnUNet_results``:
    nnU-Net refuses an id that names two different datasets across them."""
    used: dict[int, set[str]] = {}
    for folder in folders:
        try:
            entries = [e.name for e in os.scandir(folder) if e.is_dir()]  # nnU-Net looks at folders only
        except OSError:
            continue
        for entry in entries:
            if m := _DATASET.match(entry):
                used.setdefault(int(m[1]), set()).add(entry)
    return used


def lowest_free_dataset_id(*folders: str | os.PathLike, start: int = DEFAULT_FIRST_ID) -> int:
    """The lowest dataset id >= ``start`` that no ``DatasetNNN_*`` in ``folders`` uses."""
    used = used_dataset_ids(*folders)
    for dataset_id in range(start, 1000):
        if dataset_id not in used:
            return dataset_id
    raise ExportError(f"every nnU-Net dataset id from {start} to 999 is taken", hint="give one (--dataset-id)")


def check_dataset_id(dataset_id: int, name: str, *folders: str | os.PathLike, allow_reserved: bool = False) -> str:
    """The dataset's folder name, after refusing an id that another dataset name already uses
    in ``folders`` (nnU-Net would not know which one ``-d NNN`` means)."""
    folder_name = dataset_folder_name(dataset_id, name, allow_reserved=allow_reserved)
    others = sorted(used_dataset_ids(*folders).get(dataset_id, set()) - {folder_name})
    if others:
        raise ExportError(
            f"nnU-Net dataset id {dataset_id} is already used by {', '.join(others)}",
            hint=f"choose another id (free: {lowest_free_dataset_id(*folders)}) or the same name",
        )
    return folder_name


def case_files(case_id: str, split: str, *, channels: int, labelled: bool, fold: int | None = None) -> CaseFiles:
    """Where a case's files go, relative to the dataset folder.

    >>> case_files("case_0001", "train", channels=2, labelled=True, fold=0).files
    ('imagesTr/case_0001_0000.nii.gz', 'imagesTr/case_0001_0001.nii.gz', 'labelsTr/case_0001.nii.gz')
    """
    check_case_id(case_id)
    if not 1 <= channels <= MAX_CHANNELS:
        raise ExportError(f"{channels} channels: nnU-Net numbers 1 to {MAX_CHANNELS} channels (_0000 ... _9999)")
    image_names = [f"{case_id}_{c:04d}{FILE_ENDING}" for c in range(channels)]
    return split_folder_files(case_id, split, image_names, labelled=labelled, fold=fold, file_ending=FILE_ENDING)


def dataset_json(
    cases: Sequence[CaseFiles],
    *,
    labels: Mapping[str, int],
    channels: Sequence[str],
    name: str | None = None,
    description: str | None = None,
    regions: Mapping | None = None,
) -> dict:
    """The ``dataset.json`` content (see the module doc).

    ``regions``: for region-based training, what
    :meth:`~MedPrepLib.segmentation.label_table.SegmentLabelTable.nnunet_labels` gives
    (``{"labels": {"liver": [1, 2], "tumour": 2, ...}, "regions_class_order": [1, 2]}``); its
    labels replace ``labels`` in the file (whose voxel values they must name)."""
    table = check_label_table(labels, consecutive=True)
    channels = check_channel_names(channels)
    written_labels: dict = dict(table)
    if regions is not None and "regions_class_order" in regions:
        written_labels = dict(regions["labels"])
        named = {v for value in written_labels.values() for v in (value if isinstance(value, list) else [value])}
        if named != set(table.values()):
            raise ExportError(f"the region labels {written_labels} do not name the label values {sorted(table.values())}")
    content: dict = {
        "channel_names": {str(n): channel for n, channel in enumerate(channels)},
        "labels": written_labels,
        "numTraining": sum(c.split == "train" for c in cases),
        "file_ending": FILE_ENDING,
        "overwrite_image_reader_writer": "SimpleITKIO",
    }
    if name is not None:
        content["name"] = name
    if description is not None:
        content["description"] = description
    if regions is not None and "regions_class_order" in regions:
        content["regions_class_order"] = list(regions["regions_class_order"])
    content["numTest"] = sum(c.split == "test" for c in cases)
    content["converted_by"] = f"MedPrep {__version__}"
    return content


def write_index(
    dataset_folder: str | os.PathLike, cases: Sequence[CaseFiles], *, overwrite: bool = False, **content
) -> list[Path]:
    """Write ``splits_final.json`` (when the training cases have folds) and then ``dataset.json``,
    whose ``content`` keywords are :func:`dataset_json`'s (``labels``, ``channels``, ``name``,
    ``description``, ``regions``).

    ``cases`` are the cases whose files are written, as :func:`case_files` named them. Refuses
    (ExportError) a listed file that is missing, a file in ``imagesTr``/``labelsTr``/``imagesTs``
    that belongs to no listed case, a case laid out differently, and an empty fold. Returns the
    paths written, ``dataset.json`` last.
    """
    folder = Path(dataset_folder)
    channels = content["channels"]
    content = dataset_json(cases, **content)
    check_layout(
        folder,
        cases,
        lambda c: case_files(c.case_id, c.split, channels=len(channels), labelled=c.labelled, fold=c.fold),
        what="nnU-Net",
        helper="nnunet.case_files",
    )
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        make_folder(folder / sub)  # nnU-Net asserts imagesTr and labelsTr exist, its MSD tools imagesTs
    n_folds = check_index(folder, cases, scanned=("imagesTr", "labelsTr", "imagesTs", "labelsTs"))
    written = []
    if n_folds:
        train = sorted(c.case_id for c in cases if c.split == "train")
        splits = [
            {"train": [c for c in train if c not in val], "val": sorted(val)}
            for val in ({c.case_id for c in cases if c.split == "train" and c.fold == k} for k in range(n_folds))
        ]
        written.append(write_json(splits, folder / "splits_final.json", overwrite=overwrite))
    written.append(write_json(content, folder / "dataset.json", overwrite=overwrite))
    return written
