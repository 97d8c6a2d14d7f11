"""Self-test: a recipe run through the logic keeps physical positions and records its provenance."""

from __future__ import annotations

from MedPrepSelfTest import MedPrepTestCase


class RecipeTestCase(MedPrepTestCase):
    def test_RecipeKeepsPhysicalPositions(self):
        import json

        import numpy as np
        from MedPrepCore import SampleVolumes

        self.delayDisplay("Recipe: reorient to RAS, then clip and scale")
        volume = SampleVolumes.obliqueVolume(np.int16)
        inputVolume = self.obliqueVolumeNode(volume)
        recipe = {
            "version": 1,
            "steps": [{"op": "reorient", "to": "RAS"}, {"op": "clip_scale", "min": -1000, "max": 400}],
        }
        outputVolume = self.logic().process(inputVolume, recipe)
        output = self.logic().volume(outputVolume)
        self.assertEqual(output.geometry.orientation, "RAS")
        # the voxel at the physical centre of input voxel (i, j, k) = (6, 0, 4) is the same voxel
        point = volume.geometry.index_to_physical([6, 0, 4])
        i, j, k = np.round(output.geometry.physical_to_index(point)).astype(int)
        self.assertAlmostEqual(float(output.array[k, j, i]), (volume.array[4, 0, 6] + 1000) / 1400, places=5)
        provenance = json.loads(outputVolume.GetAttribute("MedPrep.provenance"))
        self.assertEqual([step["op"] for step in provenance["steps"]], ["reorient", "clip_scale"])
        self.delayDisplay("Test passed")
