"""Self-test: scene volumes with their label maps exported as an nnU-Net dataset; a cancelled export resumes."""

from __future__ import annotations

from MedPrepSelfTest import MedPrepTestCase


class DatasetExportTestCase(MedPrepTestCase):
    def test_SceneVolumesExportAndAnExportCancelledResumes(self):
        import json
        import tempfile
        from pathlib import Path

        import numpy as np
        import slicer
        from MedPrepCore import SampleVolumes, VolumeNodes

        from MedPrepLib.errors import CancelledError

        self.delayDisplay("Dataset export of four scene volumes with their label maps")
        size = (12, 10, 8)
        volume, labels = SampleVolumes.obliqueVolume(np.int16, size), SampleVolumes.obliqueLabelMap(size)
        pairs = []
        for n in range(4):  # four cases with their own voxels
            image = VolumeNodes.nodeFromVolume(slicer.mrmlScene, volume.with_array(volume.array + 7 * n), f"CT {n}")
            label = VolumeNodes.nodeFromVolume(slicer.mrmlScene, labels, f"CT {n} label", labelmap=True)
            pairs.append((image, label))
        logic = self.logic()
        with tempfile.TemporaryDirectory(dir=slicer.app.temporaryPath) as folder:
            options = dict(volumePairs=pairs, fmt="nnunet", datasetName="SelfTest", folds=2, qc=False)

            def cancelHalfWay(label: str, fraction: float) -> bool:
                return fraction > 0.5

            with self.assertRaises(CancelledError):
                logic.exportDataset(folder, progressCallback=cancelHalfWay, **options)

            self.delayDisplay("The same export again finishes the dataset")
            report = logic.exportDataset(folder, **options)
            self.assertEqual(report.exit_code, 0)
            self.assertEqual(len(report.exported), 4)
            self.assertEqual(report.quarantined, {})
            dataset = Path(report.dataset_folder)
            self.assertEqual(json.loads((dataset / "dataset.json").read_text())["numTraining"], 4)
            self.assertEqual(len(list((dataset / "labelsTr").glob("*.nii.gz"))), 4)
            self.assertEqual(len(json.loads((dataset / "splits_final.json").read_text())), 2)  # two folds
        self.delayDisplay("Test passed")
