"""RTSTRUCT -> segments on the image grid (MedPrepLib.segmentation.rtstruct), issue 10 acceptance 2.

1. The real corpus (../shared/corpus/labels/rt_*): Dice >= 0.97 per ROI against plastimatch where no
   contours are nested; nested contours keep their hole (judged against rt-utils within one voxel of
   its boundary, and plastimatch's union as the bound); contours at no image slice reported.
2. Analytic shapes written as RTSTRUCTs here: discs, rings, squares at known positions on axial,
   oblique and flipped grids; ROI order shuffled against ROINumber; off-slice, empty, POINT/OPEN and
   tilted contours; bad files.
3. plastimatch itself on a synthetic case, when it is installed.
"""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from dicom_factory import new_uid, save, write_stack
from scipy import ndimage

from MedPrepLib.errors import ArgumentError, DicomError, InputError, UnsupportedDicomError
from MedPrepLib.geometry import Geometry
from MedPrepLib.segmentation.rtstruct import fill_polygons, read_rtstruct, read_rtstruct_on_series
from MedPrepLib.sources import load_path

pytestmark = pytest.mark.pydicom_dependent

LABELS = Path(__file__).resolve().parents[1].parent / "shared" / "corpus" / "labels"
FRAME_UID = "1.2.826.0.1.3680043.8.498.77"


# -- building RTSTRUCTs -------------------------------------------------------------------------------


