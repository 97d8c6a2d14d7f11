"""DICOM SEG -> segments on the image grid (MedPrepLib.segmentation.dicom_seg), issue 10 acceptance 1.

Corpus: every segment of every SEG case of ../shared/corpus/labels equals its reference voxel for
voxel (FRACTIONAL at the 0.5 threshold, fraction maps within 1e-6). The CT2 cases' series has a
202.5 mm gap that MedPrep's loader refuses (GeometryError, whatever the geometry policy): the SEG
is refused with the same error on the series, and compared on the raw stack
(``load_stack(regularize=False)``) slice by slice, whose SOPInstanceUIDs are the reference's.

Synthetic: SEGs written by highdicom's own writer on synthetic CT series (dicom_factory): an
oblique series, frames stored in shuffled order, a SEG covering some slices, a BINARY SEG whose
frames are not byte aligned (7 x 9 pixels), FRACTIONAL and LABELMAP SEGs, overlapping segments,
a wrong FrameOfReferenceUID, frames off the grid, and series the loader resamples (a gantry tilt,
a missing slice), where the label must equal the same mask loaded as an image and cut at 0.5.
"""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from conftest import CORPUS

from MedPrepLib.errors import (
    ArgumentError,
    GeometryError,
    LabelError,
    MissingDependencyError,
    UnsupportedDicomError,
)
from MedPrepLib.geometry import Geometry

pydicom = pytest.importorskip("pydicom")
pytestmark = pytest.mark.pydicom_dependent  # runs under pydicom 2.4.4 too: there it checks the error

PYDICOM3 = int(pydicom.__version__.split(".")[0]) >= 3
if PYDICOM3:
    hd = pytest.importorskip("highdicom", reason='highdicom not installed (pip install "medprep[labels]")')
needs_highdicom = pytest.mark.skipif(
    not PYDICOM3, reason=f"highdicom needs pydicom >= 3 (this run has pydicom {pydicom.__version__}): DICOM SEG tests skipped"
)

from dicom_factory import new_uid, series_positions, write_stack  # noqa: E402

from MedPrepLib.dicom.load import load_stack  # noqa: E402
from MedPrepLib.segmentation.dicom_seg import read_seg, read_seg_on_series  # noqa: E402
from MedPrepLib.sources import find_stacks, load_path  # noqa: E402

LABELS = CORPUS / "labels"
# what highdicom's writer copies from the source images (type 2: present, may be empty)
PATIENT_STUDY = dict(PatientBirthDate="", PatientSex="", StudyDate="", StudyTime="", ReferringPhysicianName="",
                     StudyID="", AccessionNumber="")  # fmt: skip


# -- synthetic series and SEGs ------------------------------------------------------------------


def write_ct(folder, positions, orientation=(1, 0, 0, 0, 1, 0), *, rows=12, cols=10, frame_uid=None, pixels=None):
    """A CT series at ``positions``; returns its datasets sorted by position along the normal."""
    frame_uid = frame_uid or new_uid()
    write_stack(folder, positions, rows=rows, cols=cols, orientation=orientation, pixel_spacing=(0.7, 0.8),
                FrameOfReferenceUID=frame_uid, **PATIENT_STUDY)  # fmt: skip
    if pixels is not None:  # the mask itself as the image (values 0/1000), to see how the loader resamples it
        for f in folder.glob("*.dcm"):
            ds = pydicom.dcmread(f)
            k = int(f.stem.split("-")[-1])
            ds.PixelData = (pixels[k].astype(np.uint16) * 1000).tobytes()
            ds.RescaleIntercept = "0"
            ds.save_as(f)
    normal = np.cross(orientation[:3], orientation[3:])
    datasets = [pydicom.dcmread(f) for f in folder.glob("*.dcm")]
    return sorted(datasets, key=lambda d: float(np.dot(np.asarray(d.ImagePositionPatient, float), normal)))


