"""The segmentations of a saved Slicer scene as a labelled dataset: a 3D Slicer batch script.

Run it with Slicer's Python (no window, no user)::

    Slicer --no-main-window --python-script MedPrep/Batch/export_scene.py -- \\
        --scene SCENE.mrb --out OUT --format nnunet [--label-map F] [--dataset-name NAME] ...

Slicer loads the scene (``slicer.util.loadScene``: a .mrb bundle or a .mrml file). Every
segmentation node is one case, paired with the volume it was drawn on: the node its
``referenceImageGeometryRef`` reference names, else the one image volume of the scene; when
neither says, the script refuses. The pairs go to the module's own export,
``ModuleLogic.exportDataset(out, volumePairs=...)`` (:mod:`MedPrepCore.DatasetExport`): segment
*names* choose the label values (the label map's, or every segment name, alphabetically).

The options are those of ``medprep export`` that apply to scene nodes (:data:`KEYWORDS`), taken
from ``MedPrepLib.cli.export.add_arguments`` with their help and defaults; OUT is ``--out OUT``.
Exit status as ``medprep``'s: 0 done, 4 some cases quarantined, 2 refused or nothing exported
(one line on stderr saying what, where and what to do), 1 an internal error.
"""

import os
import sys

KEYWORDS = {
    "format": "fmt",
    "recipe": "recipe",
    "label_map": "labelMap",
    "dataset_id": "datasetId",
    "dataset_name": "datasetName",
    "folds": "folds",
    "test_fraction": "testFraction",
    "seed": "seed",
    "key_file": "keyFile",
    "channel_name": "channelName",
    "overwrite": "overwrite",
}
"""medprep export's options (argparse dest) -> the keyword of ``exportDataset`` they set; and
``--no-qc`` (``qc=False``). Scene nodes are exported in this process, so no ``--workers``."""

RENAMED = {"out": ("--out", "OUT", "")}

REFERENCE_ROLE = "referenceImageGeometryRef"
"""The node reference of a segmentation to the volume whose grid it was drawn on (Slicer's
``vtkMRMLSegmentationNode::GetReferenceImageGeometryReferenceRole()``)."""


def _batchDir() -> str:
    script = globals().get("__file__") or sys.argv[0]
    return os.path.dirname(os.path.abspath(script))


def buildParser():
    import MedPrepBatch

    from MedPrepLib.cli import export as exportCommand

    parser = MedPrepBatch.ArgumentParser(
        prog="export_scene.py",
        description="Export the segmentations of a saved Slicer scene, each with the volume it labels, as a "
        "training dataset in --out OUT (for nnunet and msd the parent folder, e.g. $nnUNet_raw).",
    )
    parser.add_argument(
        "--scene", required=True, metavar="SCENE", help="the saved scene: a .mrb bundle or a .mrml file"
    )
    exportCommand.add_arguments(MedPrepBatch.ExportOptions(parser, RENAMED, only={"out", "no_qc", *KEYWORDS}))
    MedPrepBatch.addVerbose(parser)
    return parser


def _nodes(scene, className: str) -> list:
    collection = scene.GetNodesByClass(className)
    return [collection.GetItemAsObject(i) for i in range(collection.GetNumberOfItems())]


def imageVolumes(scene) -> list:
    """The scene's image volumes: scalar volume nodes that are not label maps."""
    return [n for n in _nodes(scene, "vtkMRMLScalarVolumeNode") if not n.IsA("vtkMRMLLabelMapVolumeNode")]


def volumePairs(scene) -> list[tuple]:
    """(volume node, segmentation node) of every segmentation of ``scene``, in scene order."""
    from MedPrepLib.errors import InputError

    segmentations = _nodes(scene, "vtkMRMLSegmentationNode")
    if not segmentations:
        raise InputError("the scene holds no segmentation", hint="save the scene with the segmentations to export")
    volumes = imageVolumes(scene)
    volumeIds = {v.GetID() for v in volumes}
    pairs = []
    for segmentation in segmentations:
        reference = segmentation.GetNodeReference(REFERENCE_ROLE)
        if reference is not None and reference.GetID() in volumeIds:
            pairs.append((reference, segmentation))
        elif len(volumes) == 1:
            pairs.append((volumes[0], segmentation))
        else:
            raise InputError(
                f"segmentation '{segmentation.GetName()}' names no reference volume and the scene holds "
                f"{len(volumes)} image volumes, so which one it labels is unknown",
                hint="in Slicer's Segment Editor choose its source volume, save the scene, and run again",
            )
    return pairs


def loadScene(path: str):
    """Load the scene file into ``slicer.mrmlScene`` as Slicer does (``slicer.util.loadScene``)."""
    import slicer

    from MedPrepLib.errors import InputError

    if not os.path.isfile(path):
        raise InputError("the scene file does not exist", path=path, hint="give a .mrb or .mrml file saved by Slicer")
    try:
        slicer.util.loadScene(os.path.abspath(path))
    except RuntimeError:
        raise InputError(
            "Slicer cannot read the scene", path=path, hint="give a .mrb or .mrml file saved by Slicer"
        ) from None
    return slicer.mrmlScene


def main(args: list[str]) -> int:
    import MedPrepBatch
    from MedPrepCore.ModuleLogic import ModuleLogic
    from MedPrepCore.Segmentations import registerConverterRules

    from MedPrepLib.export.runner import EXIT_USAGE

    options = buildParser().parse_args(args)
    registerConverterRules()  # the application's Segmentations module does this at start-up
    scene = loadScene(options.scene)
    pairs = volumePairs(scene)
    print(
        f"medprep: {len(pairs)} segmentation(s): " + ", ".join(f"'{s.GetName()}' on '{v.GetName()}'" for v, s in pairs)
    )
    progress = MedPrepBatch.progressReporter()

    def log(line: str) -> None:
        progress.close()
        print(f"medprep: {line}", file=sys.stderr)

    keywords = {keyword: getattr(options, dest) for dest, keyword in KEYWORDS.items()}
    try:
        report = ModuleLogic(scene).exportDataset(
            options.out, volumePairs=pairs, qc=not options.no_qc, progressCallback=progress, log=log, **keywords
        )
    finally:
        progress.close()
    for line in report.warnings:
        print(f"medprep: warning: {line}", file=sys.stderr)
    print(f"{report.dataset_folder}: {len(report.exported)} case(s) exported")
    for caseId, reason in sorted(report.quarantined.items()):
        print(f"  {caseId} quarantined: {reason}")
    if report.report is not None:
        print(f"report: {report.report}")
    return report.exit_code if report.exported else EXIT_USAGE


if __name__ == "__main__":
    if _batchDir() not in sys.path:  # Slicer's executeFile puts it first already
        sys.path.append(_batchDir())
    import MedPrepBatch

    MedPrepBatch.makeMedPrepImportable(_batchDir())
    arguments = MedPrepBatch.scriptArguments()
    MedPrepBatch.runAndExit(lambda: main(arguments), verbose=MedPrepBatch.wantsVerbose(arguments))
