"""A folder of image files (NIfTI, NRRD, MHA...) -> the cases to export, labels matched by name.

**Images.** The image files directly in the folder (not in subfolders; hidden files skipped),
recognised by their ending (:func:`MedPrepLib.imageio.is_image_file`; the ``.img`` data half of
an Analyze pair is not an image of its own, its ``.hdr`` is). A Slicer segmentation file
(ending in ``.seg.nrrd``) is never an image. A file's *stem* is its name without the format
ending (``ct_017.nii.gz`` -> ``ct_017``; ``ct_017.seg.nrrd`` -> ``ct_017``).

**Channels.** With one channel (the default) every image file is a case; when *every* stem ends
in nnU-Net's channel suffix ``_0000`` the suffix is not part of the case name. With several
``channels`` (``("T1", "FLAIR")``) the files are nnU-Net-named ``<case>_0000``, ``<case>_0001``...,
suffix ``_CCCC`` = the channel's position; a case missing a channel, or a file without such a
suffix, is left out with its reason.

**Labels**, matched by case name, exactly one rule per call:

1. ``labels=DIR``: the label of case ``<case>`` is the image file ``DIR/<case><any ending>``
   (``labels/ct_017.nrrd`` for ``images/ct_017.nii.gz``, or ``ct_017_0000.nii.gz``), or the
   segmentation ``DIR/<case>.seg.nrrd``. A ``.seg.nrrd`` in the image folder itself is then left
   out with its reason.
2. Without ``labels``: the file ``<case>_seg<ending>`` or ``<case>_label<ending>`` beside the
   image (``ct_017_seg.nii.gz``); such files are labels, never images. A segmentation beside
   the image is ``<case>.seg.nrrd``, ``<case>_seg.seg.nrrd`` or ``<case>_label.seg.nrrd``.
3. An nnU-Net raw dataset (the folder holds ``imagesTr/``): images in ``imagesTr/`` and
   ``imagesTs/``, their labels in ``labelsTr/`` and ``labelsTs/`` by rule 1, channel names from
   its ``dataset.json`` (``channel_names``) unless ``channels`` is given.

**Segmentations.** A label file ending in ``.seg.nrrd`` is read as a Slicer segmentation
(named segments, overlapping ones in layers; :mod:`MedPrepLib.segmentation.seg_nrrd`): when the
case is exported its segments are placed on exactly the case's image grid (the same grid, or a
sub-box of it as Slicer crops on saving; another grid under ``--label-grid resample`` only) and
valued through the dataset's one label table — the ``--label-map`` (a segment label map:
names, ``match`` patterns, ``overlap``), or without one every segment name found across the
folder's segmentation files, alphabetically ignoring case, values 1, 2 ... — by their names,
never their order or label values in the file (:mod:`.object_labels`). A folder whose labels mix
segmentations and label images is refused (:class:`~MedPrepLib.errors.ExportError`): a label
image's values are voxel values, a segmentation's come from names, and nothing says they agree.
A segmentation file is part of its case's fingerprint, so a re-run notices an edited one.

An image without a label is an unlabelled case (it goes to the test part; one warning counts
them). A label that matches no image, two labels for one case (``_seg`` and ``_label``, or two
endings), and two images of one case name (two endings) are left out with their reasons. Inputs
are named by neutral numbers, never file names: "image file 3" and "label file 2" count the
image / label files of their folder in name order from 1 (with the folder ``imagesTs``... for
an nnU-Net dataset). Each case is its own patient (a folder does not say which images share one;
one warning): for patients, use a cohort table.

Channel names: ``channels``, else ``dataset.json``'s (rule 3), else one channel named ``image``
with a warning (name it ``CT`` to get nnU-Net's CT normalisation). A case's ``modality`` is what
its first channel's name states (``CT``, ``MR``, ``PT``), else "".
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

from ..errors import ExportError
from ..imageio import image_suffix, is_image_file
from ..jsonfiles import read_json
from ..segmentation.objects import SEG_NRRD_SUFFIX, is_seg_nrrd
from .cases import Exclusion, SourceCase, SourceCases, check_channel_names
from .inputs import fingerprint, input_loader, modality_of_channel, unnamed_channel_warning

LABEL_SUFFIXES = ("_seg", "_label")
"""Rule 2: a label beside its image is named ``<case>_seg`` or ``<case>_label``."""

NNUNET_FOLDERS = (("imagesTr", "labelsTr"), ("imagesTs", "labelsTs"))
DEFAULT_CHANNEL = "image"
NO_PATIENT_WARNING = (
    "an image folder does not say which images share a patient: each case is taken as its own patient, so two "
    "studies of one patient could land in different folds or in both train and test; use a cohort table with a "
    "'patient' column to keep them together"
)

_CHANNEL_SUFFIX = re.compile(r"^(?P<case>.+)_(?P<channel>\d{4})$")


def read_image_folder(
    folder: str | os.PathLike,
    *,
    labels: str | os.PathLike | None = None,
    channels: Sequence[str] | None = None,
    segment_table=None,
) -> SourceCases:
    """The cases of a folder of image files, labels matched by the rule of the module docstring.

    ``labels``: the folder of label files (rule 1); ``channels``: the channel names in suffix
    order; ``segment_table``: the ``--label-map`` as a
    :class:`~MedPrepLib.segmentation.label_table.SegmentLabelTable`, for ``.seg.nrrd`` labels
    (without one the segment names found make the table, set as the result's ``label_table``).
    Nothing is loaded: images and labels are picklable loaders (only segment names are read from
    segmentation headers).
    """
    given = os.fspath(folder)
    root = Path(given)
    if not root.is_dir():
        raise ExportError("the image folder does not exist or is not a folder", detail=given)
    out = SourceCases(warnings=[NO_PATIENT_WARNING])
    label_files: dict[tuple, tuple[str, str]] = {}  # case key -> (label path, its neutral name)
    if (root / "imagesTr").is_dir():
        if labels is not None:
            raise ExportError(
                "an nnU-Net dataset folder has its labels in labelsTr/ and labelsTs/; a labels folder does not apply",
                detail=given,
            )
        channels = _channels(channels if channels is not None else _nnunet_channels(root), out)
        parts = [(images, root / lab) for images, lab in NNUNET_FOLDERS if (root / images).is_dir()]
        for images, label_dir in parts:
            _add_cases(
                out, label_files, root, images, label_dir if label_dir.is_dir() else None, channels, beside=False
            )
    else:
        if labels is not None and not Path(labels).is_dir():
            raise ExportError("the labels folder does not exist or is not a folder", detail=os.fspath(labels))
        if labels is not None and Path(labels).resolve() == root.resolve():
            raise ExportError(
                "the labels folder is the image folder",
                hint="labels beside their images are named <case>_seg or <case>_label; leave out the labels folder",
            )
        channels = _channels(channels, out)
        _add_cases(out, label_files, root, "", Path(labels) if labels is not None else None, channels,
                   beside=labels is None)  # fmt: skip
    if not out.cases and not out.excluded:
        raise ExportError(
            "the image folder holds no image files", hint="images end in .nii.gz, .nii, .nrrd, .mha, ...", detail=given
        )
    from .object_labels import with_segmentation_files

    out = with_segmentation_files(out, label_files, segment_table)
    unlabelled = sum(1 for c in out.cases if c.label is None)
    if unlabelled:
        out.warnings.append(f"{unlabelled} of {len(out.cases)} cases have no label (they go to the test part)")
    return out


def _channels(channels: Sequence[str] | None, out: SourceCases) -> list[str]:
    if channels is None:
        out.warnings.append(unnamed_channel_warning(DEFAULT_CHANNEL, "image files carry no modality"))
        return [DEFAULT_CHANNEL]
    return check_channel_names([str(c).strip() for c in channels])


def _nnunet_channels(root: Path) -> list[str] | None:
    index = root / "dataset.json"
    if not index.is_file():
        return None
    names = read_json(index, what="dataset.json", invalid=ExportError).get("channel_names") or {}
    try:
        return [str(names[k]) for k in sorted(names, key=int)] or None
    except (TypeError, ValueError):
        raise ExportError("dataset.json: channel_names keys are not channel numbers", detail=str(index)) from None


def _image_files(folder: Path) -> list[str]:
    """The image and segmentation file names directly in ``folder``, sorted (the numbering of messages)."""
    if not folder.is_dir():
        return []
    names = (e.name for e in os.scandir(folder) if e.is_file() and not e.name.startswith("."))
    return sorted(n for n in names if is_image_file(n) and image_suffix(n) != ".img")


def _stem(name: str) -> str:
    """The name without its format ending; ``x.seg.nrrd`` -> ``x``."""
    return name[: -len(SEG_NRRD_SUFFIX)] if is_seg_nrrd(name) else name[: -len(image_suffix(name))]


def _add_cases(
    out: SourceCases,
    label_files: dict[tuple, tuple[str, str]],
    root: Path,
    sub: str,
    label_dir: Path | None,
    channels: list[str],
    *,
    beside: bool,
) -> None:
    """Cases of the images in ``root/sub``, labels from ``label_dir`` (rule 1) or ``beside``
    (rule 2); every labelled case's (label path, neutral name) into ``label_files``."""
    where = f"{sub} " if sub else ""
    names = _image_files(root / sub)
    label_names: list[str] = []
    if beside:
        label_names = [n for n in names if is_seg_nrrd(n) or _stem(n).endswith(LABEL_SUFFIXES)]
        names = [n for n in names if n not in label_names]
    else:
        segmentations = [n for n in names if is_seg_nrrd(n)]
        names = [n for n in names if not is_seg_nrrd(n)]
        for number, _ in enumerate(segmentations, 1):
            out.excluded.append(
                Exclusion(
                    f"{where}segmentation file {number}",
                    "a segmentation (.seg.nrrd) is a label, never an image; with a labels folder, labels are taken from there",
                )
            )
        if label_dir is not None:
            label_names = _image_files(label_dir)
    groups = _group_channels(names, len(channels), where, out)
    labels_of = defaultdict(list)  # case name -> label file numbers
    for number, name in enumerate(label_names, 1):
        stem = _stem(name)
        case = next((stem[: -len(s)] for s in LABEL_SUFFIXES if stem.endswith(s)), stem) if beside else stem
        labels_of[case].append(number)
    label_folder = (root / sub) if beside else label_dir
    for case, files in groups.items():
        first = files[0][0]
        found = labels_of.pop(case, [])
        if len(found) > 1:
            out.excluded.append(
                Exclusion(
                    f"{where}image file {first}",
                    f"{len(found)} label files match it (label files {', '.join(map(str, found))})",
                )
            )
            continue
        images = [str(root / sub / name) for _, name in files]
        label = str(label_folder / label_names[found[0] - 1]) if found else None
        rel = tuple(f"{sub}/{name}" if sub else name for _, name in files)
        if label:
            label_files[rel] = (label, f"{where}label file {found[0]}")
        out.cases.append(
            SourceCase(
                key=rel,
                patient="\x1f".join(rel),
                images={c: input_loader(p, f"channel {c}") for c, p in zip(channels, images)},
                modality=modality_of_channel(channels[0]),
                label=input_loader(label, "the label") if label else None,
                key_row=("", "", ";".join(os.path.join(os.fspath(root), r) for r in rel)),
                fingerprint=fingerprint(images + ([label] if label else []), {"channels": channels}),
            )
        )
    for numbers in labels_of.values():
        for number in numbers:
            out.excluded.append(
                Exclusion(
                    f"{where}label file {number}",
                    "matches no image (labels match images by file name without the ending)",
                )
            )


def _group_channels(
    names: list[str], n_channels: int, where: str, out: SourceCases
) -> dict[str, list[tuple[int, str]]]:
    """Case name -> [(image file number, name)] in channel order; what does not fit is excluded."""
    stems = [_stem(n) for n in names]
    suffixed = [_CHANNEL_SUFFIX.match(s) for s in stems]
    split_suffix = n_channels > 1 or (bool(names) and all(m and m["channel"] == "0000" for m in suffixed))
    groups: dict[str, dict[int, list[int]]] = defaultdict(lambda: defaultdict(list))
    for number, (stem, match) in enumerate(zip(stems, suffixed), 1):
        if not split_suffix:
            groups[stem][0].append(number)
        elif match and int(match["channel"]) < n_channels:
            groups[match["case"]][int(match["channel"])].append(number)
        else:
            last = f"_{n_channels - 1:04d}"
            out.excluded.append(
                Exclusion(f"{where}image file {number}", f"its name does not end in a channel suffix _0000 ... {last}")
            )
    cases = {}
    for case, by_channel in sorted(groups.items()):
        numbers = sorted(n for ns in by_channel.values() for n in ns)
        if any(len(ns) > 1 for ns in by_channel.values()):
            out.excluded.append(
                Exclusion(
                    f"{where}image files {', '.join(map(str, numbers))}",
                    "one case name with several file endings; keep one",
                )
            )
        elif len(by_channel) != n_channels:
            have = ", ".join(f"_{c:04d}" for c in sorted(by_channel))
            out.excluded.append(Exclusion(f"{where}image file {numbers[0]}", f"has channels {have} of {n_channels}"))
        else:
            cases[case] = [(by_channel[c][0], names[by_channel[c][0] - 1]) for c in range(n_channels)]
    return cases
