"""Self-test: a volume exported by the logic reads back, in MedPrepLib and in Slicer, on the same grid."""

from __future__ import annotations

from MedPrepSelfTest import MedPrepTestCase


class ExportTestCase(MedPrepTestCase):
    def test_ExportReadsBackWithSameGeometry(self):
        import tempfile

        import numpy as np
        import slicer
        from MedPrepCore import SampleVolumes

        from MedPrepLib.imageio import read_image

        self.delayDisplay("Export to NRRD and read back")
        volume = SampleVolumes.obliqueVolume(np.float32)
        inputVolume = self.obliqueVolumeNode(volume)
        with tempfile.TemporaryDirectory(dir=slicer.app.temporaryPath) as folder:
            path = self.logic().exportVolume(inputVolume, folder, outputFormat=".nrrd")
            back = read_image(path)
            np.testing.assert_array_equal(back.array, volume.array)
            self.assertTrue(back.geometry.isclose(volume.geometry, atol_mm=1e-6))
            loaded = slicer.util.loadVolume(str(path))
            np.testing.assert_array_equal(slicer.util.arrayFromVolume(loaded), volume.array)
        self.delayDisplay("Test passed")