def segment_description(number, label, kind):
    from pydicom.sr.codedict import codes

    prop = {"liver": codes.SCT.Liver, "spleen": codes.SCT.Spleen}[kind]
    return hd.seg.SegmentDescription(number, label, codes.SCT.Tissue, prop, "MANUAL")


def write_seg(path, sources, pixels, seg_type="BINARY", labels=("liver",), **kwargs):
    """A SEG made by highdicom's writer: ``pixels`` (slices, rows, cols[, segments]) on ``sources``."""
    descriptions = [segment_description(n + 1, name, name) for n, name in enumerate(labels)]
    seg = hd.seg.Segmentation(sources, pixels, seg_type, descriptions, new_uid(), 7, new_uid(), 1, "MedPrep tests",
                              "synthetic", "0", "0", **kwargs)  # fmt: skip
    seg.save_as(path)
    return path


def shuffle_frames(path, seed=3):
    """Rewrite a SEG with its frames (pixels and per-frame groups together) in another order."""
    from pydicom.pixels import pack_bits

    seg = hd.seg.segread(path)
    frames = seg.get_stored_frames(range(seg.number_of_frames), as_indices=True)
    order = np.random.default_rng(seed).permutation(seg.number_of_frames)
    while np.array_equal(order, np.arange(len(order))) or np.array_equal(order, np.arange(len(order))[::-1]):
        order = np.random.default_rng(seed := seed + 1).permutation(len(order))
    ds = pydicom.dcmread(path)
    items = list(ds.PerFrameFunctionalGroupsSequence)
    ds.PerFrameFunctionalGroupsSequence = [items[i] for i in order]
    shuffled = frames[order]
    ds.PixelData = pack_bits(shuffled.ravel()) if ds.BitsAllocated == 1 else shuffled.astype(np.uint8).tobytes()
    ds.save_as(path)
    return [float(items[i].PlanePositionSequence[0].ImagePositionPatient[2]) for i in order]


def transpose_and_flip_frames(path):
    """Rewrite a SEG with every frame stored transposed and upside down, its plane geometry
    changed to match (rows along the image's columns, running backwards): the same voxels."""
    from pydicom.pixels import pack_bits

    seg = hd.seg.segread(path)
    frames = seg.get_stored_frames(range(seg.number_of_frames), as_indices=True)
    ds = pydicom.dcmread(path)
    sr, sc = (float(v) for v in ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing)
    orientation = np.asarray(ds.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0].ImageOrientationPatient, float)
    u, v = orientation[:3], orientation[3:]
    ds.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0].ImageOrientationPatient = [*v, *(-u)]
    ds.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing = [sc, sr]
    for item in ds.PerFrameFunctionalGroupsSequence:
        plane = item.PlanePositionSequence[0]
        plane.ImagePositionPatient = [f"{x:.6f}" for x in np.asarray(plane.ImagePositionPatient, float) + (ds.Columns - 1) * sc * u]
    ds.Rows, ds.Columns = ds.Columns, ds.Rows
    turned = np.ascontiguousarray(frames.transpose(0, 2, 1)[:, ::-1, :])
    ds.PixelData = pack_bits(turned.ravel())
    ds.save_as(path)


def oblique_orientation(angle_deg=25.0):
    a = np.radians(angle_deg)
    row = np.array([np.cos(a), np.sin(a), 0.0])
    col = np.array([-np.sin(a) * np.cos(0.3), np.cos(a) * np.cos(0.3), np.sin(0.3)])
    return tuple(row) + tuple(col)


def positions_along(orientation, n, step=2.5, origin=(-11.0, -9.0, 4.0)):
    normal = np.cross(orientation[:3], orientation[3:])
    return np.array([np.asarray(origin) + k * step * normal for k in range(n)])


def blob(shape, seed=0):
    """A deterministic irregular mask (z, y, x)."""
    rng = np.random.default_rng(seed)
    return (rng.random(shape) > 0.55).astype(np.uint8)


# -- the corpus -----------------------------------------------------------------------------------


