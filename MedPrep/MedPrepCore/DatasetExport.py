"""A dataset from the module: MedPrepLib's export over a DICOM database or over scene nodes. No Qt.

:func:`exportDataset` is ``logic.exportDataset(...)``: the export of ``medprep export`` —
:func:`MedPrepLib.export.export_dataset`, the same code, the same dataset — with two ways in.

**A DICOM folder or database** (``source``: a Slicer DICOM database folder such as
``slicer.dicomDatabase.databaseDirectory``, a DICOM folder, or anything else ``medprep export``
takes as SOURCE). ``seriesUids`` restricts the export to the series ticked in the panel (the
CLI's ``--series-uid``). The dataset is byte for byte what ``medprep export`` writes when given
the options in the order :func:`exportCommand` lists them — ``medprep.json`` records that
command line (paths replaced by placeholders), so it can be replayed without Slicer.

**Scene nodes** (``volumePairs``: ``[(volumeNode, labelNode or None), ...]``, the label a label
map node or a segmentation node). Each pair is one case, each its own patient. Two rules:

* When *every* node of the pairs is unchanged since it was read from a file (Slicer's storage
  node names the file and ``GetModifiedSinceRead()`` is false), the nodes *are* those files: the
  export reads a cohort table of them (``image`` and ``label`` columns, absolute paths), so the
  dataset is byte for byte ``medprep export COHORT.json OUT`` of a table listing the same files;
  a segmentation's ``.seg.nrrd`` is read as ``medprep export`` reads it.
* Otherwise (a segmentation drawn or edited in the Segment Editor, a volume made in the scene)
  the cases are the nodes as they are in memory: the image through
  :func:`MedPrepCore.VolumeNodes.volumeFromNode`, a label map node likewise, a segmentation
  through Slicer's own logic (:mod:`MedPrepCore.Segmentations`) on its volume's grid, valued by
  one label table for the whole dataset (``labelMap``, or every segment name of every pair,
  alphabetically). Such a case's identity is a digest of its voxels, grid and segment names;
  these exports run in this process (``workers`` must be 1: nodes cannot go to worker processes).

Progress and cancel: ``progressCallback(label, fraction) -> True`` cancels; the export stops
with :class:`~MedPrepLib.errors.CancelledError` and the dataset folder stays resumable (the
same call finishes it). Errors are MedPrep errors; nothing here shows a dialog.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile

from MedPrepLib.errors import ExportError, InputError
from MedPrepLib.progress import ProgressCallback

from . import Segmentations, VolumeNodes

# (keyword of exportDataset, option of medprep export, default): the options the module passes
# on, in the order of `medprep export --help`; exportCommand() writes the non-default ones.
EXPORT_OPTIONS = (
    ("fmt", "--format", "nnunet"),
    ("recipe", "--recipe", None),
    ("labelsDir", "--labels", None),
    ("labelsFrom", "--labels-from", None),
    ("labelMap", "--label-map", None),
    ("datasetId", "--dataset-id", None),
    ("datasetName", "--dataset-name", None),
    ("folds", "--folds", 5),
    ("testFraction", "--test-fraction", 0.0),
    ("seed", "--seed", 0),
    ("keyFile", "--key-file", None),
    ("channelName", "--channel-name", None),
    ("seriesUids", "--series-uid", None),
    ("qc", "--no-qc", True),
    ("overwrite", "--overwrite", False),
)


def exportCommand(source: str | os.PathLike, out: str | os.PathLike, **options) -> list[str]:
    """The ``medprep export`` argument list (after ``export``) that makes the same dataset.

    ``options`` are :func:`exportDataset`'s keywords of :data:`EXPORT_OPTIONS`; defaults are left
    out. A recipe, label map or key file given as a path is passed as that path; given as a
    dict it has no command-line form (then ``None`` is returned).

    >>> exportCommand("db", "out", fmt="msd", folds=3, seriesUids=["1.2.3"], qc=False)
    ['db', 'out', '--format', 'msd', '--folds', '3', '--series-uid', '1.2.3', '--no-qc']
    """
    argv = [os.fspath(source), os.fspath(out)]
    for keyword, option, default in EXPORT_OPTIONS:
        value = options.get(keyword, default)
        if value is None or value == default:
            continue
        if isinstance(value, bool):
            argv.append(option)  # --overwrite (True) and --no-qc (qc False)
        elif keyword == "seriesUids":
            for uid in value:
                argv += [option, str(uid)]
        elif isinstance(value, (str, os.PathLike, int, float)):
            argv += [option, os.fspath(value) if isinstance(value, os.PathLike) else str(value)]
        else:
            return None
    return argv


# --- scene nodes as cases --------------------------------------------------------------------------


def fileOfNode(node) -> str | None:
    """The file ``node`` was read from, when the node is unchanged since (else None)."""
    storage = node.GetStorageNode() if node is not None else None
    fileName = storage.GetFileName() if storage is not None else None
    if not fileName or not os.path.isfile(fileName) or node.GetModifiedSinceRead():
        return None
    return os.path.abspath(fileName)


def _checkPairs(volumePairs) -> list[tuple]:
    pairs = [tuple(p) if isinstance(p, (tuple, list)) else (p, None) for p in volumePairs]
    if not pairs:
        raise InputError("no volumes to export", hint="pair each image volume with its label (or none)")
    seen = set()
    for n, pair in enumerate(pairs, 1):
        if len(pair) != 2:
            raise InputError(f"pair {n} is not (volume, label)")
        image, label = pair
        if image is None or not image.IsA(VolumeNodes.SCALAR_VOLUME_CLASS) or image.IsA(VolumeNodes.LABELMAP_VOLUME_CLASS):
            raise InputError(f"pair {n}: the first node must be an image volume")
        if label is not None and not (label.IsA(VolumeNodes.LABELMAP_VOLUME_CLASS) or label.IsA(Segmentations.SEGMENTATION_CLASS)):
            raise InputError(f"pair {n} ('{image.GetName()}'): the label must be a label map or a segmentation node")
        if image.GetID() in seen:
            raise InputError(f"volume '{image.GetName()}' is in two pairs", hint="each volume is one case")
        seen.add(image.GetID())
    return pairs


def _cohortOfFiles(pairs, folder: str) -> str | None:
    """A cohort table (JSON) of the pairs' files, or None when a node is not its file."""
    rows = []
    for image, label in pairs:
        imageFile = fileOfNode(image)
        labelFile = fileOfNode(label) if label is not None else ""
        if imageFile is None or labelFile is None:
            return None
        rows.append({"image": imageFile, "label": labelFile})
    path = os.path.join(folder, "scene-cohort.json")
    with open(path, "w", encoding="utf-8") as f:
        json.dump(rows, f, indent=1)
    return path


