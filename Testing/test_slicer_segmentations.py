"""Segmentation nodes -> label maps through Slicer's own segmentation logic (MedPrepCore.Segmentations).

Real slicer-core: ``vtkMRMLSegmentationNode``, ``vtkSlicerSegmentationsModuleLogic`` (import from
and export to label maps, resampling a segmentation drawn on another grid) and
``vtkMRMLSegmentationStorageNode`` (Slicer's own ``.seg.nrrd`` writer). The expected label maps
are built here with numpy from the masks the segments were made of; the label values come from
segment *names* through the label table, never from segment order.
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
from MedPrepCore import Segmentations, VolumeNodes  # noqa: E402

from MedPrepLib.errors import InputError, LabelError  # noqa: E402
from MedPrepLib.geometry import Geometry  # noqa: E402
from MedPrepLib.volume import Volume  # noqa: E402

pytestmark = pytest.mark.slicer

SHAPE = (12, 20, 24)  # (z, y, x)


@pytest.fixture
def scene():
    s = application_stand_ins.newScene()
    yield s
    s.Clear(1)


def ctGeometry() -> Geometry:
    """An oblique, anisotropic grid (LPS) — the kind where a flipped axis would show."""
    angle = np.deg2rad(12)
    direction = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    return Geometry(size=SHAPE[::-1], spacing=(0.8, 0.9, 2.0), origin=(-40.0, 25.0, -300.0), direction=direction)


def imageNode(scene, geometry=None):
    geometry = geometry or ctGeometry()
    rng = np.random.default_rng(0)
    volume = Volume(rng.integers(-1000, 1000, geometry.shape).astype(np.int16), geometry=geometry)
    return VolumeNodes.nodeFromVolume(scene, volume, "CT")


def masks() -> dict[str, np.ndarray]:
    """Two overlapping structures and one apart, on SHAPE (z, y, x)."""
    liver = np.zeros(SHAPE, bool)
    liver[2:8, 3:12, 4:15] = True
    tumour = np.zeros(SHAPE, bool)
    tumour[4:7, 8:14, 10:18] = True  # overlaps the liver
    spleen = np.zeros(SHAPE, bool)
    spleen[3:9, 15:19, 18:22] = True
    return {"liver": liver, "tumour": tumour, "spleen": spleen}


def segmentationNode(scene, volumeNode, named: dict[str, np.ndarray], geometry=None, name="Segmentation"):
    """A segmentation node whose segments are imported, one label map each, by Slicer's logic
    (so overlapping segments end up in separate layers, as the Segment Editor keeps them)."""
    geometry = geometry or VolumeNodes.volumeFromNode(volumeNode).geometry
    Segmentations.registerConverterRules()
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", name)
    node.SetReferenceImageGeometryParameterFromVolumeNode(volumeNode)
    logic = Segmentations._segmentationsLogic(scene)
    for segmentName, mask in named.items():
        labelNode = VolumeNodes.nodeFromVolume(scene, Volume(mask.astype(np.uint8), geometry=geometry), "tmp", labelmap=True)
        before = node.GetSegmentation().GetNumberOfSegments()
        assert logic.ImportLabelmapToSegmentationNode(labelNode, node)
        segmentation = node.GetSegmentation()
        assert segmentation.GetNumberOfSegments() == before + 1
        segmentation.GetNthSegment(before).SetName(segmentName)
        scene.RemoveNode(labelNode)
    return node


def expected(named: dict[str, np.ndarray], values: dict[str, int], order: list[str]) -> np.ndarray:
    out = np.zeros(SHAPE, np.uint8)
    for name in order:  # painted first to last: the last one wins where they overlap
        out[named[name]] = values[name]
    return out


def test_segments_keep_their_names_and_full_masks_even_where_they_overlap(scene):
    volume = imageNode(scene)
    named = masks()
    seg = Segmentations.segmentationOnVolume(segmentationNode(scene, volume, named), volume)
    assert seg.names() == ["liver", "tumour", "spleen"]
    assert seg.geometry == VolumeNodes.volumeFromNode(volume).geometry
    for segment in seg.segments:
        np.testing.assert_array_equal(segment.full(SHAPE), named[segment.name])


def test_overlapping_segments_are_refused_without_an_overlap_rule(scene):
    volume = imageNode(scene)
    node = segmentationNode(scene, volume, masks())
    count = scene.GetNumberOfNodes()
    with pytest.raises(LabelError, match="overlap"):
        Segmentations.labelFromSegmentation(node, volume)
    assert scene.GetNumberOfNodes() == count  # nothing added when it fails


def test_overlap_priority_from_the_label_map_decides(scene):
    volume = imageNode(scene)
    named = masks()
    labelMap = {"labels": {"background": 0, "liver": 1, "tumour": 2, "spleen": 3}, "overlap": "priority",
                "priority": ["liver", "spleen", "tumour"]}  # fmt: skip
    label = Segmentations.labelFromSegmentation(segmentationNode(scene, volume, named), volume, labelMap)
    assert label.IsA("vtkMRMLLabelMapVolumeNode")
    got = VolumeNodes.volumeFromNode(label)
    np.testing.assert_array_equal(got.array, expected(named, labelMap["labels"], ["liver", "spleen", "tumour"]))
    assert got.geometry == VolumeNodes.volumeFromNode(volume).geometry
    stored = json.loads(label.GetAttribute(Segmentations.LABEL_TABLE_ATTRIBUTE))
    assert stored["labels"] == labelMap["labels"]
    assert stored["report"]["labels"]["tumour"]["segments"][0]["name"] == "tumour"


def test_shuffled_segment_order_gives_the_same_label_map(scene):
    volume = imageNode(scene)
    named = {k: v for k, v in masks().items() if k != "tumour"}  # no overlap: the default table applies
    a = segmentationNode(scene, volume, named, name="A")
    b = segmentationNode(scene, volume, dict(reversed(list(named.items()))), name="B")
    labelA = VolumeNodes.volumeFromNode(Segmentations.labelFromSegmentation(a, volume)).array
    labelB = VolumeNodes.volumeFromNode(Segmentations.labelFromSegmentation(b, volume)).array
    np.testing.assert_array_equal(labelA, labelB)
    # without a label map: every name, alphabetically -> liver 1, spleen 2
    np.testing.assert_array_equal(labelA, expected(named, {"liver": 1, "spleen": 2}, ["liver", "spleen"]))


def test_segment_names_match_the_label_map_patterns_and_case(scene):
    volume = imageNode(scene)
    named = {"Liver (auto)": masks()["liver"], "SPLEEN": masks()["spleen"]}
    labelMap = {"labels": {"background": 0, "liver": 1, "spleen": 7}, "match": {"liver": ["(?i)^liver"]}}
    label = VolumeNodes.volumeFromNode(Segmentations.labelFromSegmentation(segmentationNode(scene, volume, named), volume, labelMap))
    want = np.zeros(SHAPE, np.uint8)
    want[named["Liver (auto)"]] = 1
    want[named["SPLEEN"]] = 7
    np.testing.assert_array_equal(label.array, want)


def test_a_segmentation_drawn_on_a_coarser_grid_is_put_on_the_volume_grid(scene):
    """Segments stored on a 2x coarser grid (voxel corners aligned with the volume's) come out
    as each coarse voxel's 2 x 2 x 2 block of fine voxels (Slicer resamples by nearest neighbour)."""
    fine = ctGeometry()
    volume = imageNode(scene, fine)
    coarseShape = tuple(n // 2 for n in SHAPE)
    coarseSpacing = tuple(2 * s for s in fine.spacing)
    # the coarse voxel centre sits half a fine voxel further along every axis
    offset = fine.direction @ (0.5 * np.asarray(fine.spacing))
    coarse = Geometry(size=coarseShape[::-1], spacing=coarseSpacing, origin=tuple(np.asarray(fine.origin) + offset),
                      direction=fine.direction)  # fmt: skip
    small = np.zeros(coarseShape, bool)
    small[1:4, 2:6, 3:8] = True
    node = segmentationNode(scene, volume, {"lesion": small}, geometry=coarse)
    seg = Segmentations.segmentationOnVolume(node, volume)
    want = small.repeat(2, 0).repeat(2, 1).repeat(2, 2)
    np.testing.assert_array_equal(seg.segments[0].full(SHAPE), want)


def test_a_segmentation_on_a_sub_box_of_the_volume_lands_in_place(scene):
    fine = ctGeometry()
    volume = imageNode(scene, fine)
    start = np.array([3, 2, 4])  # (x, y, z) voxel index of the box's first voxel
    boxShape = (5, 8, 9)  # (z, y, x)
    box = Geometry(size=boxShape[::-1], spacing=fine.spacing,
                   origin=tuple(np.asarray(fine.origin) + fine.direction @ (start * np.asarray(fine.spacing))),
                   direction=fine.direction)  # fmt: skip
    inside = np.zeros(boxShape, bool)
    inside[1:4, 2:7, 3:8] = True
    seg = Segmentations.segmentationOnVolume(segmentationNode(scene, volume, {"node": inside}, geometry=box), volume)
    want = np.zeros(SHAPE, bool)
    want[start[2] : start[2] + boxShape[0], start[1] : start[1] + boxShape[1], start[0] : start[0] + boxShape[2]] = inside
    np.testing.assert_array_equal(seg.segments[0].full(SHAPE), want)


def test_slicer_written_seg_nrrd_reads_the_same_in_medpreplib(scene, tmp_path):
    """Slicer's own .seg.nrrd writer, then MedPrepLib's reader (slicerio): the same label map as
    Slicer's logic gives from the node — the two roads to a label agree."""
    pytest.importorskip("slicerio", reason="needs slicerio (pip install 'medprep[labels]')")
    from MedPrepLib.segmentation.label_table import segmentation_to_label
    from MedPrepLib.segmentation.objects import read_on_image

    volume = imageNode(scene)
    named = {k: v for k, v in masks().items() if k != "tumour"}
    node = segmentationNode(scene, volume, named)
    path = tmp_path / "case.seg.nrrd"
    storage = scene.AddNewNodeByClass("vtkMRMLSegmentationStorageNode")
    storage.SetFileName(str(path))
    assert storage.WriteData(node) == 1
    fromNode, _, table = Segmentations.labelVolumeFromSegmentation(node, volume)
    fromFile, _ = segmentation_to_label(read_on_image(path, VolumeNodes.volumeFromNode(volume)), table)
    np.testing.assert_array_equal(fromNode.array, fromFile.array)
    assert fromNode.geometry == fromFile.geometry


def test_bad_inputs_are_medprep_errors(scene):
    volume = imageNode(scene)
    with pytest.raises(InputError, match="segmentation node is needed"):
        Segmentations.labelFromSegmentation(volume, volume)
    node = segmentationNode(scene, volume, {"liver": masks()["liver"]})
    with pytest.raises(InputError, match="needs the volume"):
        Segmentations.labelFromSegmentation(node, None)
