"""MedPrep: clinical images to reproducible deep-learning datasets — the 3D Slicer module.

Thin by design: the panel (``MedPrepWidget``) and a logic shell (``MedPrepLogic``) over the
Qt-free ``MedPrepCore`` package next to this file and the pure-Python ``MedPrepLib`` library.
"""

import logging
import os
import pathlib
import sys
from typing import Annotated

import slicer
import vtk
from slicer import vtkMRMLScalarVolumeNode
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import Choice, parameterNodeWrapper
from slicer.ScriptedLoadableModule import *
from slicer.util import VTKObservationMixin

MODULE_DIR = os.path.dirname(os.path.abspath(__file__))


def _makeMedPrepImportable() -> None:
    """Let ``import MedPrepCore`` and ``import MedPrepLib`` work from an unbuilt checkout too.

    Built or installed, CMake compiles ``MedPrepLib`` next to this file. In a source checkout
    whose ``MedPrep/`` folder was added to Slicer's module paths, the library sits one level up,
    in the checkout root, which is then put first on ``sys.path``.
    """
    if MODULE_DIR not in sys.path:
        sys.path.append(MODULE_DIR)
    if os.path.isdir(os.path.join(MODULE_DIR, "MedPrepLib")):
        return
    checkoutRoot = os.path.dirname(MODULE_DIR)
    if os.path.isfile(os.path.join(checkoutRoot, "MedPrepLib", "__init__.py")) and checkoutRoot not in sys.path:
        sys.path.insert(0, checkoutRoot)


_makeMedPrepImportable()


def resourcePath(relativePath: str) -> str:
    """Absolute path of a module resource such as ``"UI/MedPrep.ui"``.

    Built or installed, resources are copied into ``Resources/`` next to this file; in an
    unbuilt checkout they live in the checkout's top-level ``Resources/``.
    """
    for resources in (os.path.join(MODULE_DIR, "Resources"), os.path.join(os.path.dirname(MODULE_DIR), "Resources")):
        candidate = os.path.join(resources, relativePath)
        if os.path.exists(candidate):
            return candidate
    raise FileNotFoundError(f"MedPrep resource '{relativePath}' not found next to {MODULE_DIR}")


#
# MedPrep
#


class MedPrep(ScriptedLoadableModule):
    """Module description shown in Slicer's module list and help panel."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("MedPrep")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Informatics")]
        self.parent.dependencies = []
        self.parent.contributors = ["MedPrep developers"]
        self.parent.helpText = _(
            "Turn clinical images into clean, reproducible deep-learning data, with exact geometry. "
            "Run a volume through a MedPrep preprocessing recipe (a JSON file: windowing, normalization, "
            "resampling, reorientation, cropping...) into a new volume that records what was done, or "
            "export it to NIfTI, NRRD or MetaImage with its grid preserved. DICOM series discovery follows."
        )
        self.parent.acknowledgementText = _(
            "MedPrep builds on 3D Slicer, SimpleITK, pydicom, numpy and scipy. "
            "The module layout follows Slicer's scripted-module template."
        )
        try:  # the built module finds its icon by itself; an unbuilt checkout needs telling
            import qt

            self.parent.icon = qt.QIcon(resourcePath("Icons/MedPrep.png"))
        except (ImportError, FileNotFoundError):
            logging.debug("MedPrep: module icon not found")


#
# MedPrepParameterNode
#


@parameterNodeWrapper
class MedPrepParameterNode:
    """The panel's state, saved with the scene.

    inputVolume - the volume to process or export (scalar, label map or vector volume).
    recipePath - a MedPrep recipe JSON file run by Apply; unset (".") copies the volume as is.
    transformPolicy - a volume under a transform: "refuse" it, or "harden" a linear transform
        into the output grid (the input node is not changed).
    outputFolder - where Export writes the file.
    outputFormat - file ending of the exported file.
    overwrite - whether Export may replace an existing file.
    """

    inputVolume: vtkMRMLScalarVolumeNode
    recipePath: pathlib.Path
    transformPolicy: Annotated[str, Choice(["refuse", "harden"])] = "refuse"
    outputFolder: pathlib.Path
    outputFormat: Annotated[str, Choice([".nii.gz", ".nrrd", ".mha"])] = ".nii.gz"
    overwrite: bool = False


#
# MedPrepWidget
#


class MedPrepWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """The panel: connects the .ui to the parameter node and calls the logic."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)  # needed for parameter node observation
        self.logic = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)

        uiWidget = slicer.util.loadUI(resourcePath("UI/MedPrep.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = MedPrepLogic()

        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)

        self.ui.applyButton.connect("clicked(bool)", self.onApplyButton)
        self.ui.exportButton.connect("clicked(bool)", self.onExportButton)

        self.initializeParameterNode()

    def cleanup(self) -> None:
        self.removeObservers()

    def enter(self) -> None:
        self.initializeParameterNode()

    def exit(self) -> None:
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
            self.removeObserver(self._parameterNode, vtk.vtkCommand.ModifiedEvent, self._updateButtons)

    def onSceneStartClose(self, caller, event) -> None:
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event) -> None:
        if self.parent.isEntered:
            self.initializeParameterNode()

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


