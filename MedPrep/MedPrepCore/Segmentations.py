"""Segmentation nodes -> label volumes through Slicer's own segmentation logic. No Qt.

A Slicer segmentation node holds named segments, which may overlap (several layers) and are
stored on their own grid (the segmentation's geometry), possibly unlike the volume they were
drawn on. :func:`segmentationOnVolume` asks Slicer's ``vtkSlicerSegmentationsModuleLogic`` to put
each segment, one at a time, on exactly the reference volume's grid (``ExportSegmentsToLabelmapNode``
with the reference geometry as extent; Slicer resamples a segmentation drawn on another grid
with nearest neighbour and folds in the segmentation's parent transform), and gathers the masks
as a :class:`MedPrepLib.segmentation.segments.Segmentation` — the same value that MedPrepLib's
readers of DICOM SEG, RTSTRUCT and ``.seg.nrrd`` files return. From there the label map is
MedPrepLib's one rule (:func:`MedPrepLib.segmentation.label_table.segmentation_to_label`):
segment *names* choose the label values through the dataset's label table, never the segment
order, so shuffled segments give the same labels and overlaps are refused or resolved exactly
as for files.

:func:`labelFromSegmentation` puts the label map into a new label map node (the label table as
JSON in the node attribute :data:`LABEL_TABLE_ATTRIBUTE`).
"""

from __future__ import annotations

import json
import os

from MedPrepLib.errors import InputError

from . import VolumeNodes

LABEL_TABLE_ATTRIBUTE = "MedPrep.labels"
"""Node attribute of a label map made from a segmentation: ``{"labels": {name: value}, "report": ...}``."""

SEGMENTATION_CLASS = "vtkMRMLSegmentationNode"


def registerConverterRules() -> None:
    """Make sure Slicer's segmentation converter knows the binary labelmap and closed surface
    representations. The application's Segmentations module registers them at start-up; a
    batch or slicer-core process may not have, and then no segment can hold a labelmap."""
    import slicer

    factory = slicer.vtkSegmentationConverterFactory.GetInstance()
    known = {rule.GetName() for rule in factory.GetConverterRules()}
    for rule in (slicer.vtkBinaryLabelmapToClosedSurfaceConversionRule, slicer.vtkClosedSurfaceToBinaryLabelmapConversionRule):
        instance = rule()
        if instance.GetName() not in known:
            factory.RegisterConverterRule(instance)


def _segmentationsLogic(scene):
    """Slicer's segmentations logic on ``scene``: the application's own when there is one, else
    one made for the scene once (making one registers the module's node classes again)."""
    import slicer

    modules = getattr(slicer, "modules", None)
    if modules is not None and hasattr(modules, "segmentations") and scene is getattr(slicer, "mrmlScene", None):
        return modules.segmentations.logic()
    logic = getattr(scene, "_medprepSegmentationsLogic", None)
    if logic is None:
        logic = slicer.vtkSlicerSegmentationsModuleLogic()
        logic.SetMRMLScene(scene)
        scene._medprepSegmentationsLogic = logic  # lives as long as the scene
    return logic


def _check(segmentationNode, referenceVolume) -> None:
    if segmentationNode is None or not segmentationNode.IsA(SEGMENTATION_CLASS):
        what = "nothing" if segmentationNode is None else segmentationNode.GetClassName()
        raise InputError(f"a segmentation node is needed, got {what}", hint="select a segmentation")
    if referenceVolume is None or not referenceVolume.IsA("vtkMRMLScalarVolumeNode"):
        raise InputError(
            f"segmentation '{segmentationNode.GetName()}' needs the volume it labels",
            hint="pair the segmentation with its image volume",
        )


def _nodeIds(scene) -> set[str]:
    return {scene.GetNthNode(i).GetID() for i in range(scene.GetNumberOfNodes())}


def _removeNodesSince(scene, before: set[str]) -> None:
    """Remove every node added to ``scene`` since ``before`` (the scratch label map and what
    Slicer's export made for it: display node, colour table)."""
    for nodeId in sorted(_nodeIds(scene) - before):
        node = scene.GetNodeByID(nodeId)
        if node is not None:
            scene.RemoveNode(node)