class SegmentationNodeLabel:
    """The label of a scene case from a segmentation node, made on the case's image grid when
    the export gets to the case (a loader with ``needs_image``, as for DICOM SEG objects)."""

    needs_image = True

    def __init__(self, segmentationNode, volumeNode, table) -> None:
        self.segmentationNode, self.volumeNode, self.table = segmentationNode, volumeNode, table

    def __call__(self, image, grid_policy: str = "reject"):
        label, _, _ = Segmentations.labelVolumeFromSegmentation(self.segmentationNode, self.volumeNode, self.table)
        if label.geometry != image.geometry:
            raise ExportError(f"the label of '{self.volumeNode.GetName()}' is not on its image's grid")
        return label


def _digest(volume, extra: object = None) -> str:
    h = hashlib.sha256()
    h.update(json.dumps([volume.geometry.to_dict(), str(volume.array.dtype), list(volume.array.shape), extra],
                        sort_keys=True, default=str).encode())  # fmt: skip
    h.update(memoryview(volume.array.tobytes()))
    return h.hexdigest()


def _nodeModality(node) -> str:
    """The DICOM Modality a node loaded by :meth:`ModuleLogic.loadDicom` records ("" otherwise)."""
    from MedPrepLib.export.inputs import MODALITY_CHANNELS

    from .Processing import PROVENANCE_ATTRIBUTE

    try:
        modality = str(json.loads(node.GetAttribute(PROVENANCE_ATTRIBUTE) or "{}").get("modality") or "").upper()
    except ValueError:
        return ""
    return modality if modality in MODALITY_CHANNELS else ""