def seg_cases():
    manifest = LABELS / "MANIFEST.tsv"
    if not manifest.is_file():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"label corpus not found at {LABELS} (set MEDPREP_CORPUS)"))]
    rows = [line.split("\t") for line in manifest.read_text().splitlines()]
    return [pytest.param(r[0], marks=pytest.mark.corpus) for r in rows[1:] if len(r) > 1 and r[1] == "SEG"]


def reference_mask(path, dtype=bool):
    nib = pytest.importorskip("nibabel")
    return np.transpose(np.asarray(nib.load(path).dataobj), (2, 1, 0)).astype(dtype)  # NIfTI (x, y, z) -> (z, y, x)


def image_frame_of_reference(folder):
    stack = find_stacks(folder).stacks[0]
    return str(pydicom.dcmread(stack.headers[0].path, stop_before_pixels=True).FrameOfReferenceUID)


@needs_highdicom
@pytest.mark.parametrize("case", seg_cases())
def test_corpus_seg_equals_reference_voxel_for_voxel(case):
    folder = LABELS / case
    ref = json.loads((folder / "reference" / "reference.json").read_text())
    seg_file, image_folder = folder / ref["seg_file"], folder / "image"
    try:
        image, seg = read_seg_on_series(seg_file, image_folder, keep_fractions=True)
        compared = "on the grid MedPrep's loader gives"
        assert np.allclose(image.geometry.affine_lps(), np.asarray(ref["image_grid"]["affine_lps"]), atol=1e-3)
    except GeometryError as refused:
        # the loader refuses this series (a 202.5 mm gap): so does the SEG, with the loader's words
        with pytest.raises(GeometryError) as loader:
            load_path(image_folder)
        assert str(refused) == str(loader.value)
        # and on the raw stack the frames land on the acquired slices, matched by SOPInstanceUID
        image = load_stack(find_stacks(image_folder).stacks[0], regularize=False)
        seg = read_seg(seg_file, image, keep_fractions=True, frame_of_reference_uid=image_frame_of_reference(image_folder))
        uids = [i["sop_instance_uid"] for i in image.metadata["provenance"]["source_instances"]]
        assert uids == ref["image_grid"]["sop_instance_uids"]
        compared = "on the raw stack, by slice index / SOPInstanceUID"
    assert image.shape == tuple(ref["image_grid"]["shape_kji"]), compared
    expected = {s["segment_number"]: s for s in ref["segments"]}
    assert sorted(s.number for s in seg.segments) == sorted(expected), compared
    for s in seg.segments:
        want = reference_mask(folder / "reference" / f"segment_{s.number}.nii.gz")
        got = s.full(image.geometry.shape)
        assert s.name == expected[s.number]["label"]
        assert s.voxels == expected[s.number]["voxels"] == int(want.sum())
        assert np.array_equal(got, want), f"{case} segment {s.number} differs {compared}"
        assert len(s.terminology) == 2 and all(len(t) == 3 and t[1] for t in s.terminology)
        fraction_file = folder / "reference" / f"segment_{s.number}_fraction.nii.gz"
        if fraction_file.exists():
            full = np.zeros(image.geometry.shape, np.float32)
            full[s.slices()] = s.fraction
            assert np.allclose(full, reference_mask(fraction_file, np.float32), atol=1e-6)
        else:
            assert s.fraction is None
    if "overlap" in case:  # kept separate: the overlap is still there
        a, b = (s.full(image.geometry.shape) for s in seg.segments)
        assert (a & b).sum() == 16


# -- synthetic SEGs ---------------------------------------------------------------------------------


@needs_highdicom
def test_oblique_series_shuffled_frames(tmp_path):
    orientation = oblique_orientation()
    sources = write_ct(tmp_path / "ct", positions_along(orientation, 6), orientation)
    truth = blob((6, 12, 10))
    seg_file = write_seg(tmp_path / "seg.dcm", sources, truth, omit_empty_frames=False)
    stored_z = shuffle_frames(seg_file)
    assert stored_z != sorted(stored_z) and stored_z != sorted(stored_z, reverse=True)
    image, seg = read_seg_on_series(seg_file, tmp_path / "ct")
    assert image.geometry.is_oblique()
    assert [s.name for s in seg.segments] == ["liver"]
    assert np.array_equal(seg.segments[0].full(image.geometry.shape), truth.astype(bool))
    assert seg.warnings == []