def segmentationOnVolume(segmentationNode, referenceVolume):
    """The segments of ``segmentationNode`` on ``referenceVolume``'s grid, as a MedPrepLib
    :class:`~MedPrepLib.segmentation.segments.Segmentation` (kind ``"Slicer segmentation"``).

    Segments keep their names and their order (``number`` is the 1-based position in the node);
    each mask comes from Slicer's own export of that segment alone, so overlapping segments keep
    every voxel. The grid is the reference volume's (LPS), exactly as
    :func:`MedPrepCore.VolumeNodes.volumeFromNode` gives it.
    """
    import vtk

    from MedPrepLib.segmentation.segments import Segment, Segmentation

    _check(segmentationNode, referenceVolume)
    registerConverterRules()
    import slicer

    scene = segmentationNode.GetScene()
    logic = _segmentationsLogic(scene)
    segmentation = segmentationNode.GetSegmentation()
    geometry = VolumeNodes.volumeFromNode(referenceVolume).geometry
    segments, warnings = [], []
    before = _nodeIds(scene)
    scratch = scene.AddNewNodeByClass(VolumeNodes.LABELMAP_VOLUME_CLASS, "MedPrep scratch label")
    try:
        for index in range(segmentation.GetNumberOfSegments()):
            segmentId = segmentation.GetNthSegmentID(index)
            name = segmentation.GetSegment(segmentId).GetName()
            ids = vtk.vtkStringArray()
            ids.InsertNextValue(segmentId)
            if not logic.ExportSegmentsToLabelmapNode(
                segmentationNode, ids, scratch, referenceVolume, slicer.vtkSegmentation.EXTENT_REFERENCE_GEOMETRY
            ):
                raise InputError(
                    f"Slicer could not put segment {index + 1} ({name!r}) of '{segmentationNode.GetName()}' "
                    f"on the grid of '{referenceVolume.GetName()}'",
                    hint="check that the segmentation has a binary labelmap and overlaps the volume",
                )
            mask = VolumeNodes.volumeFromNode(scratch).array > 0
            if mask.shape != geometry.shape:
                raise InputError(f"segment {name!r} came back on a {mask.shape} grid, not the volume's {geometry.shape}")
            segment = Segment.from_full_mask(index + 1, name, mask)
            if segment.empty:
                warnings.append(f"segment {index + 1} ({name!r}) holds no voxel inside the volume")
            segments.append(segment)
    finally:
        _removeNodesSince(scene, before)
    return Segmentation(geometry, "Slicer segmentation", segments, warnings)


def labelTableFor(labelMap, names):
    """The :class:`~MedPrepLib.segmentation.label_table.SegmentLabelTable` of ``labelMap`` — a
    table, its JSON dict or a label map file — or, without one (``None``, or an unset path
    field: ``""``, ``"."``), every segment name of ``names`` in alphabetical order (values 1,
    2, ...), as the export does."""
    from MedPrepLib.segmentation.label_table import SegmentLabelTable, segment_label_table

    if isinstance(labelMap, (str, os.PathLike)) and str(labelMap) in ("", "."):
        labelMap = None
    return segment_label_table(labelMap) or SegmentLabelTable.from_names(names)


def labelVolumeFromSegmentation(segmentationNode, referenceVolume, labelMap=None):
    """(label :class:`~MedPrepLib.volume.Volume` on the reference grid, its
    :class:`~MedPrepLib.segmentation.label_table.LabelReport`, the label table used).

    Raises :class:`~MedPrepLib.errors.LabelError` when segments overlap and the label map does
    not say how to resolve it (``"overlap"``), as the export does for files."""
    from MedPrepLib.segmentation.label_table import segmentation_to_label

    segmentation = segmentationOnVolume(segmentationNode, referenceVolume)
    table = labelTableFor(labelMap, segmentation.names())
    label, report = segmentation_to_label(segmentation, table)
    report.warnings[:0] = segmentation.warnings
    return label, report, table


def labelFromSegmentation(segmentationNode, referenceVolume, labelMap=None, outputName: str | None = None):
    """A new label map node: ``segmentationNode``'s segments on ``referenceVolume``'s grid,
    valued by the label table (``labelMap``: a label map file, its JSON dict, a
    ``SegmentLabelTable``; default every segment name, alphabetically, 1, 2, ...).

    The table and what went into each label are stored as JSON in :data:`LABEL_TABLE_ATTRIBUTE`.
    Nothing is added to the scene when the conversion fails.

    >>> # logic = slicer.util.getModuleLogic("MedPrep")
    >>> # label = logic.labelFromSegmentation(getNode("Segmentation"), getNode("CT"), "labels.json")
    >>> # slicer.util.arrayFromVolume(label).max()
    """
    label, report, table = labelVolumeFromSegmentation(segmentationNode, referenceVolume, labelMap)
    name = outputName or f"{segmentationNode.GetName()} label"
    node = VolumeNodes.nodeFromVolume(segmentationNode.GetScene(), label, name, labelmap=True)
    node.SetAttribute(LABEL_TABLE_ATTRIBUTE, json.dumps({"labels": dict(table.table.labels), "report": report.to_dict()}))
    return node