def _segmentationDigest(segmentationNode, volumeNode) -> str:
    """A digest of a segmentation's segments (names, boxes, masks) on its volume's grid."""
    h = hashlib.sha256()
    for segment in Segmentations.segmentationOnVolume(segmentationNode, volumeNode).segments:
        h.update(json.dumps([segment.number, segment.name, list(segment.box), list(segment.mask.shape)]).encode())
        h.update(segment.mask.tobytes())
    return h.hexdigest()


def _segmentNames(node) -> list[str]:
    segmentation = node.GetSegmentation()
    return [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]


def sceneCases(volumePairs, labelMap=None, channelName: str | None = None):
    """:class:`~MedPrepLib.export.cases.SourceCases` of scene nodes as they are in memory."""
    from MedPrepLib.export.cases import SourceCase, SourceCases
    from MedPrepLib.export.inputs import modality_of_channel

    pairs = _checkPairs(volumePairs)
    out = SourceCases()
    modalities = {_nodeModality(image) for image, _ in pairs}
    channel = channelName or (modalities.pop() if len(modalities) == 1 and "" not in modalities else "image")
    if channel == "image" and not channelName:
        out.warnings.append(
            "the scene volumes do not all state one modality: the channel is named 'image' "
            "(name it CT for nnU-Net's CT normalisation)"
        )
    out.warnings.append("scene volumes do not say which share a patient: each case is taken as its own patient")
    segmentations = [label for _, label in pairs if label is not None and label.IsA(Segmentations.SEGMENTATION_CLASS)]
    table = None
    if segmentations:
        table = Segmentations.labelTableFor(labelMap, [n for s in segmentations for n in _segmentNames(s)])
        if labelMap is None:
            out.label_table = table
    for image, label in pairs:
        volume = VolumeNodes.volumeFromNode(image)
        labelSource, labelFacts = None, None
        if label is not None and label.IsA(Segmentations.SEGMENTATION_CLASS):
            labelSource = SegmentationNodeLabel(label, image, table)
            labelFacts = _segmentationDigest(label, image)
        elif label is not None:
            labelSource = VolumeNodes.volumeFromNode(label)
            labelFacts = _digest(labelSource)
        name = image.GetName()
        out.cases.append(
            SourceCase(
                key=("scene", name, image.GetID()),
                patient=f"scene:{image.GetID()}",
                images={channel: volume},
                modality=modality_of_channel(channel),
                label=labelSource,
                key_row=("", "", f"scene node '{name}'"),
                fingerprint=hashlib.sha256(json.dumps([_digest(volume), labelFacts]).encode()).hexdigest(),
            )
        )
    return out


# --- the export ------------------------------------------------------------------------------------