@needs_highdicom
def test_seg_on_some_slices_non_byte_aligned(tmp_path):
    sources = write_ct(tmp_path / "ct", series_positions(7)[0], rows=7, cols=9)
    truth = np.zeros((7, 7, 9), np.uint8)
    truth[2:5] = blob((3, 7, 9), seed=5)
    seg_file = write_seg(tmp_path / "seg.dcm", sources, truth)  # empty frames omitted: slices 2-4 only
    stored = pydicom.dcmread(seg_file)
    assert stored.NumberOfFrames == 3 and stored.BitsAllocated == 1 and (7 * 9) % 8 != 0
    image, seg = read_seg_on_series(seg_file, tmp_path / "ct")
    s = seg.segments[0]
    assert np.array_equal(s.full(image.geometry.shape), truth.astype(bool))
    assert s.box[0] == 2 and s.mask.shape[0] == 3


@needs_highdicom
def test_frames_stored_transposed_and_flipped(tmp_path):
    sources = write_ct(tmp_path / "ct", series_positions(3)[0], rows=7, cols=9)
    truth = blob((3, 7, 9), seed=8)
    seg_file = write_seg(tmp_path / "seg.dcm", sources, truth, omit_empty_frames=False)
    transpose_and_flip_frames(seg_file)
    assert (pydicom.dcmread(seg_file).Rows, pydicom.dcmread(seg_file).Columns) == (9, 7)
    image, seg = read_seg_on_series(seg_file, tmp_path / "ct")
    assert np.array_equal(seg.segments[0].full(image.geometry.shape), truth.astype(bool))


@needs_highdicom
def test_frames_without_source_references_are_placed_by_position(tmp_path):
    sources = write_ct(tmp_path / "ct", series_positions(4)[0])
    truth = blob((4, 12, 10), seed=2)
    seg_file = write_seg(tmp_path / "ct" / "seg.dcm", sources, truth)  # inside the series folder: the scan skips it
    ds = pydicom.dcmread(seg_file)
    for item in ds.PerFrameFunctionalGroupsSequence:
        del item.DerivationImageSequence
    ds.save_as(seg_file)
    image, seg = read_seg_on_series(seg_file, tmp_path / "ct")
    assert np.array_equal(seg.segments[0].full(image.geometry.shape), truth.astype(bool))


@needs_highdicom
def test_fractional_threshold_and_fraction_maps(tmp_path):
    sources = write_ct(tmp_path / "ct", series_positions(3)[0])
    fraction = np.random.default_rng(1).integers(0, 201, (3, 12, 10)).astype(np.float32) / 200  # multiples of 1/200
    seg_file = write_seg(tmp_path / "seg.dcm", sources, fraction, "FRACTIONAL", max_fractional_value=200,
                         omit_empty_frames=False)  # fmt: skip
    image, seg = read_seg_on_series(seg_file, tmp_path / "ct", keep_fractions=True)
    s = seg.segments[0]
    assert np.array_equal(s.full(image.geometry.shape), fraction >= 0.5)
    full = np.zeros(image.geometry.shape, np.float32)
    full[s.slices()] = s.fraction
    assert np.allclose(full, fraction, atol=1e-6)
    _, strict = read_seg_on_series(seg_file, tmp_path / "ct", fractional_threshold=0.9)
    assert np.array_equal(strict.segments[0].full(image.geometry.shape), fraction >= 0.9)
    assert strict.segments[0].fraction is None


