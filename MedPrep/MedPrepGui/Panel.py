"""``MedPrepPanel``: the MedPrep module's panel — the .ui, its parameter node, its buttons.

The module's widget (``MedPrepWidget`` in ``MedPrep.py``) only embeds this panel and forwards
``enter``/``exit``/``cleanup`` to it. The panel never does the work itself: it reads the values
of its parameter node, calls the logic with them as explicit arguments, and turns what comes
back into the application's language — a progress dialog with Cancel for
``progressCallback(label, fraction) -> cancelled``, an error dialog for a raised
``MedPrepError``, a status line and the slice views for a result.
"""

from __future__ import annotations

import slicer
import vtk
from slicer.i18n import tr as _
from slicer.util import VTKObservationMixin

from .Resources import resourcePath


class MedPrepPanel(VTKObservationMixin):
    """The panel's widgets (``uiWidget``, to be put in the module's layout) and their behaviour.

    ``logic`` is the module's ``MedPrepLogic``: ``getParameterNode()``, ``process(...)`` and
    ``exportVolume(...)`` are what the panel uses of it.
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

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.exportButton.connect("clicked(bool)", self.onExportButton)

        self.initializeParameterNode()

    # -- module life cycle (forwarded by MedPrepWidget) -------------------------------------------

    def cleanup(self) -> None:
        self.removeObservers()

    def enter(self) -> None:
        self._entered = True
        self.initializeParameterNode()

    def exit(self) -> None:
        self._entered = False
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateButtons)

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self._entered:
            self.initializeParameterNode()

    # -- parameter node ------------------------------------------------------------------------------

    def initializeParameterNode(self) -> None:
        self.setParameterNode(self.logic.getParameterNode())
        if not self._parameterNode.inputVolume:
            firstVolumeNode = slicer.mrmlScene.GetFirstNodeByClass("vtkMRMLScalarVolumeNode")
            if firstVolumeNode:
                self._parameterNode.inputVolume = firstVolumeNode

    def setParameterNode(self, inputParameterNode) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateButtons)
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            # Widgets in the .ui carry a "SlicerParameterName" property naming their field.
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            self.addObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateButtons)
            self._updateButtons()

    def _updateButtons(self, caller=None, event=None) -> None:
        hasInput = bool(self._parameterNode and self._parameterNode.inputVolume)
        hasFolder = bool(self._parameterNode and str(self._parameterNode.outputFolder) not in ("", "."))
        self.ui.applyButton.enabled = hasInput
        self.ui.applyButton.toolTip = (
            _("Run the recipe on the input volume into a new volume (no recipe: a copy)")
            if hasInput
            else _("Select an input volume")
        )
        self.ui.exportButton.enabled = hasInput and hasFolder
        self.ui.exportButton.toolTip = (
            _("Write the input volume to the output folder")
            if hasInput and hasFolder
            else _("Select an input volume and an output folder")
        )

    # -- actions -------------------------------------------------------------------------------------

    def _runWithProgress(self, title: str, work):
        """Run ``work(progressCallback)`` behind a progress dialog with a Cancel button.

        Errors are shown in a dialog (``tryWithErrorDisplay``); a cancel is reported in the
        status line. Returns the result of ``work`` or None.
        """
        from MedPrepLib.errors import CancelledError

        result = None
        with slicer.util.tryWithErrorDisplay(_("MedPrep failed."), waitCursor=True):
            dialog = slicer.util.createProgressDialog(windowTitle=title, labelText=title, maximum=100)

            def progressCallback(label: str, fraction: float) -> bool:
                dialog.labelText = label
                dialog.value = int(round(100 * fraction))
                slicer.app.processEvents()
                return bool(dialog.wasCanceled)

            try:
                result = work(progressCallback)
            except CancelledError:
                self.ui.statusLabel.text = _("Cancelled.")
            finally:
                dialog.close()
        return result

    def onApplyButton(self) -> None:
        parameters = self._parameterNode
        outputVolume = self._runWithProgress(
            _("MedPrep: processing"),
            lambda progressCallback: self.logic.process(
                parameters.inputVolume,
                parameters.recipePath,
                transformPolicy=parameters.transformPolicy,
                progressCallback=progressCallback,
            ),
        )
        if outputVolume is not None:
            if outputVolume.IsA("vtkMRMLLabelMapVolumeNode"):
                slicer.util.setSliceViewerLayers(label=outputVolume)
            else:
                slicer.util.setSliceViewerLayers(background=outputVolume, fit=True)
            self.ui.statusLabel.text = _("Created volume '{name}'.").format(name=outputVolume.GetName())

    def onExportButton(self) -> None:
        parameters = self._parameterNode
        outputPath = self._runWithProgress(
            _("MedPrep: exporting"),
            lambda progressCallback: self.logic.exportVolume(
                parameters.inputVolume,
                parameters.outputFolder,
                outputFormat=parameters.outputFormat,
                overwrite=parameters.overwrite,
                transformPolicy=parameters.transformPolicy,
                progressCallback=progressCallback,
            ),
        )
        if outputPath is not None:
            self.ui.statusLabel.text = _("Wrote {path}").format(path=str(outputPath))
