"""logic.preview on a real MRML scene equals ``medprep preprocess`` on the same files (acceptance 2).

The image and its label are written as NRRD files, loaded into a real slicer-core scene through
Slicer's own archetype storage node (ITK reading, as the application does), previewed through the
module's logic, and compared with what the ``medprep preprocess`` command line writes for the same
files and recipe: the same voxels, and each node's IJKToRAS equal to the output file's grid in RAS.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import slicer_testing  # noqa: E402  (Testing/ is on sys.path under pytest)

slicer = slicer_testing.require()

REPO = Path(__file__).resolve().parents[1]

import application_stand_ins  # noqa: E402
from cli_run import run_medprep  # noqa: E402
from MedPrepCore import Preview, SampleVolumes, VolumeNodes  # noqa: E402
from MedPrepCore.ModuleLogic import ModuleLogic  # noqa: E402
from MedPrepCore.Processing import PROVENANCE_ATTRIBUTE  # noqa: E402

from MedPrepLib.errors import CancelledError, InputError, RecipeError  # noqa: E402
from MedPrepLib.imageio import read_image, write_image  # noqa: E402
from MedPrepLib.volume import Volume  # noqa: E402

pytestmark = pytest.mark.slicer

RECIPES = {
    "resample+lung+float": {"version": 1, "steps": [
        {"op": "resample", "spacing": [1.0, 1.0, 1.0], "interpolation": "linear"},
        {"op": "window", "preset": "lung"},
    ]},
    "reorient+clip+zscore": {"version": 1, "steps": [
        {"op": "reorient", "to": "RAS"},
        {"op": "clip_scale", "min": -1000, "max": 400},
        {"op": "zscore"},
    ]},
}  # fmt: skip


@pytest.fixture
def scene():
    s = application_stand_ins.newScene()
    yield s
    s.Clear(1)


def ijkToRAS(node) -> np.ndarray:
    import vtk

    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    return np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])


loadWithSlicer = slicer_testing.load_with_slicer


@pytest.fixture
def files(tmp_path):
    """An oblique, anisotropic CT (HU, int16) and a label map on its grid, as NRRD files."""
    ct = SampleVolumes.obliqueVolume(np.int16)
    rng = np.random.default_rng(1)
    voxels = rng.integers(-1000, 1200, (18, 30, 26)).astype(np.int16)
    big = Volume(voxels, spacing=(0.7, 0.8, 2.5), origin=ct.geometry.origin, direction=ct.geometry.direction)
    label = np.zeros(big.shape, np.uint8)
    label[4:12, 6:20, 5:18] = 1
    label[6:9, 10:14, 8:12] = 2
    image = write_image(big, tmp_path / "ct.nrrd")
    labelPath = write_image(Volume(label, geometry=big.geometry), tmp_path / "ct_label.nrrd")
    return Path(image), Path(labelPath)


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_preview_equals_medprep_preprocess_voxels_and_ijk_to_ras(scene, files, tmp_path, name):
    image, label = files
    recipePath = tmp_path / "recipe.json"
    recipePath.write_text(json.dumps(RECIPES[name]))
    out, labelOut = tmp_path / "out.nrrd", tmp_path / "out_label.nrrd"
    result = run_medprep("preprocess", image, out, "--recipe", recipePath, "--label", label, "--label-output", labelOut)
    assert result.returncode == 0, result.stderr
    want, wantLabel = read_image(out), read_image(labelOut)

    imageNode, labelNode = loadWithSlicer(scene, image), loadWithSlicer(scene, label, labelmap=True)
    nodes = ModuleLogic(scene).preview(imageNode, str(recipePath), labelNode)

    got = VolumeNodes.volumeFromNode(nodes.image)
    assert got.array.dtype == want.array.dtype
    np.testing.assert_array_equal(got.array, want.array)
    np.testing.assert_allclose(ijkToRAS(nodes.image), want.geometry.ijk_to_ras(), rtol=0, atol=1e-9)
    assert nodes.label.IsA("vtkMRMLLabelMapVolumeNode")
    np.testing.assert_array_equal(VolumeNodes.volumeFromNode(nodes.label).array, wantLabel.array)
    np.testing.assert_allclose(ijkToRAS(nodes.label), wantLabel.geometry.ijk_to_ras(), rtol=0, atol=1e-9)
    provenance = json.loads(nodes.image.GetAttribute(PROVENANCE_ATTRIBUTE))
    assert [s["op"] for s in provenance["steps"]] == [s["op"] for s in RECIPES[name]["steps"]]
    assert nodes.label.GetAttribute(PROVENANCE_ATTRIBUTE) == nodes.image.GetAttribute(PROVENANCE_ATTRIBUTE)


def test_a_new_preview_replaces_the_previous_nodes(scene, files):
    image, label = files
    imageNode, labelNode = loadWithSlicer(scene, image), loadWithSlicer(scene, label, labelmap=True)
    first = Preview.previewVolumeNode(imageNode, RECIPES["resample+lung+float"], labelNode)
    count = scene.GetNumberOfNodes()
    second = Preview.previewVolumeNode(imageNode, {"version": 1, "steps": [{"op": "resample", "spacing": [2, 2, 2]}]}, labelNode)
    assert second.image is first.image and second.label is first.label  # updated in place
    assert scene.GetNumberOfNodes() == count
    assert second.image.GetSpacing() == (2.0, 2.0, 2.0)
    third = Preview.previewVolumeNode(imageNode, RECIPES["resample+lung+float"])  # no label now: its preview goes
    assert third.label is None and scene.GetNodeByID(first.label.GetID()) is None
    assert Preview.previewNodesOf(imageNode) == {"image": third.image}
    other = Preview.previewVolumeNode(loadWithSlicer(scene, image), RECIPES["resample+lung+float"])
    assert other.image is not third.image  # another input has its own preview


def test_preview_takes_a_segmentation_as_label(scene, files):
    from MedPrepCore import Segmentations

    image, label = files
    imageNode, labelNode = loadWithSlicer(scene, image), loadWithSlicer(scene, label, labelmap=True)
    Segmentations.registerConverterRules()
    segmentation = scene.AddNewNodeByClass("vtkMRMLSegmentationNode")
    segmentation.SetReferenceImageGeometryParameterFromVolumeNode(imageNode)
    assert Segmentations._segmentationsLogic(scene).ImportLabelmapToSegmentationNode(labelNode, segmentation)
    s = segmentation.GetSegmentation()
    s.GetNthSegment(0).SetName("lung")
    s.GetNthSegment(1).SetName("nodule")
    byLabel = Preview.previewVolumeNode(loadWithSlicer(scene, image), RECIPES["resample+lung+float"], labelNode)
    bySegmentation = Preview.previewVolumeNode(imageNode, RECIPES["resample+lung+float"], segmentation)
    np.testing.assert_array_equal(
        VolumeNodes.volumeFromNode(bySegmentation.label).array, VolumeNodes.volumeFromNode(byLabel.label).array
    )


def test_failed_or_cancelled_preview_changes_nothing(scene, files):
    image, _ = files
    imageNode = loadWithSlicer(scene, image)
    count = scene.GetNumberOfNodes()
    with pytest.raises(RecipeError):
        Preview.previewVolumeNode(imageNode, {"version": 1, "steps": [{"op": "resample", "spacing": [-1, 1, 1]}]})
    with pytest.raises(CancelledError):
        Preview.previewVolumeNode(imageNode, RECIPES["resample+lung+float"], progressCallback=lambda label, f: f > 0.2)
    with pytest.raises(RecipeError, match="no recipe"):
        Preview.previewVolumeNode(imageNode, None)
    with pytest.raises(InputError, match="image volume"):
        Preview.previewVolumeNode(loadWithSlicer(scene, files[1], labelmap=True), RECIPES["resample+lung+float"])
    assert scene.GetNumberOfNodes() == count + 2  # only the label map loaded for the last check
