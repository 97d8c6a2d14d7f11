"""The README's Slicer console example runs as written, on slicer-core, against a real scene.

The application's globals the example uses are given as the application gives them:
``slicer.util.getModuleLogic("MedPrep")`` the module's logic on the scene, ``slicer.dicomDatabase``
a database (built from CTK's schema over the demo's DICOM cohort), ``getNode`` the scene's node by
name (the "Segmentation" node is one drawn on the loaded CT, segments named as the label map's
labels). The example's ``/data`` paths are put under a temporary folder; nothing else changes.
"""

from __future__ import annotations

import json
import re
import types
from pathlib import Path

import numpy as np
import pytest
import slicer_testing  # noqa: E402  (Testing/ is on sys.path under pytest)

slicer = slicer_testing.require()

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"

import application_stand_ins  # noqa: E402
import slicer_database  # noqa: E402
from MedPrepCore import Segmentations, VolumeNodes  # noqa: E402
from MedPrepCore.ModuleLogic import ModuleLogic  # noqa: E402

pytestmark = pytest.mark.slicer


def consoleExample() -> str:
    section = README.read_text().split("## 3D Slicer", 1)[1].split("\n## ", 1)[0]
    return next(b for b in re.findall(r"```python\n(.*?)```", section, re.S) if "getModuleLogic" in b)


def test_readme_console_example_runs(tmp_path, monkeypatch):
    from MedPrepLib.demo import LABELS, threshold_labels, write_demo_sources

    write_demo_sources(tmp_path / "src")
    slicer_database.index_folder(tmp_path / "src" / "dicom", tmp_path / "db")
    work = tmp_path / "work"
    work.mkdir()
    (work / "recipe.json").write_text(json.dumps({"version": 1, "steps": [{"op": "resample", "spacing": [1, 1, 1]}]}))
    (work / "label_map.json").write_text((tmp_path / "src" / "label_map.json").read_text())
    monkeypatch.chdir(work)

    scene = application_stand_ins.newScene()
    logic = ModuleLogic(scene)

    def getNode(name):
        node = scene.GetFirstNodeByName(name)
        if node is None and name == "Segmentation":  # drawn on the CT the example loaded
            ct = next(n for n in scene.GetNodesByClass("vtkMRMLScalarVolumeNode") if "preview" not in n.GetName())
            label = threshold_labels(VolumeNodes.volumeFromNode(ct))
            Segmentations.registerConverterRules()
            node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "Segmentation")
            node.SetReferenceImageGeometryParameterFromVolumeNode(ct)
            for value, segmentName in LABELS.items():
                mask = VolumeNodes.nodeFromVolume(scene, type(label)((label.array == value).astype(np.uint8), geometry=label.geometry),
                                             "m", labelmap=True)  # fmt: skip
                assert Segmentations._segmentationsLogic(scene).ImportLabelmapToSegmentationNode(mask, node)
                segmentation = node.GetSegmentation()
                segmentation.GetNthSegment(segmentation.GetNumberOfSegments() - 1).SetName(segmentName)
                scene.RemoveNode(mask)
        return node

    monkeypatch.setattr(slicer.util, "getModuleLogic", lambda name: logic if name == "MedPrep" else None, raising=False)
    monkeypatch.setattr(slicer, "dicomDatabase", types.SimpleNamespace(databaseDirectory=str(tmp_path / "db")), raising=False)
    code = consoleExample().replace("/data/labels", str(tmp_path / "src" / "labels")).replace("/data/", f"{tmp_path}/data/")
    namespace = {"slicer": slicer, "getNode": getNode}
    exec(compile(code, "README.md (3D Slicer)", "exec"), namespace)

    report = namespace["report"]
    assert report.exit_code == 0 and len(report.exported) == 1 and report.report.is_file()
    assert namespace["nodes"].image.GetSpacing() == (1.0, 1.0, 1.0)
    assert json.loads((report.dataset_folder / "dataset.json").read_text())["labels"] == {"background": 0, "bone": 1, "lungs": 2}  # alphabetical: no label map given
    chest = tmp_path / "data" / "nnUNet_raw" / "Dataset500_Chest"
    assert len(json.loads((chest / "dataset.json").read_text())["labels"]) == 3 and (chest / "medprep.json").is_file()
    assert len(namespace["tree"]) == 5
    # the scene volume came from DICOM: its channel is named after its modality (nnU-Net CT normalisation)
    assert json.loads((report.dataset_folder / "dataset.json").read_text())["channel_names"] == {"0": "CT"}
