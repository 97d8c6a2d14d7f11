"""MedPrep: clinical images to reproducible deep-learning datasets — the 3D Slicer module.

The module file only declares the module. The panel is ``MedPrepGui`` (Qt side), the work is
done by the Qt-free ``MedPrepCore`` over the ``MedPrepLib`` engine, and the self-test cases are
the ``*TestCase.py`` files of ``MedPrepSelfTest``; all three packages sit next to this file.
"""

import logging
import os
import sys

import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.ScriptedLoadableModule import *


def _makeMedPrepImportable() -> None:
    """Put this folder on ``sys.path`` (its packages) and, in an unbuilt checkout, the checkout root
    (``MedPrepLib``; built or installed, CMake compiles it next to this file)."""
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
from MedPrepGui.Resources import resourcePath  # noqa: E402


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


class MedPrepWidget(ScriptedLoadableModuleWidget):
    """Embeds the panel (``MedPrepGui.Panel.MedPrepPanel``), which holds all the widget code."""

    def __init__(self, parent=None) -> None:
        ScriptedLoadableModuleWidget.__init__(self, parent)
        self.logic = None
        self.panel = None

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
    """What the module does, callable without the panel (Python console, batch scripts, tests).

    ``volume``, ``findDicomStacks``, ``loadDicom``, ``process`` and ``exportVolume`` are the Qt-free
    ``MedPrepCore.ModuleLogic``'s (documented there), on the application's scene; Slicer's base
    class adds the parameter node.
    """

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