#
# MedPrepLogic
#


class MedPrepLogic(ScriptedLoadableModuleLogic):
    """What the module does, callable without the panel (Python console, batch scripts, tests).

    Methods take nodes and values explicitly, raise MedPrep errors
    (``MedPrepLib.errors.MedPrepError``) on bad input and report through
    ``progressCallback(label, fraction) -> True to cancel`` (pass None in batch use).
    """

    def getParameterNode(self):
        return MedPrepParameterNode(super().getParameterNode())

    def volume(self, inputVolume, transformPolicy: str = "refuse"):
        """The node's voxels and LPS grid as a ``MedPrepLib.Volume`` (array (z, y, x))."""
        from MedPrepCore import VolumeNodes

        return VolumeNodes.volumeFromNode(inputVolume, transformPolicy=transformPolicy)

    def loadDicom(self, source, stackId=None, geometryPolicy: str = "resample", progressCallback=None):
        """Load a DICOM image stack into a new volume node (returned) with MedPrep's geometry rules.

        ``source``: a folder of DICOM files, or a Slicer DICOM database folder (for the
        application's own database: ``slicer.dicomDatabase.databaseDirectory``). ``stackId``: an id
        from ``findDicomStacks`` (needed when the source holds several stacks).
        """
        from MedPrepCore import DicomImport

        return DicomImport.loadStackNode(
            slicer.mrmlScene, source, stackId, geometryPolicy=geometryPolicy, progressCallback=progressCallback
        )

    def findDicomStacks(self, source, progressCallback=None):
        """The image stacks (and skipped files, with reasons) of a DICOM folder or Slicer database."""
        from MedPrepCore import DicomImport

        return DicomImport.findStacks(source, progressCallback)

    def process(
        self, inputVolume, recipe=None, outputName=None, transformPolicy: str = "refuse", progressCallback=None
    ):
        """Run ``inputVolume`` through a MedPrep ``recipe`` into a new volume node (returned).

        ``recipe``: a ``MedPrepLib.recipe.Recipe``, its JSON dict, or a path to a recipe JSON
        file; None (or an unset path) copies the volume unchanged. The recipe run's provenance
        is stored as JSON in the output node's attribute "MedPrep.provenance".
        """
        from MedPrepCore import Processing

        return Processing.processVolumeNode(
            inputVolume,
            recipe,
            outputName=outputName,
            transformPolicy=transformPolicy,
            progressCallback=progressCallback,
        )

    def exportVolume(
        self,
        inputVolume,
        outputFolder,
        outputFormat: str = ".nii.gz",
        overwrite: bool = False,
        transformPolicy: str = "refuse",
        progressCallback=None,
    ) -> pathlib.Path:
        """Write ``inputVolume`` into ``outputFolder`` as ``<volume name><outputFormat>``; returns the path."""
        from MedPrepCore import Processing

        from MedPrepLib.errors import ExportError

        folder = pathlib.Path(outputFolder)
        if str(outputFolder) in ("", ".") or not folder.is_dir():
            raise ExportError("the output folder does not exist", path=folder, hint="choose an existing folder")
        if inputVolume is None:
            raise ExportError("no input volume given", hint="select a volume")
        outputPath = folder / Processing.exportFileName(inputVolume.GetName(), outputFormat)
        return Processing.exportVolumeNode(
            inputVolume,
            outputPath,
            overwrite=overwrite,
            transformPolicy=transformPolicy,
            progressCallback=progressCallback,
        )


#
# MedPrepTest
#


