"""Self-test: an oblique, anisotropic volume through the logic and back, and the transform policy."""

from __future__ import annotations

from MedPrepSelfTest import MedPrepTestCase


class VolumeRoundTripTestCase(MedPrepTestCase):
    def test_ObliqueVolumeRoundTrip(self):
        import numpy as np
        import slicer
        import vtk
        from MedPrepCore import SampleVolumes

        from MedPrepLib.errors import InputError

        self.delayDisplay("Round trip of an oblique, anisotropic volume")
        volume = SampleVolumes.obliqueVolume(np.int16)
        inputVolume = self.obliqueVolumeNode(volume)
        logic = self.logic()

        outputVolume = logic.process(inputVolume)
        self.assertIsNot(outputVolume, inputVolume)
        np.testing.assert_array_equal(slicer.util.arrayFromVolume(outputVolume), volume.array)
        ijkToRAS = vtk.vtkMatrix4x4()
        outputVolume.GetIJKToRASMatrix(ijkToRAS)
        np.testing.assert_allclose(slicer.util.arrayFromVTKMatrix(ijkToRAS), volume.geometry.ijk_to_ras(), atol=1e-9)
        self.assertEqual(logic.volume(outputVolume).geometry, volume.geometry)

        # A volume under a transform is refused unless asked to harden it
        transform = slicer.mrmlScene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
        inputVolume.SetAndObserveTransformNodeID(transform.GetID())
        with self.assertRaises(InputError):
            logic.process(inputVolume)
        hardened = logic.volume(inputVolume, transformPolicy="harden")  # identity transform
        self.assertTrue(hardened.geometry.isclose(volume.geometry, atol_mm=1e-9, atol_dir=1e-12))
        self.delayDisplay("Test passed")