@needs_highdicom
def test_labelmap_and_overlapping_binary_segments(tmp_path):
    sources = write_ct(tmp_path / "ct", series_positions(4)[0])
    liver = np.zeros((4, 12, 10), bool)
    liver[1:3, 2:8, 2:6] = True
    spleen = np.zeros_like(liver)
    spleen[2:4, 5:10, 4:9] = True
    both = np.stack([liver, spleen], axis=-1).astype(np.uint8)
    _, overlap = read_seg_on_series(write_seg(tmp_path / "b.dcm", sources, both, labels=("liver", "spleen")),
                                      tmp_path / "ct")  # fmt: skip
    got = {s.name: s.full(liver.shape) for s in overlap.segments}
    assert np.array_equal(got["liver"], liver) and np.array_equal(got["spleen"], spleen) and (liver & spleen).any()
    assert [s.terminology[1][2] for s in overlap.segments] == ["Liver", "Spleen"]

    spleen &= ~liver
    labelmap = (liver * 1 + spleen * 2).astype(np.uint8)
    labelmap[0] = 0  # an empty slice: not encoded
    seg_file = write_seg(tmp_path / "l.dcm", sources, labelmap, "LABELMAP", labels=("liver", "spleen"))
    _, seg = read_seg_on_series(seg_file, tmp_path / "ct")
    got = {s.number: s.full(liver.shape) for s in seg.segments}
    assert sorted(got) == [1, 2]  # highdicom's writer declares no Background segment (corpus: one that does)
    assert np.array_equal(got[1], liver) and np.array_equal(got[2], spleen)
    assert pydicom.dcmread(seg_file).NumberOfFrames < 4  # the empty slice is not encoded


@needs_highdicom
def test_wrong_frame_of_reference_is_refused(tmp_path):
    sources = write_ct(tmp_path / "ct", series_positions(3)[0])
    seg_file = write_seg(tmp_path / "seg.dcm", sources, blob((3, 12, 10)))
    ds = pydicom.dcmread(seg_file)
    ds.FrameOfReferenceUID = other = new_uid()
    ds.save_as(seg_file)
    with pytest.raises(LabelError, match="frame of reference") as refused:
        read_seg_on_series(seg_file, tmp_path / "ct")
    assert other not in str(refused.value) and str(tmp_path) not in str(refused.value)
    assert refused.value.detail == str(seg_file)


@needs_highdicom
def test_frames_off_the_grid_are_reported_or_refused(tmp_path):
    positions = series_positions(5)[0]
    frame_uid = new_uid()
    sources = write_ct(tmp_path / "long", positions, frame_uid=frame_uid)
    truth = blob((5, 12, 10), seed=4)
    seg_file = write_seg(tmp_path / "seg.dcm", sources, truth)
    # the same frame of reference, but only the first three slices: two frames beyond them
    write_ct(tmp_path / "short", positions[:3], frame_uid=frame_uid)
    image, seg = read_seg_on_series(seg_file, tmp_path / "short")
    s = seg.segments[0]
    assert np.array_equal(s.full(image.geometry.shape), truth[:3].astype(bool))
    lost = int(truth[3:].sum())
    assert any("2 frames off the image grid" in w and f"{lost} voxels" in w for w in s.warnings)
    assert set(s.warnings) <= set(seg.warnings)
    with pytest.raises(LabelError, match="off the image grid"):
        read_seg_on_series(seg_file, tmp_path / "short", off_grid="reject")
    # half a slice away: no frame is on any slice -> refused, never an empty label
    write_ct(tmp_path / "shifted", positions + [0, 0, 1.25], frame_uid=frame_uid)
    with pytest.raises(LabelError, match="none of the SEG's frames"):
        read_seg_on_series(seg_file, tmp_path / "shifted")
    # half a pixel away in-plane: the same
    write_ct(tmp_path / "sideways", positions + [0.35, 0, 0], frame_uid=frame_uid)
    with pytest.raises(LabelError, match="another pixel grid"):
        read_seg_on_series(seg_file, tmp_path / "sideways")


