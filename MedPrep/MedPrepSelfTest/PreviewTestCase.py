"""Self-test: a recipe made by the panel's form previewed on a volume and its label; a new run replaces the nodes."""

from __future__ import annotations

from MedPrepSelfTest import MedPrepTestCase


class PreviewTestCase(MedPrepTestCase):
    def test_PreviewMakesThenReplacesItsNodes(self):
        import json

        import numpy as np
        import slicer
        from MedPrepCore import RecipeFields, SampleVolumes, VolumeNodes

        self.delayDisplay("Preview: reorient, resample and window a volume and its label")
        size = (12, 10, 8)
        volume = SampleVolumes.obliqueVolume(np.int16, size)
        inputVolume = self.obliqueVolumeNode(volume)
        labelVolume = VolumeNodes.nodeFromVolume(
            slicer.mrmlScene, SampleVolumes.obliqueLabelMap(size), "MedPrepTest label", labelmap=True
        )
        recipe = RecipeFields.recipeFromValues(
            {"reorient": {"to": "RAS"}, "resample": {"spacing": [0.5, 0.5, 1.25]}, "window": {"preset": "abdomen"}}
        )
        self.assertEqual(RecipeFields.recipeProblem(recipe), "")
        logic = self.logic()
        nodes = logic.preview(inputVolume, recipe, labelVolume=labelVolume)
        image, label = logic.volume(nodes.image), logic.volume(nodes.label)
        self.assertEqual(image.geometry.orientation, "RAS")
        np.testing.assert_allclose(image.spacing, (0.5, 0.5, 1.25))
        self.assertTrue(0.0 <= float(image.array.min()) and float(image.array.max()) <= 1.0)  # the window's [0, 1]
        self.assertTrue(nodes.label.IsA("vtkMRMLLabelMapVolumeNode"))
        self.assertEqual(label.geometry, image.geometry)  # the label on the preview's grid
        self.assertTrue(set(np.unique(label.array)) <= {0, 1, 2, 3})
        provenance = json.loads(nodes.image.GetAttribute("MedPrep.provenance"))
        self.assertEqual([step["op"] for step in provenance["steps"]], ["reorient", "resample", "window"])

        self.delayDisplay("Preview again: the same nodes, the new result; the input unchanged")
        volumeCount = slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")
        again = logic.preview(inputVolume, {"version": 1, "steps": [{"op": "window", "preset": "lung"}]})
        self.assertEqual(again.image.GetID(), nodes.image.GetID())
        self.assertIsNone(again.label)  # no label asked for: the earlier label preview is gone
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode"), volumeCount - 1)
        self.assertEqual(logic.volume(again.image).geometry, volume.geometry)
        np.testing.assert_array_equal(logic.volume(inputVolume).array, volume.array)
        self.delayDisplay("Test passed")