def rtstruct(rois, *, contour_order=None):
    """An RTSTRUCT Dataset. ``rois``: [(number, name, [(points (N, 3) LPS mm, type), ...] or None)],
    declared in that order; None = no ROIContourSequence item. ``contour_order``: the ROI numbers
    in the order their ROIContourSequence items are written (default: declared order)."""
    from pydicom.dataset import Dataset, FileDataset, FileMetaDataset

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.481.3"
    meta.MediaStorageSOPInstanceUID = new_uid()
    meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
    meta.ImplementationClassUID = "1.2.826.0.1.3680043.8.498.2"
    ds = FileDataset("rt.dcm", Dataset(), file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality = "RTSTRUCT"
    ds.PatientName, ds.PatientID = "Secret^Person", "PID-SECRET-42"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = new_uid(), new_uid()
    ds.FrameOfReferenceUID = FRAME_UID
    ds.StructureSetLabel = "SECRETLABEL"
    frame = Dataset()
    frame.FrameOfReferenceUID = FRAME_UID
    ds.ReferencedFrameOfReferenceSequence = [frame]
    declared, contours = [], {}
    for number, name, items in rois:
        roi = Dataset()
        roi.ROINumber, roi.ROIName, roi.ReferencedFrameOfReferenceUID = number, name, FRAME_UID
        roi.ROIGenerationAlgorithm = "MANUAL"
        declared.append(roi)
        if items is None:
            continue
        item = Dataset()
        item.ReferencedROINumber = number
        item.ROIDisplayColor = [255, 0, 0]
        seq = []
        for points, kind in items:
            c = Dataset()
            c.ContourGeometricType = kind
            points = np.asarray(points, float).reshape(-1, 3)
            c.NumberOfContourPoints = len(points)
            c.ContourData = [f"{v:.6f}" for v in points.ravel()]
            seq.append(c)
        item.ContourSequence = seq
        contours[number] = item
    ds.StructureSetROISequence = declared
    order = contour_order or [n for n in (r[0] for r in rois) if n in contours]
    ds.ROIContourSequence = [contours[n] for n in order]
    return ds


def ring(g: Geometry, centre_ij, radius_mm, k, n=720):
    """A circle of ``radius_mm`` around in-plane index ``centre_ij`` on slice ``k``, as LPS points."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    i = centre_ij[0] + radius_mm * np.cos(t) / g.spacing[0]
    j = centre_ij[1] + radius_mm * np.sin(t) / g.spacing[1]
    return g.index_to_physical(np.column_stack([i, j, np.full(n, float(k))]))


def box(g: Geometry, i0, i1, j0, j1, k):
    """The rectangle with index corners (i0, j0) .. (i1, j1) on slice k, as LPS points."""
    return g.index_to_physical(np.array([[i0, j0, k], [i1, j0, k], [i1, j1, k], [i0, j1, k]], float))


def rotation(axis, degrees) -> np.ndarray:
    a = np.asarray(axis, float) / np.linalg.norm(axis)
    t = math.radians(degrees)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + math.sin(t) * k + (1 - math.cos(t)) * k @ k


GRIDS = {
    "axial": Geometry((96, 80, 6), spacing=(0.9, 1.1, 2.5), origin=(-40.0, -30.0, 12.0)),
    "oblique": Geometry(
        (96, 80, 6), spacing=(0.9, 1.1, 2.5), origin=(5.0, -17.0, 40.0), direction=rotation((1, 2, 3), 37)
    ),  # fmt: skip
    "flipped": Geometry(
        (96, 80, 6),
        spacing=(0.9, 1.1, 2.5),
        origin=(40.0, 30.0, 12.0),
        direction=np.diag([-1.0, -1.0, -1.0]) @ rotation((0, 0, 1), 90),
    ),  # fmt: skip
}


def disc_truth(g: Geometry, centre_ij, radius_mm, n=720):
    """Centres certainly inside / certainly outside the polygon of ``ring`` (the polygon sits between
    the circle and its inscribed chord, r cos(pi / n) from the centre)."""
    j, i = np.mgrid[0 : g.size[1], 0 : g.size[0]]
    d = np.hypot((i - centre_ij[0]) * g.spacing[0], (j - centre_ij[1]) * g.spacing[1])
    return d < radius_mm * math.cos(math.pi / n) - 1e-6, d > radius_mm + 1e-6


def one_voxel_band(area_mm2_exact, perimeter_mm, g: Geometry, voxels) -> bool:
    """The area of ``voxels`` differs from the exact area by less than a one-voxel band along the boundary."""
    pixel = g.spacing[0] * g.spacing[1]
    return abs(voxels * pixel - area_mm2_exact) <= perimeter_mm * max(g.spacing[:2])


# -- the fill ----------------------------------------------------------------------------------------------


def test_fill_square_boundary_rule_low_index_edges_inside():
    square = np.array([[2, 3], [7, 3], [7, 9], [2, 9]], float)  # centres on every edge
    mask = fill_polygons([square], (12, 12))
    expected = np.zeros((12, 12), bool)
    expected[3:9, 2:7] = True  # rows 3..8, columns 2..6: low edges in, high edges out
    assert (mask == expected).all()
    # two squares sharing an edge never both claim a voxel, and together tile their union
    left = np.array([[2, 3], [5, 3], [5, 9], [2, 9]], float)
    right = np.array([[5, 3], [7, 3], [7, 9], [5, 9]], float)
    a, b = fill_polygons([left], (12, 12)), fill_polygons([right], (12, 12))
    assert not (a & b).any() and ((a | b) == expected).all()


def test_fill_even_odd_nesting_and_orientation():
    outer = np.array([[1, 1], [11, 1], [11, 11], [1, 11]], float) - 0.5
    hole = np.array([[3, 3], [3, 9], [9, 9], [9, 3]], float) - 0.5  # other winding: still a hole
    island = np.array([[5, 5], [7, 5], [7, 7], [5, 7]], float) - 0.5
    m = fill_polygons([outer, hole, island], (12, 12))
    assert m.sum() == 100 - 36 + 4
    assert m[1, 1] and not m[3, 3] and m[5, 5] and m[6, 6] and not m[7, 7]


def test_fill_clips_to_the_grid_and_is_fast():
    t = np.linspace(0, 2 * np.pi, 1000, endpoint=False)
    poly = np.column_stack([256 + 300 * np.cos(t), 256 + 200 * np.sin(t)])  # wider than the slice
    mask = fill_polygons([poly], (512, 512))
    j, i = np.mgrid[0:512, 0:512]
    inner = ((i - 256) / 300) ** 2 + ((j - 256) / 200) ** 2
    assert mask[inner < 0.999].all() and not mask[inner > 1.0].any()
    small = np.column_stack([256 + 200 * np.cos(t), 256 + 180 * np.sin(t)])
    fill_polygons([small], (512, 512))
    times = []
    for _ in range(5):
        start = time.perf_counter()
        fill_polygons([small], (512, 512))
        times.append(time.perf_counter() - start)
    assert min(times) < 0.05, f"a 512 x 512 slice with a 1000-point contour took {min(times) * 1e3:.1f} ms"


# -- analytic shapes on axial, oblique and flipped grids ---------------------------------------------------


@pytest.mark.parametrize("grid", sorted(GRIDS))
def test_discs_rings_and_squares_at_known_positions(grid):
    g = GRIDS[grid]
    ds = rtstruct([
        (1, "disc", [(ring(g, (40.3, 35.7), 21.0, 2), "CLOSED_PLANAR")]),
        (2, "ring", [(ring(g, (50, 40), 25.0, 3), "CLOSED_PLANAR"), (ring(g, (52, 41), 11.0, 3), "CLOSED_PLANAR")]),
        (3, "square", [(box(g, 10.5, 30.5, 60.5, 75.5, k), "CLOSED_PLANAR") for k in (1, 4)]),
    ])  # fmt: skip
    seg = read_rtstruct(ds, g)
    assert seg.kind == "RTSTRUCT" and seg.geometry == g and seg.names() == ["disc", "ring", "square"]
    assert all(not s.warnings for s in seg.segments), [s.warnings for s in seg.segments]

    disc = seg.segment(1).full(g.shape)
    inside, outside = disc_truth(g, (40.3, 35.7), 21.0)
    assert disc[2][inside].all() and not disc[2][outside].any() and disc.sum() == disc[2].sum()
    area = 0.5 * 720 * 21.0**2 * math.sin(2 * math.pi / 720)
    assert one_voxel_band(area, 2 * math.pi * 21.0, g, disc.sum())

    rings = seg.segment(2).full(g.shape)
    in_outer, out_outer = disc_truth(g, (50, 40), 25.0)
    in_hole, out_hole = disc_truth(g, (52, 41), 11.0)
    assert rings[3][in_outer & out_hole].all()
    assert not rings[3][in_hole].any(), "the nested contour must stay a hole"
    assert not rings[3][out_outer].any()
    area = 0.5 * 720 * (25.0**2 - 11.0**2) * math.sin(2 * math.pi / 720)
    assert one_voxel_band(area, 2 * math.pi * 36.0, g, rings.sum())

    square = seg.segment(3)
    assert square.box == (1, 61, 11) and square.mask.shape == (4, 15, 20)
    assert square.mask[0].all() and square.mask[3].all() and not square.mask[1:3].any()


def test_square_with_vertices_on_voxel_centres_covers_b_minus_a_on_every_grid():
    for name, g in GRIDS.items():
        seg = read_rtstruct(rtstruct([(7, "sq", [(box(g, 20, 30, 10, 25, 0), "CLOSED_PLANAR")])]), g)
        s = seg.segment(7)
        assert s.voxels == 10 * 15 and s.box == (0, 10, 20), name


def test_rois_paired_by_referenced_roi_number_not_list_order():
    g = GRIDS["axial"]
    shapes = {
        1: box(g, 5.5, 15.5, 5.5, 10.5, 1),  # 10 x 5
        2: box(g, 40.5, 47.5, 30.5, 33.5, 2),  # 7 x 3
        3: box(g, 60.5, 62.5, 60.5, 62.5, 3),  # 2 x 2
    }
    ds = rtstruct([(3, "three", [(shapes[3], "CLOSED_PLANAR")]), (1, "one", [(shapes[1], "CLOSED_PLANAR")]),
                   (2, "two", [(shapes[2], "CLOSED_PLANAR")])], contour_order=[2, 3, 1])  # fmt: skip
    seg = read_rtstruct(ds, g)
    assert [s.number for s in seg.segments] == [3, 1, 2] and seg.names() == ["three", "one", "two"]
    assert {s.name: (s.voxels, s.box) for s in seg.segments} == {
        "one": (50, (1, 6, 6)),
        "two": (21, (2, 31, 41)),
        "three": (4, (3, 61, 61)),
    }


def test_off_slice_contours_reported_never_silently_dropped():
    g = GRIDS["axial"]
    ds = rtstruct([
        (3, "GTV", [(box(g, 10.5, 20.5, 10.5, 20.5, 2), "CLOSED_PLANAR"),
                    (box(g, 10.5, 20.5, 10.5, 20.5, 7), "CLOSED_PLANAR"),  # beyond the last slice
                    (box(g, 10.5, 20.5, 10.5, 20.5, -1), "CLOSED_PLANAR")]),  # before the first
        (4, "between", [(box(g, 10.5, 20.5, 10.5, 20.5, 1.4), "CLOSED_PLANAR")]),
    ])  # fmt: skip
    seg = read_rtstruct(ds, g)
    gtv, between = seg.segment(3), seg.segment(4)
    assert gtv.voxels == 100 and gtv.box[0] == 2
    assert gtv.warnings == (
        "ROI 3 'GTV': 2 contours at no image slice (not within the slab of any slice of the image)",
    )
    assert between.voxels == 100 and between.box[0] == 1  # within slice 1's slab: the nearest slice
    assert "1 contour between slices (up to 0.40 slice" in between.warnings[0]
    strict = read_rtstruct(ds, g, slice_tolerance=0.25).segment(4)
    assert strict.empty and any("1 contour at no image slice" in w for w in strict.warnings)
    assert any("empty on this image" in w for w in strict.warnings)


def test_empty_rois_and_ignored_contour_types_reported():
    g = GRIDS["axial"]
    tiny = box(g, 10.1, 10.4, 10.1, 10.4, 0)  # encloses no voxel centre
    ds = rtstruct([
        (1, "declared only", None),
        (2, "no contours", []),
        (3, "tiny", [(tiny, "CLOSED_PLANAR")]),
        (4, "markers", [(g.index_to_physical([[5, 5, 1]]), "POINT"), (g.index_to_physical([[6, 6, 1]]), "POINT"),
                        (box(g, 1, 9, 1, 9, 1), "OPEN_PLANAR"), (box(g, 1.5, 3.5, 1.5, 3.5, 1), "CLOSED_PLANAR")]),
    ])  # fmt: skip
    seg = read_rtstruct(ds, g)
    assert [s.voxels for s in seg.segments] == [0, 0, 0, 4]
    w = {s.number: s.warnings for s in seg.segments}
    assert w[1] == ("ROI 1 'declared only': no contours (no ROIContourSequence item refers to it)",)
    assert w[2] == ("ROI 2 'no contours': no contours",)
    assert w[3] == ("ROI 3 'tiny': empty on this image (no contour encloses a voxel centre)",)
    assert "ROI 4 'markers': 1 OPEN_PLANAR contour ignored" in w[4][0] and "2 POINT contours ignored" in w[4][1]
    assert all(s.mask.shape == (0, 0, 0) for s in seg.segments[:3])


def test_undeclared_roi_number_and_duplicate_numbers():
    g = GRIDS["axial"]
    ds = rtstruct([(1, "one", [(box(g, 0.5, 2.5, 0.5, 2.5, 0), "CLOSED_PLANAR")])])
    ds.StructureSetROISequence[0].ROINumber = 9  # contours now refer to an undeclared ROI 1
    seg = read_rtstruct(ds, g)
    assert [(s.number, s.name, s.voxels) for s in seg.segments] == [(9, "one", 0), (1, "ROI 1", 4)]
    assert seg.warnings == ["ROI 1: contours for an ROI number the structure set does not declare (no name)"]
    ds = rtstruct([(1, "a", []), (2, "b", [])])
    ds.StructureSetROISequence[1].ROINumber = 1
    with pytest.raises(DicomError, match="ROI number 1 is declared twice"):
        read_rtstruct(ds, g)


def test_contours_not_in_the_slice_planes_refused_with_a_reason_or_skipped():
    g = GRIDS["oblique"]
    flat = g.index_to_physical(np.array([[20, 20, 2], [40, 20, 2], [40, 40, 2], [20, 40, 2]], float))
    tilt = rotation(g.direction[:, 0], 20)
    centre = flat.mean(axis=0)
    tilted = (flat - centre) @ tilt.T + centre
    bent = flat.copy()
    bent[2] += 3 * g.direction[:, 2] * g.spacing[2]  # one corner three slices off: not planar
    ds = rtstruct([(1, "PTV", [(tilted, "CLOSED_PLANAR"), (flat, "CLOSED_PLANAR")]),
                   (2, "bent", [(bent, "CLOSED_PLANAR")])])  # fmt: skip
    with pytest.raises(UnsupportedDicomError) as err:
        read_rtstruct(ds, g)
    text = str(err.value)
    assert "ROI 1 'PTV': 1 contour tilted up to 20.0 degrees to the image's slices" in text
    assert "ROI 2 'bent': 1 contour not planar" in text and "oblique='skip'" in text
    seg = read_rtstruct(ds, g, oblique="skip")
    assert seg.segment(1).voxels == 400 and seg.segment(2).empty
    assert "1 contour tilted up to 20.0 degrees to the image's slices: left out" in seg.segment(1).warnings[0]


def test_slab_union_of_two_planes_and_clipping_reported():
    g = GRIDS["axial"]
    ds = rtstruct([(1, "x", [(box(g, 10.5, 20.5, 10.5, 20.5, 2.0), "CLOSED_PLANAR"),
                             (box(g, 15.5, 25.5, 10.5, 20.5, 2.3), "CLOSED_PLANAR"),  # another plane, same slab
                             (box(g, -5.5, 3.5, 70.5, 90.5, 4), "CLOSED_PLANAR")])])  # fmt: skip
    s = read_rtstruct(ds, g).segment(1)
    full = s.full(g.shape)
    assert full[2].sum() == 150  # union, not XOR, of contours from two planes
    assert full[4].sum() == 4 * 9  # clipped at i = 0 and j = 79
    assert any("1 contour reaching outside the image, clipped" in w for w in s.warnings)


# -- files, series, errors, privacy --------------------------------------------------------------------


def oblique_series(folder: Path, *, flipped=False):
    """A 6-slice CT with a rotated (or reversed) ImageOrientationPatient; returns IPPs, row, col, spacing."""
    r = rotation((1, 1, 0), 25)
    row, col = r[:, 0], r[:, 1]
    if flipped:
        row, col = -row, col
    normal = np.cross(row, col)
    origin = np.array([-20.0, 10.0, 30.0])
    positions = [origin + k * 3.0 * normal for k in range(6)]
    if flipped:
        positions = positions[::-1]
    write_stack(folder, positions, rows=40, cols=48, orientation=(*row, *col), pixel_spacing=(1.25, 0.75),
                FrameOfReferenceUID=FRAME_UID)  # fmt: skip
    return np.array(positions), row, col, (1.25, 0.75)


@pytest.mark.parametrize("flipped", [False, True])
def test_read_on_series_uses_the_loaders_grid(tmp_path, flipped):
    positions, row, col, (dr, dc) = oblique_series(tmp_path / "ct", flipped=flipped)
    # a disc drawn on the third written slice, in DICOM terms: IPP + x * row + y * col (mm)
    t = np.linspace(0, 2 * np.pi, 500, endpoint=False)
    cx, cy, radius = 20.0 * dc, 17.0 * dr, 9.0  # centre at column 20, row 17
    points = positions[2] + np.outer(cx + radius * np.cos(t), row) + np.outer(cy + radius * np.sin(t), col)
    path = save(rtstruct([(5, "Liver", [(points, "CLOSED_PLANAR")])]), tmp_path / "rt" / "rs.dcm")
    volume, seg = read_rtstruct_on_series(path, tmp_path / "ct")
    assert seg.geometry == volume.geometry == load_path(tmp_path / "ct").geometry
    full = seg.segment(5).full(volume.geometry.shape)
    slice_index = int(np.flatnonzero(full.any(axis=(1, 2)))[0])
    assert full.sum() == full[slice_index].sum()
    centre = volume.geometry.physical_to_index(positions[2] + cx * row + cy * col)
    assert abs(centre[2] - slice_index) < 1e-6
    g = volume.geometry
    j, i = np.mgrid[0 : g.size[1], 0 : g.size[0]]
    d = np.hypot((i - centre[0]) * g.spacing[0], (j - centre[1]) * g.spacing[1])
    assert full[slice_index][d < radius * math.cos(math.pi / 500) - 1e-6].all()
    assert not full[slice_index][d > radius + 1e-6].any()


def test_bad_files_are_typed_errors_without_paths_or_identity(tmp_path):
    g = GRIDS["axial"]
    secret = tmp_path / "Doe_Jane"
    with pytest.raises(InputError) as err:
        read_rtstruct(secret / "missing.dcm", g)
    assert "Doe_Jane" not in str(err.value) and "Doe_Jane" in err.value.detail
    (secret).mkdir()
    (secret / "junk.dcm").write_bytes(b"not dicom at all")
    with pytest.raises(UnsupportedDicomError, match="not an RT Structure Set") as err:
        read_rtstruct(secret / "junk.dcm", g)
    assert "Doe_Jane" not in str(err.value)
    write_stack(secret / "ct", [(0, 0, 0)], rows=4, cols=4)
    ct_file = next((secret / "ct").iterdir())
    with pytest.raises(UnsupportedDicomError, match=r"not an RT Structure Set \(modality CT\)"):
        read_rtstruct(ct_file, g)
    with pytest.raises(ArgumentError):
        read_rtstruct(rtstruct([]), g, slice_tolerance=0.7)
    with pytest.raises(ArgumentError):
        read_rtstruct(rtstruct([]), g, oblique="resample")
    assert read_rtstruct(rtstruct([]), g).warnings == ["the structure set declares no ROI"]


def test_no_header_field_but_roi_names_reaches_messages(tmp_path):
    g = GRIDS["axial"]
    ds = rtstruct([(1, "Heart", [(box(g, 1.5, 3.5, 1.5, 3.5, 9), "CLOSED_PLANAR")]), (2, "Lung", None)])
    path = save(ds, tmp_path / "Doe_Jane" / "rs.dcm")
    seg = read_rtstruct(path, g)
    text = json.dumps([seg.warnings, [list(s.warnings) for s in seg.segments], seg.names()])
    for secret in ("Secret", "PID-SECRET", "SECRETLABEL", FRAME_UID, str(ds.SOPInstanceUID), "Doe_Jane", "rs.dcm"):
        assert secret not in text
    assert "Heart" in text and "Lung" in text


# -- the real corpus -------------------------------------------------------------------------------------


def corpus_case(name: str) -> Path:
    case = LABELS / name
    if not (LABELS / "MANIFEST.tsv").is_file() or not case.is_dir():
        pytest.skip(f"segmentation corpus case {name} not found under {LABELS} (place ../shared/corpus/labels)")
    return case


def reference_mask(case: Path, name: str) -> np.ndarray:
    nib = pytest.importorskip("nibabel")
    data = np.asarray(nib.load(case / "reference" / name).dataobj)
    return data.transpose(2, 1, 0) > 0  # NIfTI (x, y, z) to (z, y, x)


def boundary_band(mask: np.ndarray) -> np.ndarray:
    """The voxels within one in-plane voxel (8-neighbourhood) of ``mask``'s boundary, on both sides."""
    square = np.ones((1, 3, 3), bool)
    return ndimage.binary_dilation(mask, square) & ~ndimage.binary_erosion(mask, square)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


def test_corpus_4roi_missing_slice_matches_plastimatch_and_reports_off_slice_contours():
    case = corpus_case("rt_rtutils_4roi_missing_slice")
    reference = json.loads((case / "reference" / "reference.json").read_text())
    volume, seg = read_rtstruct_on_series(case / "rtstruct" / "dummy_rt.dcm", case / "image")
    assert [s.number for s in seg.segments] == [r["roi_number"] for r in reference["rois"]]
    for roi in reference["rois"]:
        s = seg.segment(roi["roi_number"])
        assert s.name == roi["roi_name"]
        ours = s.full(volume.geometry.shape)
        ref = reference_mask(case, f"plastimatch_roi{roi['roi_number']}.nii.gz")
        assert dice(ours, ref) >= 0.97, (s.name, dice(ours, ref))
        missing = len(roi["contour_z_not_on_image_slice"])
        assert missing and any(f"{missing} contour at no image slice" in w for w in s.warnings), s.warnings


def test_corpus_nested_contours_keep_their_hole():
    case = corpus_case("rt_rtutils_two_contours")
    volume, seg = read_rtstruct_on_series(case / "rtstruct" / "rt.dcm", case / "image")
    ours = seg.segment(1).full(volume.geometry.shape)
    union = reference_mask(case, "plastimatch_roi1.nii.gz")  # no hole: the upper bound
    holed = reference_mask(case, "rtutils_roi1.nii.gz")  # hole, vertices rounded to pixels
    assert not (ours & ~union).any()
    hole = union & ~holed
    band = boundary_band(holed)
    assert not (ours & hole & ~band).any(), "the voxels inside the inner contour must stay out"
    assert not ((ours ^ holed) & ~band).any(), "differences from rt-utils only within one voxel of its boundary"
    # the exact polygon areas (shoelace, in voxels) of the outer square minus the inner octagon
    import pydicom

    items = pydicom.dcmread(case / "rtstruct" / "rt.dcm").ROIContourSequence[0].ContourSequence
    areas = []
    for c in items:
        p = volume.geometry.physical_to_index(np.asarray(c.ContourData, float).reshape(-1, 3))
        areas.append(0.5 * abs(np.dot(p[:, 0], np.roll(p[:, 1], -1)) - np.dot(p[:, 1], np.roll(p[:, 0], -1))))
    exact = max(areas) - min(areas)
    perimeter = 4 * math.sqrt(max(areas)) + 4 * math.sqrt(min(areas))
    assert abs(ours.sum() - exact) <= perimeter
    assert dice(ours, holed) >= 0.9 and ours.sum() < union.sum() - 0.9 * (union & ~holed).sum()


# -- plastimatch, when installed ----------------------------------------------------------------------------


def test_against_plastimatch_when_installed(tmp_path):
    exe = shutil.which("plastimatch")
    if exe is None:
        pytest.skip("plastimatch is not installed (apt-get install plastimatch)")
    rows, cols = 64, 72
    positions = [(-30.0, -20.0, 10.0 + 2.5 * k) for k in range(5)]
    write_stack(tmp_path / "ct", positions, rows=rows, cols=cols, pixel_spacing=(0.8, 0.9),
                FrameOfReferenceUID=FRAME_UID)  # fmt: skip
    g = load_path(tmp_path / "ct").geometry
    rois = [
        (1, "disc", [(ring(g, (30.2, 31.7), 15.0, k, n=200), "CLOSED_PLANAR") for k in (1, 2, 3)]),
        (2, "square", [(box(g, 5.3, 20.7, 40.2, 58.9, k), "CLOSED_PLANAR") for k in (0, 4)]),
        (3, "ellipse", [(g.index_to_physical(np.column_stack([50 + 12 * np.cos(t), 20 + 6 * np.sin(t), np.full(90, 2.0)])),
                         "CLOSED_PLANAR") for t in [np.linspace(0, 2 * np.pi, 90, endpoint=False)]]),
    ]  # fmt: skip
    path = save(rtstruct(rois), tmp_path / "rs.dcm")
    seg = read_rtstruct(path, g)
    out = tmp_path / "pm"
    done = subprocess.run([exe, "convert", "--input", str(path), "--referenced-ct", str(tmp_path / "ct"),
                           "--output-prefix", str(out), "--prefix-format", "nii.gz"],
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    nib = pytest.importorskip("nibabel")
    for s in seg.segments:
        ref = np.asarray(nib.load(out / f"{s.name}.nii.gz").dataobj).transpose(2, 1, 0) > 0
        ours = s.full(g.shape)
        assert dice(ours, ref) >= 0.97, (s.name, dice(ours, ref))
        assert not ((ours ^ ref) & ~boundary_band(ref)).any(), (
            f"{s.name}: differences from plastimatch away from its boundary"
        )