def exportDataset(
    out: str | os.PathLike,
    *,
    source: str | os.PathLike | None = None,
    seriesUids=None,
    volumePairs=None,
    fmt: str = "nnunet",
    recipe=None,
    labelMap=None,
    labelsDir: str | os.PathLike | None = None,
    labelsFrom: str | None = None,
    datasetId: int | None = None,
    datasetName: str | None = None,
    folds: int = 5,
    testFraction: float = 0.0,
    seed: int = 0,
    keyFile: str | os.PathLike | None = None,
    overwrite: bool = False,
    workers: int | str = 1,
    qc: bool = True,
    channelName: str | None = None,
    progressCallback: ProgressCallback | None = None,
    log=None,
):
    """Export a dataset into ``out`` from ``source`` (+ ``seriesUids``) or from ``volumePairs``.

    The options are ``medprep export``'s (``fmt`` = ``--format``, ``labelMap`` = ``--label-map``
    (a file, or a label map dict), ``labelsDir`` = ``--labels``, ``labelsFrom`` = ``--labels-from``,
    ``datasetId``/``datasetName`` (for nnU-Net ``out`` is ``$nnUNet_raw``), ``folds``, ``testFraction``, ``seed``, ``keyFile``, ``overwrite``,
    ``workers``, ``qc``, ``channelName``); ``recipe`` a Recipe, dict or recipe file (default:
    the export's per-modality default). Returns the :class:`MedPrepLib.export.runner.ExportReport`
    (``dataset_folder``, ``exported``, ``quarantined`` {case: reason}, ``report``, ``exit_code``).

    >>> # logic = slicer.util.getModuleLogic("MedPrep")
    >>> # report = logic.exportDataset("/data/nnUNet_raw", source=slicer.dicomDatabase.databaseDirectory,
    >>> #                              datasetName="Liver", labelMap="labels.json")
    >>> # report = logic.exportDataset("/data/nnUNet_raw", volumePairs=[(getNode("CT"), getNode("Segmentation"))])
    >>> # print(report.dataset_folder, len(report.exported), report.quarantined)
    """
    from MedPrepLib.export.runner import export_dataset as runExport

    def export_dataset(*args, **kwargs):
        report = runExport(*args, **kwargs)
        if progressCallback is not None:
            progressCallback("Export finished", 1.0)  # the dialog closes on a full bar
        return report

    if (source is None) == (volumePairs is None):
        raise InputError("export from a DICOM source or from scene volumes: give exactly one of source, volumePairs")
    if volumePairs is not None and (labelsDir or labelsFrom or seriesUids):
        raise InputError("labelsDir, labelsFrom and seriesUids choose labels and series of a DICOM source",
                         hint="scene volumes take their labels from their pairs")  # fmt: skip
    options = dict(fmt=fmt, recipe=recipe, labelMap=labelMap, labelsDir=labelsDir, labelsFrom=labelsFrom,
                   datasetId=datasetId, datasetName=datasetName, folds=folds, testFraction=testFraction, seed=seed, keyFile=keyFile, channelName=channelName, qc=qc,
                   overwrite=overwrite)  # fmt: skip
    common = dict(fmt=fmt, recipe=recipe, label_map=labelMap, dataset_id=datasetId, dataset_name=datasetName,
                  folds=folds, test_fraction=testFraction, seed=seed, key_file=keyFile, overwrite=overwrite,
                  qc=qc, progress=progressCallback, log=log)  # fmt: skip
    if source is not None:
        if not os.path.exists(os.fspath(source)):
            raise InputError("the export source does not exist", path=os.fspath(source), hint="choose an existing folder")
        sourceOptions = {"channel_name": channelName}
        if labelsFrom:
            sourceOptions["labels_from"] = labelsFrom
        if seriesUids:
            from MedPrepLib.export.stack_selection import StackSelection

            sourceOptions["selection"] = StackSelection(series_uids=tuple(str(u) for u in seriesUids))
        command = exportCommand(source, out, seriesUids=list(seriesUids or []) or None, **options)
        return export_dataset(source, out, workers=workers, labels_dir=labelsDir, source_options=sourceOptions,
                              command=command, **common)  # fmt: skip
    pairs = _checkPairs(volumePairs)
    with tempfile.TemporaryDirectory(prefix="medprep-scene-") as folder:
        cohort = _cohortOfFiles(pairs, folder)
        if cohort is not None:  # every node is its file: the export of a cohort table of those files
            command = exportCommand(cohort, out, **options)
            return export_dataset(cohort, out, workers=workers, source_options={"channel_name": channelName},
                                  command=command, **common)  # fmt: skip
    if workers not in (1, "1"):
        raise InputError("scene nodes changed since they were read (or never saved) export in this process only",
                         hint="use workers=1, or save the nodes and export their files")  # fmt: skip
    cases = sceneCases(pairs, labelMap, channelName)
    return export_dataset(cases, out, workers=1, command=exportCommand("<scene>", out, **options), **common)
