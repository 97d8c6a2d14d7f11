"""Self-test: the panel's state (the parameter node) survives a scene save and load.

Runs inside Slicer, where ``MedPrepLogic.getParameterNode()`` is Slicer's real
``parameterNodeWrapper`` over the scene's scripted-module node: every kind of field (text, path,
number, choice, list of UIDs, node references, a list of nodes) is set, the scene is written as
a ``.mrml`` file, the scene is cleared and the file loaded again, and each field must come back as
set, node references pointing at the reloaded nodes. Without the application (pytest on the
slicer-core wheel, whose stand-in logic has no parameter node) the case is skipped; there the
field types are checked against the wrapper's serialisers instead (Testing/test_slicer_parameter_node.py).
"""

from __future__ import annotations

from MedPrepSelfTest import MedPrepTestCase


class ParameterNodeTestCase(MedPrepTestCase):
    def test_ParameterNodeSurvivesSceneSaveAndLoad(self):
        import pathlib
        import tempfile

        import numpy as np
        import slicer
        from MedPrepCore import SampleVolumes

        logic = self.logic()
        try:
            parameters = logic.getParameterNode()
        except AttributeError:
            self.skipTest("needs Slicer's parameter node wrapper (the application)")
        if not hasattr(parameters, "connectGui"):
            self.skipTest("needs Slicer's parameter node wrapper (the application)")

        self.delayDisplay("Setting every kind of parameter-node field")
        image = self.obliqueVolumeNode(SampleVolumes.obliqueVolume(np.int16), "ParameterNode CT")
        label = self.obliqueVolumeNode(SampleVolumes.obliqueVolume(np.int16), "ParameterNode second CT")
        with tempfile.TemporaryDirectory(dir=slicer.app.temporaryPath) as folder:
            wanted = {
                "inputSource": "scene",
                "dicomSeriesUids": ["1.2.826.0.1.3680043.8.498.1", "1.2.826.0.1.3680043.8.498.2"],
                "exportFormat": "msd",
                "outputFolder": pathlib.Path(folder),
                "datasetId": 512,
                "datasetName": "RoundTrip",
                "folds": 3,
                "testFraction": 0.25,
                "seed": 7,
                "qc": False,
                "overwrite": True,
            }
            for name, value in wanted.items():
                setattr(parameters, name, value)
            parameters.inputVolume = image
            parameters.sceneVolumes = [image, label]
            ids = (image.GetID(), label.GetID())

            path = pathlib.Path(folder) / "state.mrml"
            slicer.mrmlScene.SetURL(str(path))
            self.assertTrue(slicer.mrmlScene.Commit(), "the scene could not be written")
            self.delayDisplay("Scene written; clearing it and loading it again")
            slicer.mrmlScene.Clear(0)
            slicer.util.loadScene(str(path))

            again = self.logic().getParameterNode()
            for name, value in wanted.items():
                got = getattr(again, name)
                got = list(got) if isinstance(value, list) else got  # the wrapper gives an observed list
                self.assertEqual(got, value, f"parameter {name!r} after a scene save and load")
            self.assertIsNotNone(again.inputVolume)
            self.assertEqual(again.inputVolume.GetID(), ids[0])
            self.assertEqual(tuple(node.GetID() for node in again.sceneVolumes), ids)
        self.delayDisplay("Test passed")