class MedPrepTest(ScriptedLoadableModuleTest):
    """Self-test run by Slicer (Reload and Test, or ctest): builds its data, calls the logic."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        self.setUp()
        self.test_ObliqueVolumeRoundTrip()
        self.setUp()
        self.test_RecipeKeepsPhysicalPositions()
        self.setUp()
        self.test_ExportReadsBackWithSameGeometry()

    def _obliqueVolumeNode(self, volume):
        from MedPrepCore import VolumeNodes

        return VolumeNodes.nodeFromVolume(slicer.mrmlScene, volume, "MedPrepTest oblique")

    def test_ObliqueVolumeRoundTrip(self):
        import numpy as np
        from MedPrepCore import SampleVolumes

        self.delayDisplay("Round trip of an oblique, anisotropic volume")
        volume = SampleVolumes.obliqueVolume(np.int16)
        inputVolume = self._obliqueVolumeNode(volume)
        logic = MedPrepLogic()

        outputVolume = logic.process(inputVolume)
        self.assertIsNot(outputVolume, inputVolume)
        np.testing.assert_array_equal(slicer.util.arrayFromVolume(outputVolume), volume.array)
        ijkToRAS = vtk.vtkMatrix4x4()
        outputVolume.GetIJKToRASMatrix(ijkToRAS)
        np.testing.assert_allclose(slicer.util.arrayFromVTKMatrix(ijkToRAS), volume.geometry.ijk_to_ras(), atol=1e-9)
        self.assertEqual(logic.volume(outputVolume).geometry, volume.geometry)

        # A volume under a transform is refused unless asked to harden it
        from MedPrepLib.errors import InputError

        transform = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
        inputVolume.SetAndObserveTransformNodeID(transform.GetID())
        with self.assertRaises(InputError):
            logic.process(inputVolume)
        hardened = logic.volume(inputVolume, transformPolicy="harden")  # identity transform
        self.assertTrue(hardened.geometry.isclose(volume.geometry, atol_mm=1e-9, atol_dir=1e-12))
        self.delayDisplay("Test passed")

    def test_RecipeKeepsPhysicalPositions(self):
        import json

        import numpy as np
        from MedPrepCore import SampleVolumes

        self.delayDisplay("Recipe: reorient to RAS, then clip and scale")
        volume = SampleVolumes.obliqueVolume(np.int16)
        inputVolume = self._obliqueVolumeNode(volume)
        recipe = {
            "version": 1,
            "steps": [{"op": "reorient", "to": "RAS"}, {"op": "clip_scale", "min": -1000, "max": 400}],
        }
        outputVolume = MedPrepLogic().process(inputVolume, recipe)
        output = MedPrepLogic().volume(outputVolume)
        self.assertEqual(output.geometry.orientation, "RAS")
        # the voxel at the physical centre of input voxel (i, j, k) = (6, 0, 4) is the same voxel
        point = volume.geometry.index_to_physical([6, 0, 4])
        i, j, k = np.round(output.geometry.physical_to_index(point)).astype(int)
        self.assertAlmostEqual(float(output.array[k, j, i]), (volume.array[4, 0, 6] + 1000) / 1400, places=5)
        provenance = json.loads(outputVolume.GetAttribute("MedPrep.provenance"))
        self.assertEqual([step["op"] for step in provenance["steps"]], ["reorient", "clip_scale"])
        self.delayDisplay("Test passed")

    def test_ExportReadsBackWithSameGeometry(self):
        import tempfile

        import numpy as np
        from MedPrepCore import SampleVolumes

        from MedPrepLib.imageio import read_image

        self.delayDisplay("Export to NRRD and read back")
        volume = SampleVolumes.obliqueVolume(np.float32)
        inputVolume = self._obliqueVolumeNode(volume)
        with tempfile.TemporaryDirectory(dir=slicer.app.temporaryPath) as folder:
            path = MedPrepLogic().exportVolume(inputVolume, folder, outputFormat=".nrrd")
            back = read_image(path)
            np.testing.assert_array_equal(back.array, volume.array)
            self.assertTrue(back.geometry.isclose(volume.geometry, atol_mm=1e-6))
            loaded = slicer.util.loadVolume(str(path))
            np.testing.assert_array_equal(slicer.util.arrayFromVolume(loaded), volume.array)
        self.delayDisplay("Test passed")
