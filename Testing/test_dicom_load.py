"""Loading details: geometric slice order, Modality LUT types, BitsStored, tilt geometry,
provenance without identity, grouping stability, direct pixel reads vs pydicom on the corpus,
and refusals for enhanced / mosaic objects without geometry."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")

from conftest import corpus_case_dir, corpus_cases  # noqa: E402
from dicom_factory import expected_stored, new_uid, save, series_positions, write_ct_series, write_slice  # noqa: E402

from MedPrepLib.dicom import pixels as pixels_module  # noqa: E402
from MedPrepLib.dicom.group import group_stacks  # noqa: E402
from MedPrepLib.dicom.header import SkipFile, read_header  # noqa: E402
from MedPrepLib.dicom.load import load_stack  # noqa: E402
from MedPrepLib.dicom.pixels import apply_modality_lut, fix_bits_stored, read_frames_into, stored_dtype  # noqa: E402
from MedPrepLib.errors import GeometryError  # noqa: E402
from MedPrepLib.sources import load_files, load_path  # noqa: E402

pytestmark = pytest.mark.pydicom_dependent


def _headers(folder):
    return [read_header(str(p)) for p in sorted(folder.iterdir())]


def test_slices_sorted_by_position_not_name_or_instance_number(tmp_path):
    write_ct_series(tmp_path, 6, step=1.5)  # names shuffled, InstanceNumber reversed
    vol = load_path(tmp_path)
    for k in range(6):
        np.testing.assert_array_equal(vol.array[k], expected_stored(k, 24, 32) - 1024)
    assert vol.origin == pytest.approx((-11, -11, 0))
    assert vol.spacing == pytest.approx((0.8, 0.7, 1.5))
    positions = np.array(vol.metadata["slice_positions"])
    assert np.all(np.diff(positions[:, 2]) > 0)


def test_provenance_lists_ordered_instances_and_no_identity(tmp_path):
    paths = write_ct_series(tmp_path, 4, rescale=(1.0, -1024.0))
    vol = load_path(tmp_path)
    prov = vol.metadata["provenance"]
    uids = [pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID for p in paths]
    assert [i["sop_instance_uid"] for i in prov["source_instances"]] == uids
    assert all("file" not in i for i in prov["source_instances"])  # provenance is written: no file names
    assert prov["rescale"] == {"slope": 1.0, "intercept": -1024.0, "varies_per_slice": False, "output_dtype": "int16"}
    text = json.dumps(vol.metadata)
    assert "Synthetic" not in text and "SYNTH-0001" not in text


def test_modality_lut_types():
    buf = np.array([[[0, 10]], [[20, 4095]]], dtype=np.uint16)
    out = apply_modality_lut(buf.copy(), np.array([1.0, 1.0]), np.array([-1024.0, -1024.0]))
    assert out.dtype == np.int16
    np.testing.assert_array_equal(out, buf.astype(np.int64) - 1024)
    out = apply_modality_lut(buf.copy(), np.array([1.0, 2.0]), np.array([0.0, 0.0]))
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out[1], buf[1] * 2.0)
    out = apply_modality_lut(buf.copy(), np.array([0.5, 0.5]), np.array([0.0, 0.0]))
    assert out.dtype == np.float32 and out[1, 0, 1] == 2047.5
    big = np.array([[[0, 60000]]], dtype=np.uint16)
    out = apply_modality_lut(big.copy(), np.array([1.0]), np.array([0.0]))
    assert out.dtype == np.int32 and out.max() == 60000


def test_per_slice_rescale_gives_float(tmp_path):
    paths = write_ct_series(tmp_path, 3)
    for k, p in enumerate(paths):
        ds = pydicom.dcmread(p)
        ds.RescaleSlope = f"{0.5 + k:g}"
        ds.RescaleIntercept = "-10.25"
        save(ds, p)
    vol = load_path(tmp_path)
    assert vol.dtype == np.float32
    for k in range(3):
        np.testing.assert_allclose(vol.array[k], expected_stored(k, 24, 32) * (0.5 + k) - 10.25, atol=1e-3)
    assert vol.metadata["provenance"]["rescale"]["varies_per_slice"]


@pytest.mark.parametrize("signed", [True, False])
def test_bits_stored_masking_and_sign_extension(tmp_path, signed):
    rng = np.random.default_rng(1)
    values = rng.integers(-2048 if signed else 0, 2048 if signed else 4096, size=(8, 8))
    raw = (values & 0xFFF) | (0xA000 if not signed else 0x5000)  # garbage in the unused high bits
    path = write_slice(
        tmp_path / "a.dcm",
        raw.astype(np.uint16).view(np.int16) if signed else raw,
        position=(0, 0, 0),
        series_uid=new_uid(),
        bits_stored=12,
        signed=signed,
        rescale=None,
    )
    h = read_header(str(path))
    out = np.empty((1, 8, 8), stored_dtype(h))
    read_frames_into(h, [0], out)
    np.testing.assert_array_equal(out[0], values)
    a = raw.astype(np.uint16).view(np.int16).copy() if signed else raw.astype(np.uint16)
    fix_bits_stored(a, 12, signed)
    fix_bits_stored(a, 12, signed)  # idempotent
    np.testing.assert_array_equal(a, values)


def test_tilted_series_raw_geometry_is_exact_and_resampled_is_orthogonal(tmp_path):
    tilt = 20.0
    write_ct_series(tmp_path, 6, tilt_deg=tilt, step=2.0)
    files = sorted(str(p) for p in tmp_path.iterdir())
    raw = load_files(files, regularize=False)
    sheared = np.array(raw.metadata["affine_lps"])
    positions, _ = series_positions(6, step=2.0, tilt_deg=tilt)
    inv = np.linalg.inv(sheared)
    for k, p in enumerate(positions):
        idx = inv @ np.append(p, 1)
        np.testing.assert_allclose(idx[:3], (0, 0, k), atol=1e-6)
    with pytest.raises(GeometryError) as exc:
        load_path(tmp_path, geometry_policy="reject")
    assert f"{tilt:.2f} degrees" in str(exc.value)
    vol = load_path(tmp_path)
    d = vol.geometry.direction
    np.testing.assert_allclose(d.T @ d, np.eye(3), atol=1e-6)
    # slice spacing along the normal: step * cos(tilt)
    assert vol.spacing[2] == pytest.approx(2.0 * math.cos(math.radians(tilt)), abs=1e-6)
    assert vol.metadata["regularized"] and "tilt" in vol.metadata["warnings"][0]
    assert vol.shape[1] > raw.shape[1]  # the field of view grew to keep the sheared data


def test_group_stacks_is_order_independent_and_ids_stable(tmp_path):
    write_ct_series(tmp_path / "a", 4, prefix="A")
    write_ct_series(tmp_path / "b", 3, prefix="B", rows=16, cols=16)
    headers = _headers(tmp_path / "a") + _headers(tmp_path / "b")
    stacks1, _ = group_stacks(headers)
    random.Random(3).shuffle(headers)
    stacks2, _ = group_stacks(headers)
    assert [s.id for s in stacks1] == [s.id for s in stacks2]
    assert [s.paths for s in stacks1] == [s.paths for s in stacks2]


def test_echoes_become_separate_stacks(tmp_path):
    uid = new_uid()
    write_ct_series(tmp_path / "e1", 3, series_uid=uid, EchoNumbers=1, EchoTime="10", prefix="A")
    write_ct_series(tmp_path / "e2", 3, series_uid=uid, EchoNumbers=2, EchoTime="20", prefix="B")
    headers = _headers(tmp_path / "e1") + _headers(tmp_path / "e2")
    stacks, _ = group_stacks(headers)
    assert len(stacks) == 2 and {s.split_key["echo"] for s in stacks} == {1, 2}
    assert all(s.n_timepoints == 1 for s in stacks)


def test_single_slice_z_spacing_is_stated(tmp_path):
    write_ct_series(tmp_path, 1, step=3.0)
    vol = load_path(tmp_path)
    assert vol.shape == (1, 24, 32) and vol.spacing[2] == 3.0
    assert vol.metadata["z_spacing_source"] == "SliceThickness"


def test_padding_value_recorded_not_masked(tmp_path):
    write_ct_series(tmp_path, 2, PixelPaddingValue=0)
    vol = load_path(tmp_path)
    assert vol.metadata["pixel_padding_value"] == 0
    assert vol.array.min() == -1024  # stored 0 (the padding value) is kept as 0 * 1 - 1024


# ------------------------------------------------------------------------------ corpus-based
CASES = corpus_cases()


@pytest.mark.corpus
def test_direct_pixel_reads_equal_pydicom_on_every_corpus_file(corpus, monkeypatch):
    checked = 0
    for case in CASES:
        for path in sorted((corpus_case_dir(case) / "dicom").iterdir()):
            try:
                h = read_header(str(path))
            except SkipFile:
                continue
            if h.is_mosaic or not pixels_module._fast_path_ok(h):
                continue
            n = h.number_of_frames
            fast = np.empty((n, h.rows, h.columns), stored_dtype(h))
            read_frames_into(h, list(range(n)), fast)
            ds = pydicom.dcmread(str(path))
            ref = ds.pixel_array.reshape(n, h.rows, h.columns).astype(stored_dtype(h))
            fix_bits_stored(ref, h.bits_stored, h.pixel_representation == 1)
            np.testing.assert_array_equal(fast, ref, err_msg=str(path))
            checked += 1
    assert checked >= 10


@pytest.mark.corpus
def test_enhanced_without_plane_position_is_refused(corpus, tmp_path):
    case = next(c for c in CASES if c["case_id"] == "mr_philips_enhanced_anat")
    src = next(p for p in (corpus_case_dir(case) / "dicom").iterdir() if p.is_file())
    ds = pydicom.dcmread(str(src))
    for item in ds.PerFrameFunctionalGroupsSequence:
        if "PlanePositionSequence" in item:
            del item.PlanePositionSequence
    for item in ds.get("SharedFunctionalGroupsSequence") or []:
        if "PlanePositionSequence" in item:
            del item.PlanePositionSequence
    ds.save_as(str(tmp_path / "enhanced.dcm"))
    with pytest.raises(GeometryError):
        load_path(tmp_path)


@pytest.mark.corpus
def test_mosaic_without_tile_count_is_refused_not_returned_as_tiles(corpus, tmp_path):
    case = next(c for c in CASES if c["case_id"] == "mr_siemens_mosaic_explicit")
    src = next(p for p in (corpus_case_dir(case) / "dicom").iterdir() if p.is_file())
    ds = pydicom.dcmread(str(src))
    for tag in list(ds.keys()):
        if tag.group in (0x0019, 0x0029):
            del ds[tag]
    ds.save_as(str(tmp_path / "mosaic.dcm"))
    with pytest.raises(GeometryError) as exc:
        load_path(tmp_path)
    assert "mosaic" in str(exc.value).lower()


@pytest.mark.corpus
def test_load_stack_from_scan_equals_load_path(corpus):
    case = next(c for c in CASES if c["case_id"] == "mr_siemens_prisma_t1sag_hfp")
    folder = corpus_case_dir(case) / "dicom"
    stacks, _ = group_stacks([read_header(str(p)) for p in sorted(folder.iterdir())])
    a = load_stack(stacks[0])
    b = load_path(folder)
    np.testing.assert_array_equal(a.array, b.array)
    assert a.geometry.isclose(b.geometry)


def test_overlapping_acquisitions_become_separate_stacks(tmp_path):
    uid = new_uid()
    write_ct_series(tmp_path / "a", 5, series_uid=uid, AcquisitionNumber=1, prefix="A")
    write_ct_series(tmp_path / "b", 3, series_uid=uid, AcquisitionNumber=2, prefix="B", origin=(-11, -11, 5.0))
    stacks, _ = group_stacks(_headers(tmp_path / "a") + _headers(tmp_path / "b"))
    assert sorted(len(s.headers) for s in stacks) == [3, 5]
    assert {s.split_key.get("acquisition") for s in stacks} == {1, 2}
    for s in stacks:
        assert load_stack(s).shape[0] == len(s.headers)


@pytest.mark.parametrize(("shift_mm", "resampled"), [(0.004, False), (0.5, True)])
def test_position_jitter_is_reported_a_real_irregularity_resampled(tmp_path, shift_mm, resampled):
    paths = write_ct_series(tmp_path, 5, step=2.5)
    ds = pydicom.dcmread(paths[2])
    x, y, z = (float(v) for v in ds.ImagePositionPatient)
    ds.ImagePositionPatient = [f"{x:.6f}", f"{y:.6f}", f"{z + shift_mm:.6f}"]
    save(ds, paths[2])
    vol = load_path(tmp_path)
    assert vol.metadata["regularized"] is resampled
    if not resampled:
        assert any("deviate up to 0.0040 mm" in w for w in vol.metadata["warnings"])
        np.testing.assert_array_equal(vol.array[2], expected_stored(2, 24, 32) - 1024)


def test_same_size_different_pixel_spacing_are_separate_stacks(tmp_path):
    uid = new_uid()
    write_ct_series(tmp_path / "a", 3, series_uid=uid, pixel_spacing=(0.7, 0.7), prefix="A")
    write_ct_series(tmp_path / "b", 3, series_uid=uid, pixel_spacing=(0.9, 0.9), prefix="B")
    stacks, _ = group_stacks(_headers(tmp_path / "a") + _headers(tmp_path / "b"))
    assert len(stacks) == 2
    assert {load_stack(s).spacing[0] for s in stacks} == {0.7, 0.9}


def test_progress_is_reported_and_can_cancel(tmp_path):
    from MedPrepLib.errors import CancelledError

    write_ct_series(tmp_path, 4)
    seen = []
    load_path(tmp_path, progress=lambda label, f: seen.append(f))
    assert seen and seen[-1] == 1.0 and all(0.0 <= f <= 1.0 for f in seen)
    assert seen == sorted(seen)
    with pytest.raises(CancelledError):
        load_path(tmp_path, progress=lambda label, f: f > 0.5)
