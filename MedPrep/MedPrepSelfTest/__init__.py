"""The MedPrep module's self-test cases, one file per concern (``*TestCase.py``), Qt-free.

``MedPrepTest`` in ``MedPrep.py`` runs them all (:func:`runCases`) against ``MedPrepLogic`` —
inside Slicer (Reload and Test, ctest) and under the ``slicer-core`` wheel in pytest. Each case
class derives from :class:`MedPrepTestCase`: ``setUp`` clears ``slicer.mrmlScene``, the data are
built from numbers (``MedPrepCore.SampleVolumes``), and the logic is called directly. The cases
import only ``slicer`` MRML classes and array helpers, VTK, numpy, ``MedPrepCore`` and
``MedPrepLib`` — no qt — so they import without the application. A new ``*TestCase.py`` file in
this folder is run without being registered anywhere.
"""

from __future__ import annotations

import importlib
import inspect
import pathlib
import unittest


class MedPrepTestCase(unittest.TestCase):
    """Base of the self-test cases: the logic class under test, a cleared scene, ``delayDisplay``."""

    def __init__(self, methodName: str = "runTest", logicClass=None, delayDisplay=None) -> None:
        super().__init__(methodName)
        self.logicClass = logicClass
        self._delayDisplay = delayDisplay or print

    def setUp(self) -> None:
        import slicer

        slicer.mrmlScene.Clear()

    def delayDisplay(self, message: str) -> None:
        self._delayDisplay(message)

    def logic(self):
        """A new instance of the logic under test (``MedPrepLogic``)."""
        if self.logicClass is None:
            raise RuntimeError(f"{type(self).__name__} needs the logic class: run it through runCases(MedPrepLogic)")
        return self.logicClass()

    def obliqueVolumeNode(self, volume, name: str = "MedPrepTest oblique"):
        """``volume`` as a new volume node of ``slicer.mrmlScene``."""
        import slicer
        from MedPrepCore import VolumeNodes

        return VolumeNodes.nodeFromVolume(slicer.mrmlScene, volume, name)


def caseModules() -> list[str]:
    """Module names of every ``*TestCase.py`` in this folder, sorted."""
    folder = pathlib.Path(__file__).resolve().parent
    return sorted(f"{__name__}.{path.stem}" for path in folder.glob("*TestCase.py"))


def caseClasses() -> list[type[MedPrepTestCase]]:
    """The :class:`MedPrepTestCase` subclasses defined in the case files."""
    classes = []
    for moduleName in caseModules():
        module = importlib.import_module(moduleName)
        classes += [
            cls
            for _, cls in inspect.getmembers(module, inspect.isclass)
            if issubclass(cls, MedPrepTestCase) and cls.__module__ == module.__name__
        ]
    return classes


def suite(logicClass, delayDisplay=None) -> unittest.TestSuite:
    """Every ``test_*`` method of every case class, each on its own instance."""
    tests = unittest.TestSuite()
    loader = unittest.TestLoader()
    for cls in caseClasses():
        for methodName in loader.getTestCaseNames(cls):
            tests.addTest(cls(methodName, logicClass, delayDisplay))
    return tests


def runCases(logicClass, delayDisplay=None) -> unittest.TestResult:
    """Run every case against ``logicClass``; raise ``AssertionError`` naming each failure.

    Returns the result when all passed. Running nothing is a failure too (a case file that no
    longer defines its class must not make the self-test pass silently).
    """
    tests = suite(logicClass, delayDisplay)
    if tests.countTestCases() == 0:
        raise AssertionError("MedPrep self-test: no test cases found in " + ", ".join(caseModules()))
    result = unittest.TestResult()
    tests.run(result)
    problems = result.failures + result.errors
    if problems:
        details = "\n\n".join(f"{test.id()}:\n{trace}" for test, trace in problems)
        raise AssertionError(f"MedPrep self-test: {len(problems)} of {result.testsRun} failed\n\n{details}")
    return result
