"""Slicer segmentations (.seg.nrrd) onto the image grid, and through the label table (issue 10,
acceptance 3).

Real files: written by slicerio's writer (layers made by ``slicerio.add_segment``, as Slicer
stores overlapping segments) and by slicer-core's own ``vtkMRMLSegmentationStorageNode`` (which
crops to the segments' extent and writes a 4D NRRD for overlapping ones). The image grid is
oblique, so a frame or axis mix-up cannot pass.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

slicerio = pytest.importorskip("slicerio", reason='needs slicerio (pip install "medprep[labels]")')
nrrd = pytest.importorskip("nrrd")

from MedPrepLib.errors import ArgumentError, InputError, LabelError, MissingDependencyError  # noqa: E402
from MedPrepLib.geometry import LPS_TO_RAS, Geometry  # noqa: E402
from MedPrepLib.segmentation.label_table import parse_segment_label_map, segmentation_to_label  # noqa: E402
from MedPrepLib.segmentation.seg_nrrd import read_seg_nrrd  # noqa: E402
from MedPrepLib.volume import Volume  # noqa: E402

_C, _S = np.cos(np.radians(20)), np.sin(np.radians(20))
IMAGE = Geometry(
    size=(14, 12, 6),
    spacing=(0.8, 0.9, 2.5),
    origin=(12.5, -30.0, 40.0),
    direction=np.array([[_C, -_S, 0.0], [_S, _C, 0.0], [0.0, 0.0, 1.0]]),
)
SHAPE = IMAGE.shape  # (6, 12, 14)


def box(z0, z1, y0, y1, x0, x1) -> np.ndarray:
    m = np.zeros(SHAPE, bool)
    m[z0:z1, y0:y1, x0:x1] = True
    return m


LIVER = box(1, 5, 2, 9, 2, 9)  # 4 * 7 * 7 = 196
TUMOUR = box(2, 4, 6, 11, 6, 11)  # 2 * 5 * 5 = 50, 2 * 3 * 3 = 18 shared with the liver
SPLEEN = box(0, 2, 0, 3, 10, 14)  # 2 * 3 * 4 = 24
LIVER_TERM = {"contextName": "Segmentation category and type - 3D Slicer General Anatomy list",
              "category": ["SCT", "123037004", "Anatomical Structure"], "type": ["SCT", "10200004", "Liver"]}  # fmt: skip

TABLE = {
    "labels": {"background": 0, "liver": 1, "tumour": 2, "spleen": 3},
    "match": {"liver": ["(?i)^liver", {"code": "10200004", "scheme": "SCT"}], "tumour": ["(?i)^(tumou?r|gtv)"]},
    "unmatched": "reject",
}


def expected_priority() -> np.ndarray:
    out = np.zeros(SHAPE, np.uint8)
    out[LIVER], out[TUMOUR], out[SPLEEN] = 1, 2, 3
    return out


def write_slicerio(path, named, *, geometry: Geometry = IMAGE, crop=None):
    """A .seg.nrrd of (name, (z, y, x) mask[, segment fields]) in that order, on ``geometry``;
    ``crop`` = ((z0, y0, x0), (z1, y1, x1)) writes only that box of it (as Slicer crops)."""
    if crop is not None:
        (z0, y0, x0), (z1, y1, x1) = crop
        geometry = geometry.replace(
            origin=tuple(geometry.index_to_physical((x0, y0, z0))), size=(x1 - x0, y1 - y0, z1 - z0)
        )
        named = [(n, m[z0:z1, y0:y1, x0:x1], *rest) for n, m, *rest in named]
    data = slicerio.create_segmentation(geometry.size, geometry.affine_lps())
    for name, mask, *fields in named:
        slicerio.add_segment(data, mask.transpose(2, 1, 0), {"name": name, **(fields[0] if fields else {})})
    slicerio.write_segmentation(str(path), data)
    return path


def test_overlapping_layers_and_shuffled_order_round_trip_through_the_label_table(tmp_path):
    a = write_slicerio(tmp_path / "a.seg.nrrd", [("Liver", LIVER), ("Tumour", TUMOUR), ("spleen", SPLEEN)])
    b = write_slicerio(
        tmp_path / "b.seg.nrrd",
        [("SPLEEN", SPLEEN), ("GTV_1", TUMOUR), ("Segment_7", LIVER, {"terminology": LIVER_TERM})],
    )
    for path in (a, b):
        header = nrrd.read_header(str(path))
        assert header["dimension"] == 4 and header["kinds"][0] == "list"  # the tumour went into a second layer
    sa, sb = read_seg_nrrd(a, IMAGE), read_seg_nrrd(b, IMAGE)
    assert sa.kind == "seg.nrrd" and sa.geometry == IMAGE and sb.geometry == IMAGE
    assert [(s.number, s.name, s.voxels) for s in sb.segments] == [
        (1, "SPLEEN", 24),
        (2, "GTV_1", 50),
        (3, "Segment_7", 196),
    ]
    assert sb.segment(3).terminology == (("SCT", "123037004", "Anatomical Structure"), ("SCT", "10200004", "Liver"))
    for s in (sa, sb):
        for name, mask in (("iver", LIVER), ("um", TUMOUR), ("GTV", TUMOUR), ("pleen", SPLEEN), ("PLEEN", SPLEEN)):
            for segment in s.segments:
                if name in segment.name:
                    np.testing.assert_array_equal(segment.full(SHAPE), mask)
    table = parse_segment_label_map(dict(TABLE, overlap="priority", priority=["liver", "tumour"]))
    la, ra = segmentation_to_label(sa, table)
    lb, rb = segmentation_to_label(sb, table)
    np.testing.assert_array_equal(la.array, expected_priority())
    np.testing.assert_array_equal(lb.array, expected_priority())
    assert la.geometry == IMAGE
    assert ra.overlaps == rb.overlaps == [{"labels": ["liver", "tumour"], "voxels": 18}]
    assert [rb.labels[n]["written"] for n in ("liver", "tumour", "spleen")] == [196 - 18, 50, 24]
    with pytest.raises(LabelError, match="share 18 voxels"):
        segmentation_to_label(sa, parse_segment_label_map(TABLE))


def test_overlapping_layers_as_nnunet_regions(tmp_path):
    path = write_slicerio(tmp_path / "r.seg.nrrd", [("GTV", TUMOUR), ("Liver", LIVER), ("Spleen", SPLEEN)])
    table = parse_segment_label_map(dict(TABLE, overlap="regions", within={"tumour": "liver"}))
    label, report = segmentation_to_label(read_seg_nrrd(path, IMAGE), table)
    np.testing.assert_array_equal(label.array, expected_priority())  # the innermost label is written
    assert report.labels["liver"]["region"] == 196 + 50 - 18
    assert np.array_equal(np.isin(label.array, table.region("liver")), LIVER | TUMOUR)


def test_a_segmentation_cropped_to_its_extent_is_placed_into_the_image_grid(tmp_path):
    named = [("liver", LIVER), ("tumour", TUMOUR)]
    path = write_slicerio(tmp_path / "crop.seg.nrrd", named, crop=((1, 2, 2), (5, 11, 11)))
    own = read_seg_nrrd(path)  # without an image: its own (cropped) grid
    assert own.geometry.size == (9, 9, 4) and own.segment(1).voxels == 196
    placed = read_seg_nrrd(path, Volume(np.zeros(SHAPE, np.int16), IMAGE))
    assert placed.geometry == IMAGE and placed.warnings == []
    np.testing.assert_array_equal(placed.segment(1).full(SHAPE), LIVER)
    np.testing.assert_array_equal(placed.segment(2).full(SHAPE), TUMOUR)


def test_a_ras_space_nrrd_is_turned_into_lps(tmp_path):
    lps = write_slicerio(
        tmp_path / "lps.seg.nrrd", [("liver", LIVER), ("spleen", SPLEEN)], crop=((0, 0, 2), (5, 9, 14))
    )
    voxels, header = nrrd.read(str(lps))
    header["space"] = "right-anterior-superior"
    header["space directions"] = header["space directions"] @ LPS_TO_RAS  # rows are the axis vectors
    header["space origin"] = LPS_TO_RAS @ header["space origin"]
    ras = tmp_path / "ras.seg.nrrd"
    nrrd.write(str(ras), voxels, header)
    assert nrrd.read_header(str(ras))["space"] == "right-anterior-superior"
    own_lps, own_ras = read_seg_nrrd(lps).geometry, read_seg_nrrd(ras).geometry
    assert own_ras.isclose(own_lps, atol_mm=1e-9, atol_dir=1e-12)
    placed = read_seg_nrrd(ras, IMAGE)
    np.testing.assert_array_equal(placed.segment(1).full(SHAPE), LIVER)
    np.testing.assert_array_equal(placed.segment(2).full(SHAPE), SPLEEN)


def test_another_grid_is_refused_or_resampled_nearest(tmp_path):
    # half the resolution in x, voxel centres between the image's: each voxel covers two image voxels
    coarse = IMAGE.replace(size=(7, 12, 6), spacing=(1.6, 0.9, 2.5), origin=tuple(IMAGE.index_to_physical((0.5, 0, 0))))
    mask = np.zeros((6, 12, 7), bool)
    mask[1:5, 2:9, 1:4] = True
    path = write_slicerio(tmp_path / "coarse.seg.nrrd", [("liver", mask)], geometry=coarse)
    with pytest.raises(LabelError, match="not on its image's grid") as err:
        read_seg_nrrd(path, IMAGE)
    assert "spacing" in str(err.value) and "resample" in str(err.value)
    resampled = read_seg_nrrd(path, IMAGE, grid_policy="resample")
    np.testing.assert_array_equal(resampled.segment(1).full(SHAPE), np.repeat(mask, 2, axis=2))
    assert any("resampled" in w for w in resampled.warnings)
    # an origin between voxel centres is another grid too, not a box of it
    shifted = write_slicerio(tmp_path / "shift.seg.nrrd", [("liver", LIVER)],
                             geometry=IMAGE.replace(origin=tuple(IMAGE.index_to_physical((0.3, 0, 0)))))  # fmt: skip
    with pytest.raises(LabelError, match="origin"):
        read_seg_nrrd(shifted, IMAGE)
    np.testing.assert_array_equal(read_seg_nrrd(shifted, IMAGE, grid_policy="resample").segment(1).full(SHAPE), LIVER)


def test_segment_voxels_outside_the_image_are_refused_or_cut_off(tmp_path):
    bigger = IMAGE.replace(size=(14, 12, 8))  # two more slices than the image
    mask = np.zeros((8, 12, 14), bool)
    mask[4:8, 2:5, 2:5] = True  # 2 of its 4 slices beyond the image
    path = write_slicerio(
        tmp_path / "big.seg.nrrd",
        [("liver", mask), ("spleen", np.pad(SPLEEN, ((0, 2), (0, 0), (0, 0))))],
        geometry=bigger,
    )
    with pytest.raises(LabelError, match=r"1 \('liver'\): 18 voxels"):
        read_seg_nrrd(path, IMAGE)
    cut = read_seg_nrrd(path, IMAGE, grid_policy="resample")
    np.testing.assert_array_equal(cut.segment(1).full(SHAPE), mask[:6])
    np.testing.assert_array_equal(cut.segment(2).full(SHAPE), SPLEEN)
    assert any("cut off" in w and "18 voxels" in w for w in cut.warnings)


def test_empty_segments_and_unnamed_values_are_warned(tmp_path):
    data = slicerio.create_segmentation(IMAGE.size, IMAGE.affine_lps())
    slicerio.add_segment(data, LIVER.transpose(2, 1, 0), {"name": "liver"})
    slicerio.add_segment(data, np.zeros(IMAGE.size, bool), {"name": "nothing"})
    data["voxels"][0, 0, 5] = 9  # a value no segment names
    slicerio.write_segmentation(str(tmp_path / "e.seg.nrrd"), data)
    s = read_seg_nrrd(tmp_path / "e.seg.nrrd", IMAGE)
    assert s.segment(2).empty and "empty" in s.segment(2).warnings[0]
    assert any("9" in w and "no segment names" in w for w in s.warnings)
    assert s.segment(1).voxels == 196


def test_bad_files_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="no such file"):
        read_seg_nrrd(tmp_path / "missing.seg.nrrd")
    (tmp_path / "text.seg.nrrd").write_text("hello")
    with pytest.raises(InputError, match="not a NRRD"):
        read_seg_nrrd(tmp_path / "text.seg.nrrd")
    plain = tmp_path / "plain.nrrd"  # a label map NRRD, not a segmentation
    nrrd.write(str(plain), LIVER.astype(np.uint8).transpose(2, 1, 0),
               {"space": "left-posterior-superior", "space directions": IMAGE.matrix.T, "space origin": np.array(IMAGE.origin)})  # fmt: skip
    with pytest.raises(InputError, match="no segments"):
        read_seg_nrrd(plain)
    scanner = tmp_path / "scanner.nrrd"
    nrrd.write(
        str(scanner),
        LIVER.astype(np.uint8),
        {"space": "scanner-xyz", "space directions": np.eye(3), "space origin": np.zeros(3)},
    )
    with pytest.raises(InputError, match="scanner-xyz"):
        read_seg_nrrd(scanner)
    with pytest.raises(ArgumentError, match="grid policy"):
        read_seg_nrrd(scanner, IMAGE, grid_policy="crop")


def test_without_slicerio_the_error_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "slicerio", None)
    with pytest.raises(MissingDependencyError, match="slicerio") as err:
        read_seg_nrrd(tmp_path / "a.seg.nrrd")
    assert 'pip install "medprep[labels]"' in str(err.value)


# --- written by Slicer's own segmentation storage (slicer-core) ----------------------------------


@pytest.fixture(scope="module")
def slicer_core():
    slicer = pytest.importorskip("slicer", reason="needs the slicer-core wheel (pip install 'medprep[slicer]')")
    if not hasattr(slicer, "vtkMRMLSegmentationStorageNode"):
        pytest.skip("this slicer-core has no segmentation storage (vtkMRMLSegmentationStorageNode)")
    return slicer


def write_slicer(slicer, path, named, *, reference: Geometry | None = None):
    """Segments (name, (z, y, x) mask on IMAGE) added to a vtkMRMLSegmentationNode in that order,
    saved by vtkMRMLSegmentationStorageNode as Slicer saves them."""
    import vtk
    from vtkmodules.util.numpy_support import numpy_to_vtk

    scene = slicer.vtkMRMLScene()
    node = slicer.vtkMRMLSegmentationNode()
    scene.AddNode(node)
    ijk_to_ras = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            ijk_to_ras.SetElement(r, c, IMAGE.ijk_to_ras()[r, c])
    binary = slicer.vtkSegmentationConverter.GetSegmentationBinaryLabelmapRepresentationName()
    for name, mask in named:
        image = slicer.vtkOrientedImageData()
        image.SetDimensions(*IMAGE.size)
        image.SetImageToWorldMatrix(ijk_to_ras)
        image.GetPointData().SetScalars(numpy_to_vtk(np.ascontiguousarray(mask, np.uint8).ravel(), deep=True))
        segment = slicer.vtkSegment()
        segment.SetName(name)
        segment.AddRepresentation(binary, image)
        node.GetSegmentation().AddSegment(segment, f"id_{name}")
    storage = slicer.vtkMRMLSegmentationStorageNode()
    scene.AddNode(storage)
    storage.SetFileName(str(path))
    assert storage.WriteData(node) == 1
    scene.Clear(1)
    return path


@pytest.mark.slicer
def test_slicer_core_segmentations_round_trip_whatever_the_order(tmp_path, slicer_core):
    a = write_slicer(slicer_core, tmp_path / "a.seg.nrrd", [("Liver", LIVER), ("Tumor", TUMOUR), ("Spleen", SPLEEN)])
    b = write_slicer(slicer_core, tmp_path / "b.seg.nrrd", [("spleen", SPLEEN), ("GTV", TUMOUR), ("liver", LIVER)])
    for path in (a, b):
        header = nrrd.read_header(str(path))
        assert header["dimension"] == 4  # overlapping segments: two layers
        assert header["sizes"][1:].tolist() != list(IMAGE.size)  # Slicer cropped it to the segments' extent
    table = parse_segment_label_map(dict(TABLE, overlap="priority", priority=["liver", "tumour"]))
    for path in (a, b):
        s = read_seg_nrrd(path, IMAGE)
        assert s.geometry == IMAGE and s.warnings == []
        label, report = segmentation_to_label(s, table)
        np.testing.assert_array_equal(label.array, expected_priority())
        assert report.overlaps == [{"labels": ["liver", "tumour"], "voxels": 18}]
    regions = parse_segment_label_map(dict(TABLE, overlap="regions", within={"tumour": "liver"}))
    label, _ = segmentation_to_label(read_seg_nrrd(b, IMAGE), regions)
    assert np.array_equal(np.isin(label.array, regions.region("liver")), LIVER | TUMOUR)
    assert np.array_equal(label.array == 2, TUMOUR)
