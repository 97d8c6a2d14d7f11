"""The Preview section: the recipe run on one volume (and its label), shown beside the original.

``logic.preview`` makes the preview nodes (and replaces those of an earlier preview of the same
volume); this file shows them: a side-by-side layout, the original in the Red view and the
preview in the Yellow one, both axial and linked, the label as the label layer, and a display
window that suits the output's values.
"""

from __future__ import annotations

import slicer
import vtk
from MedPrepCore import RecipeFields
from slicer.i18n import tr as _

from .Progress import pathOrNone, runWithProgress

_RANGE_WINDOWED = (vtk.VTK_FLOAT, vtk.VTK_DOUBLE, vtk.VTK_UNSIGNED_CHAR)
"""Voxel types of a normalised or windowed output, shown over their whole value range."""


def suitWindow(volumeNode) -> None:
    """A display window for the output: its value range for normalised or windowed voxels
    (float, uint8), Slicer's automatic window for the rest (HU as integers)."""
    if volumeNode.GetDisplayNode() is None:
        volumeNode.CreateDefaultDisplayNodes()
    display, imageData = volumeNode.GetDisplayNode(), volumeNode.GetImageData()
    if display is None or imageData is None:
        return
    low, high = imageData.GetScalarRange()
    if imageData.GetScalarType() in _RANGE_WINDOWED and high > low:
        display.AutoWindowLevelOff()
        display.SetWindowLevelMinMax(low, high)
    else:
        display.AutoWindowLevelOn()


def showSideBySide(original, originalLabel, preview, previewLabel) -> None:
    """Original (Red) and preview (Yellow) side by side, axial, linked; label maps as labels."""
    layoutManager = slicer.app.layoutManager()
    if layoutManager is None:  # no main window (batch)
        return
    layoutManager.setLayout(slicer.vtkMRMLLayoutNode.SlicerLayoutSideBySideView)
    views = (("Red", original, originalLabel), ("Yellow", preview, previewLabel))
    for viewName, image, label in views:
        sliceWidget = layoutManager.sliceWidget(viewName)
        sliceWidget.mrmlSliceNode().SetOrientation("Axial")
        composite = sliceWidget.mrmlSliceCompositeNode()
        composite.SetLinkedControl(False)  # set each view's own layers first: a linked view passes them on
        composite.SetBackgroundVolumeID(image.GetID())
        composite.SetForegroundVolumeID(None)
        isLabelMap = label is not None and label.IsA("vtkMRMLLabelMapVolumeNode")
        composite.SetLabelVolumeID(label.GetID() if isLabelMap else None)
        composite.SetLabelOpacity(0.5)
        sliceWidget.sliceLogic().FitSliceToAll()
    for viewName, _image, _label in views:
        layoutManager.sliceWidget(viewName).mrmlSliceCompositeNode().SetLinkedControl(True)


class PreviewSection:
    """``previewButton`` and the display of its result."""

    def __init__(self, ui, logic) -> None:
        self.ui = ui
        self.logic = logic
        self._parameterNode = None
        self.ui.previewButton.connect("clicked(bool)", self.onPreviewButton)

    def setParameterNode(self, parameterNode) -> None:
        self._parameterNode = parameterNode
        self.updateFromParameterNode()

    def updateFromParameterNode(self) -> None:
        hasInput = bool(self._parameterNode and self._parameterNode.inputVolume)
        self.ui.previewButton.enabled = hasInput
        self.ui.previewButton.toolTip = (
            _("Run the recipe on the volume (and label) into preview nodes, shown next to the original.")
            if hasInput
            else _("Select an input volume")
        )

    def onPreviewButton(self) -> None:
        p = self._parameterNode
        nodes = runWithProgress(
            _("MedPrep: preview"),
            lambda progressCallback: self.logic.preview(
                p.inputVolume,
                RecipeFields.fromJson(p.recipeJson),
                labelVolume=p.labelVolume,
                transformPolicy=p.transformPolicy,
                progressCallback=progressCallback,
                labelMap=pathOrNone(p.labelMapPath),
            ),
            self.ui.statusLabel,
        )
        if nodes is None:
            return
        suitWindow(nodes.image)
        showSideBySide(p.inputVolume, p.labelVolume, nodes.image, nodes.label)
        self.ui.statusLabel.text = _(
            "Preview '{name}' beside '{input}' (its recipe and provenance are in the node's MedPrep.provenance attribute)."
        ).format(name=nodes.image.GetName(), input=p.inputVolume.GetName())
