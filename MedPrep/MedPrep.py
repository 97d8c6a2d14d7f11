"""MedPrep: clinical images to reproducible deep-learning datasets — the 3D Slicer module.

This file only declares the module. Next to it: the panel ``MedPrepGui`` (Qt side), the Qt-free
``MedPrepCore`` over the ``MedPrepLib`` engine, and the self-test cases of ``MedPrepSelfTest``.
"""

import os
import sys

import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import *


def _makeMedPrepImportable() -> None:
    """Put this folder (its packages) on sys.path and, unbuilt, the checkout root (``MedPrepLib``; CMake puts it here)."""
    moduleDir = os.path.dirname(os.path.abspath(__file__))
    if moduleDir not in sys.path:
        sys.path.append(moduleDir)
    checkoutRoot = os.path.dirname(moduleDir)
    if not os.path.isdir(os.path.join(moduleDir, "MedPrepLib")) and checkoutRoot not in sys.path:
        if os.path.isfile(os.path.join(checkoutRoot, "MedPrepLib", "__init__.py")):
            sys.path.insert(0, checkoutRoot)


_makeMedPrepImportable()

from MedPrepCore.ModuleLogic import ModuleLogic  # noqa: E402  (after the path set-up)
from MedPrepGui.ParameterNode import MedPrepParameterNode  # noqa: E402
from MedPrepGui.Resources import resourcePath, setModuleIcon  # noqa: E402, F401  (resourcePath: console use)


class MedPrep(ScriptedLoadableModule):
    """Module description shown in Slicer's module list and help panel."""

    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("MedPrep")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Informatics")]
        self.parent.contributors = ["MedPrep developers"]
        self.parent.helpText = _(
            "Turn clinical images into clean, reproducible deep-learning datasets, with exact geometry. "
            "Tick DICOM series or scene volumes with their labels, build a recipe (windowing, normalization, "
            "resampling, reorientation, cropping...), preview it beside the original, and export an nnU-Net, "
            "Decathlon, NIfTI or NumPy dataset with splits, provenance and a QC report."
        )
        self.parent.acknowledgementText = _(
            "MedPrep builds on 3D Slicer, SimpleITK, pydicom, numpy and scipy. "
            "The module layout follows Slicer's scripted-module template."
        )
        setModuleIcon(self.parent)


class MedPrepWidget(ScriptedLoadableModuleWidget):
    """Embeds the panel (``MedPrepGui.Panel.MedPrepPanel``), which holds all the widget code."""

    logic = panel = None  # made in setup()

    def setup(self) -> None:
        ScriptedLoadableModuleWidget.setup(self)
        from MedPrepGui.Panel import MedPrepPanel

        self.logic = MedPrepLogic()
        self.panel = MedPrepPanel(self.logic)
        self.layout.addWidget(self.panel.uiWidget)

    def cleanup(self) -> None:
        if self.panel:
            self.panel.cleanup()

    def enter(self) -> None:
        self.panel.enter()

    def exit(self) -> None:
        self.panel.exit()


class MedPrepLogic(ScriptedLoadableModuleLogic, ModuleLogic):
    """What the module does without the panel: ``MedPrepCore.ModuleLogic`` on slicer.mrmlScene, plus the parameter node."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleLogic.__init__(self, parent)
        ModuleLogic.__init__(self, slicer.mrmlScene)

    def getParameterNode(self):
        return MedPrepParameterNode(super().getParameterNode())


class MedPrepTest(ScriptedLoadableModuleTest):
    """Self-test run by Slicer (Reload and Test, or ctest): the cases of ``MedPrepSelfTest``."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        from MedPrepSelfTest import runCases

        self.setUp()
        runCases(MedPrepLogic, self.delayDisplay)