@needs_highdicom
@pytest.mark.parametrize("irregularity", ["tilt", "missing slice"])
def test_resampled_series_label_follows_the_loader(tmp_path, irregularity):
    """Where the loader resamples a series, the SEG is resampled the same way: it equals the mask
    loaded as an image (values 0/1000) through the loader and cut at half."""
    n = 6
    if irregularity == "tilt":
        positions, orientation = series_positions(n, tilt_deg=12.0)
    else:
        positions, orientation = series_positions(n + 1)
        positions = np.delete(positions, 3, axis=0)
    truth = np.zeros((n, 12, 10), np.uint8)
    truth[1:5, 3:9, 2:7] = 1
    truth[2, 4:6, 6:9] = 1
    sources = write_ct(tmp_path / "ct", positions, orientation)
    seg_file = write_seg(tmp_path / "seg.dcm", sources, truth)
    image, seg = read_seg_on_series(seg_file, tmp_path / "ct")
    assert image.metadata["regularized"]
    write_ct(tmp_path / "mask", positions, orientation, pixels=truth)
    as_image = load_path(tmp_path / "mask")
    assert as_image.geometry == image.geometry
    got = seg.segments[0].full(image.geometry.shape)
    assert np.array_equal(got, as_image.array >= 500)
    if irregularity == "tilt":  # the grid widened to hold the sheared slices: not the acquired one
        assert image.shape[1] > truth.shape[1]
    else:  # the missing slice is interpolated, the label too
        assert image.shape[0] == n + 1 and got[3].any()
    with pytest.raises(GeometryError):
        read_seg_on_series(seg_file, tmp_path / "ct", geometry_policy="reject")


@needs_highdicom
def test_geometry_alone_and_privacy(tmp_path):
    sources = write_ct(tmp_path / "ct", series_positions(3)[0])
    truth = blob((3, 12, 10), seed=7)
    seg_file = write_seg(tmp_path / "seg.dcm", sources, truth)
    image = load_path(tmp_path / "ct")
    seg = read_seg(seg_file, Geometry(image.geometry.size, image.geometry.spacing, image.geometry.origin,
                                      image.geometry.direction))  # fmt: skip
    assert np.array_equal(seg.segments[0].full(image.geometry.shape), truth.astype(bool))
    assert any("FrameOfReferenceUID is unknown" in w for w in seg.warnings)
    ds = pydicom.dcmread(seg_file)
    secrets = [str(ds.SOPInstanceUID), str(ds.SeriesInstanceUID), str(ds.FrameOfReferenceUID), "Synthetic", "SYNTH",
               str(tmp_path)]  # fmt: skip
    text = " ".join(seg.warnings + [w for s in seg.segments for w in s.warnings] + seg.names())
    assert not any(secret in text for secret in secrets)


@needs_highdicom
def test_bad_inputs(tmp_path):
    sources = write_ct(tmp_path / "ct", series_positions(2)[0])
    seg_file = write_seg(tmp_path / "seg.dcm", sources, blob((2, 12, 10)))
    geometry = load_path(tmp_path / "ct").geometry
    with pytest.raises(UnsupportedDicomError, match="not a DICOM SEG") as not_seg:
        read_seg(sorted((tmp_path / "ct").glob("*.dcm"))[0], geometry)
    assert str(tmp_path) not in str(not_seg.value)
    with pytest.raises(ArgumentError):
        read_seg(seg_file, geometry, fractional_threshold=0)
    with pytest.raises(ArgumentError):
        read_seg(seg_file, geometry, off_grid="ignore")


@needs_highdicom
def test_missing_highdicom_names_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "highdicom", None)
    with pytest.raises(MissingDependencyError, match=r"highdicom.*medprep\[labels\]"):
        read_seg(tmp_path / "any.dcm", Geometry.from_shape((1, 2, 2)))


@pytest.mark.skipif(PYDICOM3, reason="checks the message on pydicom 2.4 (Testing/run_pydicom24.sh)")
def test_pydicom2_says_highdicom_needs_pydicom3(tmp_path):
    with pytest.raises(MissingDependencyError, match=r"pydicom >= 3"):
        read_seg(tmp_path / "any.dcm", Geometry.from_shape((1, 2, 2)))
