"""``MedPrepPanel``: the MedPrep module's panel — the .ui, its parameter node and its sections.

The module's widget (``MedPrepWidget`` in ``MedPrep.py``) only embeds this panel and forwards
``enter``/``exit``/``cleanup`` to it. The panel loads ``Resources/UI/MedPrep.ui``, binds its
widgets to the parameter node (``connectGui``) and hands the rest to one object per section,
each in its own file: Inputs (:mod:`.DicomBrowser`, :mod:`.ScenePairs`), Recipe
(:mod:`.RecipeEditor`), Preview (:mod:`.PreviewSection`) and Export (:mod:`.ExportSection`).
None of them does the work: they read the parameter node, call the logic with its values as
explicit arguments (behind :func:`.Progress.runWithProgress`) and show what comes back.
"""

from __future__ import annotations

import slicer
import vtk
from slicer.util import VTKObservationMixin

from .DicomBrowser import DicomBrowser
from .ExportSection import ExportSection
from .PreviewSection import PreviewSection
from .RecipeEditor import RecipeEditor
from .Resources import resourcePath
from .ScenePairs import ScenePairs


class MedPrepPanel(VTKObservationMixin):
    """The panel's widgets (``uiWidget``, to be put in the module's layout) and their behaviour.

    ``logic`` is the module's ``MedPrepLogic``; the sections call ``dicomDatabaseTree``,
    ``loadDicom``, ``preview`` and ``exportDataset`` of it.
    """

    def __init__(self, logic) -> None:
        VTKObservationMixin.__init__(self)  # needed for parameter node observation
        self.logic = logic
        self._parameterNode = None
        self._parameterNodeGuiTag = None
        self._entered = False

        self.uiWidget = slicer.util.loadUI(resourcePath("UI/MedPrep.ui"))
        self.ui = slicer.util.childWidgetVariables(self.uiWidget)
        self.uiWidget.setMRMLScene(slicer.mrmlScene)
        self.sections = [
            DicomBrowser(self.ui, logic),
            ScenePairs(self.ui),
            RecipeEditor(self.ui),
            PreviewSection(self.ui, logic),
            ExportSection(self.ui, logic),
        ]

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndImportEvent, self.onSceneEndImport)
        self.initializeParameterNode()

    # -- module life cycle (forwarded by MedPrepWidget) -------------------------------------------

    def cleanup(self) -> None:
        self.removeObservers()

    def enter(self) -> None:
        self._entered = True
        self.initializeParameterNode()

    def exit(self) -> None:
        self._entered = False
        self.setParameterNode(None)

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self._entered:
            self.initializeParameterNode()

    def onSceneEndImport(self, caller, event) -> None:
        """A loaded scene brings its parameter node: show its state."""
        if self._entered:
            self.initializeParameterNode()

    # -- parameter node ------------------------------------------------------------------------------

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            firstVolumeNode = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if firstVolumeNode and not firstVolumeNode.IsA("vtkMRMLLabelMapVolumeNode"):
                self._parameterNode.inputVolume = firstVolumeNode

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateSections)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            # Widgets in the .ui carry a "SlicerParameterName" property naming their field.
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateSections)
        for section in self.sections:
            section.setParameterNode(self._parameterNode)

    def _updateSections(self, caller=None, event=None) -> None:
        for section in self.sections:
            section.updateFromParameterNode()
