"""Stand-ins for the parts of 3D Slicer that need the running application (Qt), over slicer-core.

The ``slicer-core`` wheel has the real MRML classes, VTK and ``slicer.util`` but no application:
no ``slicer.ScriptedLoadableModule`` (it imports qt), no ``slicer.parameterNodeWrapper``, no
``slicer.i18n``, no ``slicer.app`` / ``slicer.mrmlScene``, and ``slicer.util.loadVolume`` needs
the application's IO manager. With these minimal stand-ins pytest can import ``MedPrep.py`` and
run its logic, its self-test and the batch smoke script on a real MRML scene. Only what MedPrep
uses is stood in; everything MRML is the real thing.
"""

from __future__ import annotations

import types
import unittest
from pathlib import Path


def modules() -> dict[str, types.ModuleType]:
    """{module name: stand-in} for the application-only modules MedPrep.py imports."""
    slm = types.ModuleType("slicer.ScriptedLoadableModule")

    class ScriptedLoadableModule:
        def __init__(self, parent):
            self.parent = parent

    class ScriptedLoadableModuleWidget:
        def __init__(self, parent=None):
            self.parent = parent

    class ScriptedLoadableModuleLogic:
        def __init__(self, parent=None):
            super().__init__()  # as Slicer's does: a mixin's __init__ runs without arguments

    class ScriptedLoadableModuleTest(unittest.TestCase):
        def delayDisplay(self, message, msec=None):
            print(message)

    classes = (
        ScriptedLoadableModule,
        ScriptedLoadableModuleWidget,
        ScriptedLoadableModuleLogic,
        ScriptedLoadableModuleTest,
    )
    for cls in classes:
        setattr(slm, cls.__name__, cls)
    slm.__all__ = [cls.__name__ for cls in classes]

    wrapper = types.ModuleType("slicer.parameterNodeWrapper")

    class Choice:
        def __init__(self, choices):
            self.choices = list(choices)

    class WithinRange:  # a validator of Slicer's wrapper: the value between minimum and maximum
        def __init__(self, minimum, maximum):
            self.minimum, self.maximum = minimum, maximum

    wrapper.Choice = Choice
    wrapper.WithinRange = WithinRange
    wrapper.parameterNodeWrapper = lambda cls: cls

    i18n = types.ModuleType("slicer.i18n")
    i18n.tr = lambda text: text
    i18n.translate = lambda context, text: text
    return {"slicer.ScriptedLoadableModule": slm, "slicer.parameterNodeWrapper": wrapper, "slicer.i18n": i18n}


def application(temporaryPath: str) -> types.SimpleNamespace:
    """``slicer.app``: a temporary path, and ``exit(status)`` ending the process with that status."""

    def exit(status=0):
        raise SystemExit(status)

    options = types.SimpleNamespace(runPythonAndExit=True)
    return types.SimpleNamespace(temporaryPath=temporaryPath, exit=exit, commandOptions=lambda: options)


def loadVolume(scene):
    """``slicer.util.loadVolume`` through Slicer's archetype storage node (what it uses inside)."""

    def load(path, properties=None):
        node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", Path(path).name.split(".")[0])
        storage = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
        storage.SetFileName(str(path))
        if storage.ReadData(node) != 1:
            raise RuntimeError(f"could not load {path}")
        node.SetAndObserveStorageNodeID(storage.GetID())
        return node

    return load


def loadScene(scene, temporaryPath: str):
    """``slicer.util.loadScene`` as Slicer's scene readers do it: a ``.mrb`` through
    ``vtkMRMLScene.ReadFromMRB`` (qSlicerSceneBundleReader), a ``.mrml`` through ``SetURL`` and
    ``Import`` (or ``Connect`` with ``{"clear": True}``). Reading a bundle needs the data IO
    manager's remote cache folder, which the application sets up; here it is in ``temporaryPath``."""
    import slicer

    def load(path, properties=None):
        properties = dict(properties or {})
        clear = bool(properties.get("clear", False))
        if scene.GetDataIOManager() is None:
            cacheFolder = Path(temporaryPath) / "RemoteIO"  # the application's: <temporary path>/RemoteIO
            cacheFolder.mkdir(parents=True, exist_ok=True)
            (cacheFolder / ".slicer-cache").touch()  # the sentinel Slicer writes into its cache folder
            cache = slicer.vtkCacheManager()
            cache.SetRemoteCacheDirectory(str(cacheFolder))
            io = slicer.vtkDataIOManager()
            io.SetCacheManager(cache)
            scene.SetCacheManager(cache)
            scene.SetDataIOManager(io)
            scene._medprepDataIO = (cache, io)  # kept alive as long as the scene
        messages = slicer.vtkMRMLMessageCollection()
        if str(path).lower().endswith((".mrb", ".zip")):
            ok = scene.ReadFromMRB(str(path), clear, messages)
        else:
            scene.SetURL(str(path))
            ok = scene.Connect(messages) if clear else scene.Import(messages)
        if not ok:
            text = f"Failed to load node from file: {path}"
            if messages.GetNumberOfMessages() > 0:
                text += "\n" + messages.GetAllMessagesAsString()
            raise RuntimeError(text)
        return None

    return load


def dicomDatabase(databaseDirectory: str) -> types.SimpleNamespace:
    """``slicer.dicomDatabase``: only the folder of the database (what MedPrep reads of it)."""
    return types.SimpleNamespace(databaseDirectory=databaseDirectory)


def newScene():
    """A real MRML scene with Slicer's default colour tables (label map display needs them)."""
    import slicer

    scene = slicer.vtkMRMLScene()
    colorLogic = slicer.vtkMRMLColorLogic()
    colorLogic.SetMRMLScene(scene)
    scene._medprepColorLogic = colorLogic  # keep the logic alive as long as the scene
    return scene


def install(temporaryPath: str):
    """Install every stand-in in this process (for a subprocess running a Slicer script); returns the scene."""
    import sys

    import slicer

    sys.modules.update(modules())
    scene = newScene()
    slicer.mrmlScene = scene
    slicer.app = application(temporaryPath)
    slicer.util.loadVolume = loadVolume(scene)
    slicer.util.loadScene = loadScene(scene, temporaryPath)
    return scene
