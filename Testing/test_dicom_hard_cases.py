"""Harder DICOM combinations, judged against an independent truth.

Every series here is synthetic (``dicom_factory``): the test knows each slice's position,
orientation and stored values because it wrote them, so a loaded volume is checked against
that truth — every written slice position must land on an integer voxel index (within
1e-3 mm) holding exactly the written values — or against another reader (pydicom's own
decoders, nibabel's Siemens mosaic reader). Difficulties are combined the way other vendors
write them: tilt with a gap, descending tilted stacks, coronal / sagittal tilt, GE-style tilt
(only the tag set, positions shifting), junk high bits, enhanced files with several stacks or
one file per time point, mosaics with the tile count only in the CSA header, and so on.
"""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
from dicom_factory import (
    expected_stored,
    new_uid,
    rewrite_big_endian,
    write_ct_series,
    write_enhanced_frames,
    write_mosaic,
    write_slice,
    write_stack,
)

from MedPrepLib.dicom.scan import scan
from MedPrepLib.errors import DicomError, GeometryError, MissingDecoderError
from MedPrepLib.sources import load_files, load_path

pytestmark = pytest.mark.pydicom_dependent

AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)
CORONAL = (1.0, 0.0, 0.0, 0.0, 0.0, -1.0)
SAGITTAL = (0.0, 1.0, 0.0, 0.0, 0.0, -1.0)
ROWS = COLS = 16
PIXEL_SPACING = (0.7, 0.8)  # DICOM order: row spacing, column spacing (mm)


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=np.float64)
    return v / np.linalg.norm(v)


def _oblique() -> tuple[float, ...]:
    r = _unit([1.0, 0.2, 0.05])
    c = _unit(np.cross([0.1, 0.0, 1.0], r))
    return (*r, *c)


def _tilted_positions(n, step, tilt_deg, orientation, origin=(0.0, 0.0, 0.0), gap_after=None):
    """Slice positions (LPS mm) stepping ``step`` mm along the normal and leaning along the
    column direction by ``tan(tilt)`` per mm (a gantry tilt); slice ``gap_after + 1`` missing."""
    row, col = _unit(orientation[:3]), _unit(orientation[3:])
    normal = np.cross(row, col)
    lean = math.tan(math.radians(tilt_deg))
    out, d = [], 0.0
    for k in range(n):
        out.append(np.asarray(origin, float) + d * normal + d * lean * col)
        d += step * (2 if gap_after is not None and k == gap_after else 1)
    return out


def _write_stack(folder, positions, orientation, **kwargs):
    """One file per position (names not in slice order); returns [(position, stored)] in position order."""
    return write_stack(
        folder, positions, orientation=orientation, rows=ROWS, cols=COLS, pixel_spacing=PIXEL_SPACING, **kwargs
    )


def _assert_slices_on_grid(volume, truth, values=lambda stored: stored - 1024, t=None):
    """Every truth slice's position is voxel (0, 0, k) of ``volume`` and holds exactly its values."""
    g = volume.geometry
    seen = set()
    for position, stored in truth:
        idx = g.physical_to_index(position)
        k = int(round(idx[2]))
        assert np.allclose(idx, [0, 0, k], atol=1e-3 / min(g.spacing)), (position, idx)
        got = volume.array[k] if t is None else volume.array[k, ..., t]
        np.testing.assert_array_equal(got, values(stored))
        seen.add(k)
    assert len(seen) == len(truth)


def _assert_raw_positions(volume, truth):
    """Before regularization: slice k of the raw stack sits at its ImagePositionPatient (1e-3 mm)."""
    positions = np.asarray(volume.metadata["slice_positions"])
    assert positions.shape == (len(truth), 3)
    expected = sorted(truth, key=lambda item: float(item[0] @ volume.geometry.direction[:, 2]))
    for k, (p, stored) in enumerate(expected):
        assert np.abs(positions[k] - p).max() < 1e-3
        np.testing.assert_array_equal(volume.array[k], stored - 1024)
    if "affine_lps" in volume.metadata:
        affine = np.asarray(volume.metadata["affine_lps"])
        for k, (p, _) in enumerate(expected):
            assert np.abs((affine @ [0, 0, k, 1])[:3] - p).max() < 1e-3


def _assert_resampled_values(volume, truth, orientation, tol=0.51):
    """The regularized volume, interpolated at each acquired pixel centre (interior pixels;
    values are linear in the pixel index, so linear interpolation is exact up to rounding)."""
    from scipy import ndimage

    row, col = _unit(orientation[:3]), _unit(orientation[3:])
    j, i = np.mgrid[1 : ROWS - 1, 1 : COLS - 1]
    data = volume.array.astype(np.float64)
    for position, stored in truth:
        points = position + np.multiply.outer(i * PIXEL_SPACING[1], row) + np.multiply.outer(j * PIXEL_SPACING[0], col)
        idx = np.array([volume.geometry.physical_to_index(p) for p in points.reshape(-1, 3)])
        assert np.all(idx >= -1e-6) and np.all(idx <= np.array(volume.geometry.size) - 1 + 1e-6)
        got = ndimage.map_coordinates(data, [idx[:, 2], idx[:, 1], idx[:, 0]], order=1, mode="nearest")
        np.testing.assert_allclose(got, (stored[1:-1, 1:-1] - 1024).ravel(), atol=tol)


# ------------------------------------------------------------------------------ tilt and gaps
def test_tilt_with_missing_slice(tmp_path):
    truth = _write_stack(tmp_path, _tilted_positions(7, 2.5, 15.0, AXIAL, gap_after=3), AXIAL)
    raw = load_files(sorted(tmp_path.iterdir()), regularize=False)
    _assert_raw_positions(raw, truth)
    volume = load_path(tmp_path)
    assert volume.metadata["regularized"]
    assert volume.geometry.size[2] == 8  # the missing slice is restored on the 2.5 mm grid
    assert np.allclose(volume.geometry.direction, np.eye(3))
    _assert_resampled_values(volume, truth, AXIAL)
    warning = " ".join(volume.metadata["warnings"])
    assert "15.00 degrees" in warning and "uneven slice spacing: 5.000 mm" in warning
    assert f"drift {2.5 * math.tan(math.radians(15)):.3f} mm sideways per 2.500 mm slice step" in warning
    with pytest.raises(GeometryError, match=r"15\.00 degrees.*5\.000 mm between"):
        load_path(tmp_path, geometry_policy="reject")


@pytest.mark.parametrize(
    "orientation, step, tilt",
    [
        (AXIAL, -2.5, -10.0),  # feet first: positions descend, files in reverse order
        (CORONAL, 3.0, 12.0),
        (SAGITTAL, 3.0, -20.0),
        (_oblique(), 2.0, 8.0),
    ],
    ids=["axial-descending", "coronal", "sagittal", "oblique"],
)
def test_tilt_in_any_orientation_and_direction(tmp_path, orientation, step, tilt):
    truth = _write_stack(tmp_path, _tilted_positions(6, step, tilt, orientation, origin=(5, -3, 40)), orientation)
    raw = load_files(sorted(tmp_path.iterdir()), regularize=False)
    _assert_raw_positions(raw, truth)
    assert np.allclose(raw.geometry.direction[:, 0], _unit(orientation[:3]))
    assert np.allclose(raw.geometry.direction[:, 1], _unit(orientation[3:]))
    assert raw.geometry.spacing[:2] == pytest.approx((PIXEL_SPACING[1], PIXEL_SPACING[0]))
    volume = load_path(tmp_path)
    assert volume.metadata["regularized"]
    _assert_resampled_values(volume, truth, orientation)
    with pytest.raises(GeometryError, match=f"{abs(tilt):.2f} degrees"):
        load_path(tmp_path, geometry_policy="reject")


def test_ge_style_tilt_is_derived_from_positions_not_the_tag(tmp_path):
    # GE: axial ImageOrientationPatient, only (0018,1120) says 11.3 degrees, positions shift in y
    positions = [np.array([0.0, 0.5 * k, 2.5 * k]) for k in range(6)]
    truth = _write_stack(tmp_path / "tilted", positions, AXIAL, GantryDetectorTilt="11.3")
    volume = load_path(tmp_path / "tilted")
    assert "11.31 degrees" in " ".join(volume.metadata["warnings"])
    _assert_resampled_values(volume, truth, AXIAL)
    # The tag alone, with untilted positions, changes nothing
    straight = _write_stack(
        tmp_path / "straight", [np.array([0.0, 0.0, 2.5 * k]) for k in range(4)], AXIAL, GantryDetectorTilt="15"
    )
    volume = load_path(tmp_path / "straight")
    assert not volume.metadata["regularized"]
    _assert_slices_on_grid(volume, straight)


# ------------------------------------------------------------------------------ pixel values
def _junk_12bit(values: np.ndarray, signed: bool) -> np.ndarray:
    """12-bit stored values with garbage in bits 12-15 (overlay bits of old scanners)."""
    raw = (values & 0xFFF) | 0xA000
    return raw.astype(np.uint16).view(np.int16) if signed else raw.astype(np.uint16)


@pytest.mark.parametrize(
    "signed, bits, junk, rescale, modality",
    [
        (True, 12, True, (1.0, -1024.0), "CT"),  # 12-bit signed, junk high bits
        (False, 12, True, (1.0, -1024.0), "CT"),  # 12-bit unsigned, junk high bits
        (True, 16, False, (-2.0, 100.0), "CT"),  # signed with a negative slope
        (False, 16, False, None, "MR"),  # no Modality LUT at all
        (False, 16, False, (0.000125, 0.0), "MR"),  # tiny float slope (Philips-like MR)
    ],
    ids=["12s-junk", "12u-junk", "negative-slope", "no-rescale", "float-slope"],
)
def test_stored_values_and_modality_lut(tmp_path, signed, bits, junk, rescale, modality):
    uid, expected = new_uid(), []
    for k in range(3):
        values = expected_stored(k, ROWS, COLS) - (2048 if signed else 0)
        stored = _junk_12bit(values, signed) if junk else values
        write_slice(
            tmp_path / f"{k}.dcm",
            stored,
            position=(0, 0, 2.0 * k),
            series_uid=uid,
            signed=signed,
            bits_stored=bits,
            rescale=rescale,
            modality=modality,
        )
        slope, intercept = rescale or (1.0, 0.0)
        expected.append(values * slope + intercept)
    volume = load_path(tmp_path)
    integral = rescale is None or float(rescale[0]).is_integer()
    assert volume.array.dtype.kind == ("i" if integral else "f")
    np.testing.assert_allclose(volume.array, np.stack(expected), rtol=1e-6, atol=0 if integral else 1e-6)


def _rescaled_slices(folder, rescales, **kwargs) -> None:
    """One series of axial slices 2 mm apart: slice k holds ``expected_stored(k)`` with the
    Modality LUT ``rescales[k]`` (slope, intercept; None: no rescale tags)."""
    uid = new_uid()
    for k, rescale in enumerate(rescales):
        write_slice(
            folder / f"{k}.dcm",
            expected_stored(k, ROWS, COLS),
            position=(0, 0, 2.0 * k),
            series_uid=uid,
            rescale=rescale,
            **kwargs,
        )


def test_float_slope_varying_per_slice_gives_float32(tmp_path):
    _rescaled_slices(tmp_path, [(0.000125 * (k + 1), -0.5 * k) for k in range(3)], bits_stored=16, modality="MR")
    volume = load_path(tmp_path)
    assert volume.array.dtype == np.float32
    for k in range(3):
        expected = expected_stored(k, ROWS, COLS) * (0.000125 * (k + 1)) - 0.5 * k
        np.testing.assert_allclose(volume.array[k], expected, rtol=1e-6)
    assert volume.metadata["provenance"]["rescale"]["varies_per_slice"]


def test_rescale_missing_in_some_slices_is_applied_per_slice_and_warned(tmp_path):
    _rescaled_slices(tmp_path, [None if k == 1 else (1.0, -1024.0) for k in range(3)])
    volume = load_path(tmp_path)
    for k in range(3):
        np.testing.assert_array_equal(volume.array[k], expected_stored(k, ROWS, COLS) - (0 if k == 1 else 1024))
    assert any(
        "RescaleSlope missing in 1 of 3 slices (slice 2 of 3 (instance 1);" in w for w in volume.metadata["warnings"]
    )


# ------------------------------------------------------------------------------ enhanced multi-frame
def _frames(
    n_z,
    *,
    n_t=1,
    echoes=(None,),
    stacks=(None,),
    orientation=AXIAL,
    step=3.0,
    origin=(-5.0, -6.0, 0.0),
    stack_offset_mm=0.0,
    rescale=None,
):
    """Per-frame facts on a regular grid; ``value`` is what the loader must return for the frame."""
    normal = np.cross(_unit(orientation[:3]), _unit(orientation[3:]))
    out = []
    for s_no, stack in enumerate(stacks):
        for t in range(n_t):
            for e_no, echo in enumerate(echoes):
                for z in range(n_z):
                    stored = expected_stored(z + 7 * t + 13 * e_no + 29 * s_no, 12, 16)
                    slope, intercept = rescale(z, t) if rescale else (1.0, 0.0)
                    out.append(
                        {
                            "position": np.asarray(origin) + (z * step + s_no * stack_offset_mm) * normal,
                            "orientation": orientation,
                            "stored": stored,
                            "temporal": t + 1 if n_t > 1 else None,
                            "echo": echo,
                            "stack": stack,
                            "in_stack": z + 1,
                            "rescale": (slope, intercept) if rescale else None,
                            "value": stored * slope + intercept,
                            "t": t,
                        }
                    )
    return out


def _shuffled(frames, seed=0):
    order = np.random.default_rng(seed).permutation(len(frames))
    return [frames[i] for i in order]


def _assert_frames(volume, frames):
    g = volume.geometry
    for f in frames:
        idx = g.physical_to_index(f["position"])
        k = int(round(idx[2]))
        assert np.allclose(idx, [0, 0, k], atol=1e-3), idx
        got = volume.array[k] if volume.array.ndim == 3 else volume.array[k, ..., f["t"]]
        np.testing.assert_allclose(got, f["value"], rtol=1e-6)


def test_enhanced_frames_in_random_order_3d_and_4d(tmp_path):
    frames = _shuffled(_frames(6))
    volume = load_path(write_enhanced_frames(tmp_path / "a.dcm", frames))
    assert volume.array.shape == (6, 12, 16)
    _assert_frames(volume, frames)
    frames = _shuffled(_frames(5, n_t=3), seed=1)
    volume = load_path(write_enhanced_frames(tmp_path / "b.dcm", frames))
    assert volume.array.shape == (5, 12, 16, 3)
    _assert_frames(volume, frames)


def test_enhanced_multi_echo_splits_by_echo(tmp_path):
    frames = _shuffled(_frames(4, echoes=(10.0, 25.0)))
    path = write_enhanced_frames(tmp_path / "e.dcm", frames)
    stacks = scan(tmp_path, cache=False).stacks
    assert sorted(s.split_key["echo"] for s in stacks) == [10.0, 25.0]
    for s in stacks:
        volume = load_path(path, s.id)
        _assert_frames(volume, [f for f in frames if f["echo"] == s.split_key["echo"]])


@pytest.mark.parametrize("offset_mm", [0.0, 100.0], ids=["overlapping", "apart"])
def test_enhanced_stack_ids_are_separate_stacks(tmp_path, offset_mm):
    # Two StackIDs in one file: overlapping positions must not become a "4D" volume, two
    # slabs far apart must not become one volume with a gap
    frames = _shuffled(_frames(4, stacks=("1", "2"), stack_offset_mm=offset_mm))
    path = write_enhanced_frames(tmp_path / "s.dcm", frames)
    stacks = scan(tmp_path, cache=False).stacks
    assert sorted(s.split_key["stack"] for s in stacks) == ["1", "2"]
    assert all(s.n_timepoints == 1 for s in stacks)
    for s in stacks:
        volume = load_path(path, s.id)
        assert volume.array.shape == (4, 12, 16)
        _assert_frames(volume, [f for f in frames if f["stack"] == s.split_key["stack"]])


def test_enhanced_stack_id_used_as_a_frame_counter_is_ignored(tmp_path):
    frames = _frames(5)
    for k, f in enumerate(frames):
        f["stack"] = str(k + 1)
    path = write_enhanced_frames(tmp_path / "c.dcm", frames)
    (stack,) = scan(tmp_path, cache=False).stacks
    assert "stack" not in stack.split_key
    _assert_frames(load_path(path), frames)


def test_enhanced_frame_without_plane_position_is_refused_naming_the_frame(tmp_path):
    frames = _frames(5)
    frames[2] = {**frames[2], "position": None}
    path = write_enhanced_frames(tmp_path / "m.dcm", frames)
    with pytest.raises(GeometryError, match=r"ImagePositionPatient missing in 1 of 5 slice\(s\): frame 3") as exc:
        load_path(path)
    assert exc.value.detail == "frame 3: m.dcm"
    frames = [{**f, "orientation": None} for f in _frames(3)]
    with pytest.raises(GeometryError, match="ImageOrientationPatient missing in 3 of 3"):
        load_path(write_enhanced_frames(tmp_path / "o.dcm", frames))


def test_enhanced_shared_orientation_and_per_frame_rescale(tmp_path):
    frames = [
        {**f, "orientation": None}
        for f in _frames(5, orientation=SAGITTAL, rescale=lambda z, t: (0.5 + 0.25 * z, -10.0 * z))
    ]
    path = write_enhanced_frames(
        tmp_path / "r.dcm", frames[::-1], modality="CT", shared_orientation=SAGITTAL, shared_rescale=(1.0, -1024.0)
    )
    volume = load_path(path)
    assert volume.array.dtype == np.float32
    assert np.allclose(volume.geometry.direction[:, 0], SAGITTAL[:3])
    _assert_frames(volume, frames)


def test_enhanced_one_file_per_time_point(tmp_path):
    # Siemens XA / Philips 4D: one enhanced file per volume, the files told apart only by the
    # file-level AcquisitionNumber (no TemporalPositionIndex in the frames)
    uid, truth = new_uid(), []
    for t in range(3):
        frames = _shuffled(_frames(4), seed=t)
        for f in frames:
            f["stored"] = f["stored"] + 100 * t
            f["value"], f["t"] = f["stored"], t
        write_enhanced_frames(tmp_path / f"vol{t}.dcm", frames, series_uid=uid, AcquisitionNumber=t + 1)
        truth.extend(frames)
    volume = load_path(tmp_path)
    assert volume.array.shape == (4, 12, 16, 3)
    _assert_frames(volume, truth)


# ------------------------------------------------------------------------------ Siemens mosaic
def _assert_equals_nibabel(volume, path, t=None):
    """nibabel's MosaicWrapper is the truth: its voxels (row, col, slice) and LPS affine."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from nibabel.nicom import dicomwrappers

        wrapper = dicomwrappers.wrapper_from_file(str(path))
        data = wrapper.get_data()
        affine = wrapper.affine
    assert isinstance(wrapper, dicomwrappers.MosaicWrapper)
    array = volume.array if t is None else volume.array[..., t]
    assert array.shape == (data.shape[2], data.shape[0], data.shape[1])
    g = volume.geometry
    for r, c, k in np.ndindex(data.shape):
        if (r, c) not in ((0, 0), (data.shape[0] - 1, data.shape[1] - 1), (3, 2)):
            continue
        idx = g.physical_to_index((affine @ [r, c, k, 1])[:3])
        assert np.allclose(idx, np.round(idx), atol=1e-3), (r, c, k, idx)
        i, j, kk = (int(round(v)) for v in idx)
        assert array[kk, j, i] == data[r, c, k]


@pytest.mark.parametrize("n_tiles", [5, 35])
@pytest.mark.parametrize("descending", [False, True], ids=["ascending", "descending"])
@pytest.mark.parametrize("tiles_in_csa_only", [False, True], ids=["0019-100A", "csa-only"])
@pytest.mark.parametrize("orientation", [AXIAL, SAGITTAL, _oblique()], ids=["axial", "sagittal", "oblique"])
def test_mosaic_matches_nibabel(tmp_path, n_tiles, descending, tiles_in_csa_only, orientation):
    tiles = np.stack([expected_stored(k, 8, 6) for k in range(n_tiles)])
    path = write_mosaic(
        tmp_path / "m.dcm",
        tiles,
        first_tile_position=(-10, 20, -30),
        orientation=orientation,
        descending=descending,
        series_uid=new_uid(),
        tiles_in_csa_only=tiles_in_csa_only,
    )
    volume = load_path(path)
    assert volume.array.shape == (n_tiles, 8, 6)
    _assert_equals_nibabel(volume, path)


def test_mosaic_4d_series(tmp_path):
    uid, paths = new_uid(), []
    for t in range(3):
        tiles = np.stack([expected_stored(k + 10 * t, 8, 6) for k in range(7)])
        paths.append(
            write_mosaic(
                tmp_path / f"vol {t}.dcm",
                tiles,
                first_tile_position=(1, 2, 3),
                orientation=_oblique(),
                descending=True,
                series_uid=uid,
                acquisition_number=t + 1,
                instance_number=t + 1,
            )
        )
    volume = load_path(tmp_path)
    assert volume.array.shape == (7, 8, 6, 3)
    for t, path in enumerate(paths):
        _assert_equals_nibabel(volume, path, t)


# ------------------------------------------------------------------------------ one folder, many things
def _axial_slice(path, stored, z, *, series_uid, **kwargs):
    """One axial slice at (0, 0, ``z`` mm) with the test grid's pixel spacing; returns its path."""
    return write_slice(path, stored, position=(0, 0, z), series_uid=series_uid, pixel_spacing=PIXEL_SPACING, **kwargs)


def _axial_series(folder, n=4, *, series_uid, prefix="a", base=0, **kwargs):
    truth = []
    for k in range(n):
        stored = expected_stored(k + base, ROWS, COLS)
        _axial_slice(
            folder / f"{prefix}{k}.dcm", stored, 2.5 * k, series_uid=series_uid, instance_number=k + 1, **kwargs
        )
        truth.append((np.array([0.0, 0.0, 2.5 * k]), stored))
    return truth


def test_interleaved_echoes_become_two_stacks(tmp_path):
    uid = new_uid()
    first = _axial_series(
        tmp_path, series_uid=uid, prefix="e1-", EchoNumbers=1, EchoTime="10", modality="MR", rescale=None
    )
    second = _axial_series(
        tmp_path, series_uid=uid, prefix="e2-", base=50, EchoNumbers=2, EchoTime="20", modality="MR", rescale=None
    )
    stacks = scan(tmp_path, cache=False).stacks
    assert sorted(s.split_key["echo"] for s in stacks) == [1, 2]
    for s in stacks:
        volume = load_path(tmp_path, s.id)
        _assert_slices_on_grid(volume, first if s.split_key["echo"] == 1 else second, values=lambda v: v)


def test_two_acquisitions_at_the_same_positions_are_kept_apart(tmp_path):
    uid = new_uid()
    first = _axial_series(tmp_path, series_uid=uid, prefix="acq1-", AcquisitionNumber=1)
    second = _axial_series(tmp_path, series_uid=uid, prefix="acq2-", base=50, AcquisitionNumber=2)
    volume = load_path(tmp_path)
    # one 4D volume, acquisitions in AcquisitionNumber order (never mixed slice by slice)
    assert volume.array.shape == (4, ROWS, COLS, 2)
    _assert_slices_on_grid(volume, first, t=0)
    _assert_slices_on_grid(volume, second, t=1)


def test_localizer_of_the_same_orientation_is_skipped_by_image_type(tmp_path):
    uid = new_uid()
    truth = _axial_series(tmp_path, series_uid=uid)
    _axial_slice(
        tmp_path / "loc.dcm",
        expected_stored(9, ROWS, COLS),
        1.0,
        series_uid=uid,
        image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"),
    )
    result = scan(tmp_path, cache=False)
    assert [(s.path.endswith("loc.dcm"), s.reason) for s in result.skipped] == [(True, "localizer")]
    _assert_slices_on_grid(load_path(tmp_path), truth)


def test_single_reacquired_slice_is_its_own_stack_not_a_localizer(tmp_path):
    uid = new_uid()
    truth = _axial_series(tmp_path, series_uid=uid, AcquisitionNumber=1)
    _axial_slice(tmp_path / "again.dcm", expected_stored(7, ROWS, COLS), 5.0, series_uid=uid, AcquisitionNumber=2)
    result = scan(tmp_path, cache=False)
    assert result.skipped == []
    by_acquisition = {s.split_key["acquisition"]: s for s in result.stacks}
    assert sorted(by_acquisition) == [1, 2]
    _assert_slices_on_grid(load_path(tmp_path, by_acquisition[1].id), truth)
    assert load_path(tmp_path, by_acquisition[2].id).array.shape == (1, ROWS, COLS)


def test_copies_and_duplicates(tmp_path):
    uid = new_uid()
    truth = _axial_series(tmp_path, series_uid=uid)
    # the same file twice (same SOPInstanceUID), once in a nested folder
    (tmp_path / "nested" / "deeper").mkdir(parents=True)
    shutil.copy(tmp_path / "a1.dcm", tmp_path / "copy of a1.dcm")
    shutil.copy(tmp_path / "a2.dcm", tmp_path / "nested" / "deeper" / "a2.dcm")
    # the same slice again under a new SOPInstanceUID, identical pixels
    _axial_slice(tmp_path / "resent.dcm", expected_stored(2, ROWS, COLS), 5.0, series_uid=uid)
    result = scan(tmp_path, cache=False)
    assert sorted(s.reason for s in result.skipped) == ["duplicate_sop_instance"] * 2
    volume = load_path(tmp_path)
    _assert_slices_on_grid(volume, truth)
    assert any("dropped exact duplicate slice" in w for w in volume.metadata["warnings"])


@pytest.mark.parametrize("change", ["pixels", "rescale"])
def test_same_position_with_different_values_is_refused(tmp_path, change):
    uid = new_uid()
    _axial_series(tmp_path, series_uid=uid)
    stored = expected_stored(9 if change == "pixels" else 2, ROWS, COLS)
    _axial_slice(
        tmp_path / "other.dcm", stored, 5.0, series_uid=uid, rescale=(1.0, -1000.0 if change == "rescale" else -1024.0)
    )
    with pytest.raises(DicomError, match=r"same position .*slice 3 of 4") as exc:
        load_path(tmp_path)
    assert exc.value.detail == "a2.dcm, other.dcm"


# ------------------------------------------------------------------------------ encodings
def _recode(path, syntax: str) -> None:
    import pydicom

    ds = pydicom.dcmread(str(path))
    try:
        ds.compress(syntax)
    except (RuntimeError, NotImplementedError, ImportError) as exc:  # no encoder installed here
        pytest.skip(f"pydicom cannot encode {syntax} here: {str(exc).splitlines()[0]}")
    from dicom_factory import save

    save(ds, path)


@pytest.mark.parametrize("signed", [False, True], ids=["unsigned", "signed"])
@pytest.mark.parametrize(
    "encoding",
    ["big-endian", "deflated", "implicit", "no-meta", "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.90"],
    ids=["big-endian", "deflated", "implicit", "no-meta", "rle", "jpeg2000"],
)
def test_encodings_load_the_same_values(tmp_path, encoding, signed):
    import pydicom

    size = 32 if encoding == "1.2.840.10008.1.2.4.90" else ROWS  # openjpeg refuses tiny images
    uid, expected = new_uid(), []
    for k in range(3):
        values = expected_stored(k, size, size) - (2048 if signed else 0)
        path = write_slice(tmp_path / f"s{k}.dcm", values, position=(0, 0, 2.0 * k), series_uid=uid, signed=signed)
        if encoding == "big-endian":
            rewrite_big_endian(path)
        elif encoding in ("deflated", "implicit"):
            ds = pydicom.dcmread(str(path))
            ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1.99" if encoding == "deflated" else "1.2.840.10008.1.2"
            from dicom_factory import save

            save(ds, path)
        elif encoding == "no-meta":  # a bare data set: no preamble, no file meta, implicit VR
            path.write_bytes(path.read_bytes()[132:])
            ds = pydicom.dcmread(str(path), force=True)
            del ds.file_meta
            ds2 = pydicom.Dataset()
            for element in ds:
                if element.tag.group != 2:
                    ds2.add(element)
            from pydicom.filebase import DicomBytesIO
            from pydicom.filewriter import write_dataset

            buf = DicomBytesIO()
            buf.is_little_endian, buf.is_implicit_VR = True, True
            write_dataset(buf, ds2)
            path.write_bytes(buf.getvalue())
        else:
            _recode(path, encoding)
        if encoding != "no-meta":  # pydicom itself needs the transfer syntax to decode
            assert np.array_equal(pydicom.dcmread(str(path)).pixel_array, values)  # the writer is right
        expected.append(values - 1024)
    result = scan(tmp_path, cache=False)
    assert result.skipped == [] and len(result.stacks) == 1
    volume = load_path(tmp_path)
    np.testing.assert_array_equal(volume.array, np.stack(expected))


# ------------------------------------------------------------------------------ files and CLI
def test_scan_accounts_for_every_file_and_convert_follows_the_contract(tmp_path, capsys):
    from MedPrepLib.cli import main

    data = tmp_path / "data"
    write_ct_series(data / "tilted", 5, rows=ROWS, cols=COLS, tilt_deg=20.0)
    write_ct_series(data / "gapped", 6, rows=ROWS, cols=COLS, gap_after=2)
    paths = write_ct_series(data / "plain", 4, rows=ROWS, cols=COLS)
    (data / "plain" / "nested" / "deeper").mkdir(parents=True)
    paths[0].rename(data / "plain" / "nested" / "deeper" / "ümlaut ß é.dcm")
    paths[1].rename(data / "plain" / "nested" / "with space.dcm")
    (data / "notes.dcm").write_text("not DICOM at all\n" * 20)
    (data / "empty.dcm").write_bytes(b"")
    (data / ".hidden.dcm").write_bytes(paths[2].read_bytes())
    all_files = [p for p in data.rglob("*") if p.is_file()]

    assert main(["scan", str(data), "--json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert len(listing["series"]) == 3
    listed = sum(s["n_files"] for s in listing["series"]) + len(listing["skipped"])
    assert listed == len(all_files)  # hidden files too are listed as skipped
    reasons = sorted((s["path"].rsplit("/", 1)[-1], s["reason"]) for s in listing["skipped"])
    assert reasons == [(".hidden.dcm", "not_dicom"), ("empty.dcm", "empty"), ("notes.dcm", "not_dicom")]
    by_size = {s["n_files"]: s for s in listing["series"]}
    assert by_size[4]["shape"] == [COLS, ROWS, 4] and by_size[4]["warnings"] == []
    assert by_size[5]["spacing"][2] == pytest.approx(2.5 * math.cos(math.radians(20)), abs=1e-3)

    for s in listing["series"]:
        output = tmp_path / f"{s['id']}.nii.gz"
        assert main(["convert", str(data), str(output), "--series", s["id"]]) == 0
        assert output.exists()
        capsys.readouterr()
        strict = tmp_path / f"{s['id']}-strict.nii.gz"
        code = main(["convert", str(data), str(strict), "--series", s["id"], "--geometry-policy", "reject"])
        err = capsys.readouterr().err
        if s["n_files"] == 4:
            assert code == 0
            continue
        assert code != 0 and not strict.exists() and "Traceback" not in err
        assert 1 <= len([line for line in err.splitlines() if line.strip()]) <= 3
        assert ("20.00 degrees" if s["n_files"] == 5 else "5.000 mm between") in err
    assert main(["convert", str(data), str(tmp_path / "any.nii.gz")]) != 0
    err = capsys.readouterr().err
    assert all(s["id"] in err for s in listing["series"])


# ------------------------------------------------------------------------------ float pixels, cut files
@pytest.mark.parametrize("syntax", ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2.1.99"], ids=["explicit", "deflated"])
def test_float_pixel_data_keeps_its_fractions(tmp_path, syntax):
    import pydicom
    from dicom_factory import save

    uid, expected = new_uid(), []
    for k in range(3):
        path = write_slice(
            tmp_path / f"f{k}.dcm",
            expected_stored(k, ROWS, COLS),
            position=(0, 0, 2.0 * k),
            series_uid=uid,
            modality="MR",
            rescale=None,
        )
        ds = pydicom.dcmread(str(path))
        del ds.PixelData, ds.PixelRepresentation
        ds.BitsAllocated = ds.BitsStored = 32
        ds.HighBit = 31
        values = (expected_stored(k, ROWS, COLS) * 0.5 - 100.25).astype(np.float32)
        ds.FloatPixelData = values.tobytes()
        ds.file_meta.TransferSyntaxUID = syntax
        save(ds, path)
        expected.append(values)
    volume = load_path(tmp_path)
    assert volume.array.dtype == np.float32
    np.testing.assert_array_equal(volume.array, np.stack(expected))


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns about the cut values
def test_file_cut_anywhere_is_skipped_with_a_reason_never_loaded(tmp_path):
    from MedPrepLib.dicom.header import SkipFile, read_header

    full = write_slice(tmp_path / "full.dcm", expected_stored(0, ROWS, COLS), position=(0, 0, 0), series_uid=new_uid())
    data = full.read_bytes()
    sop_class_at = data.index(b"1.2.840.10008.5.1.4.1.1.2", 200)  # the data set's SOPClassUID value
    cut = tmp_path / "cut.dcm"
    for n in range(0, len(data) - 1, 3):
        cut.write_bytes(data[:n])
        with pytest.raises(SkipFile) as info:
            read_header(str(cut))
        assert info.value.reason in {"not_dicom", "unreadable", "truncated", "no_pixel_data", "empty"}, n
        assert (info.value.reason == "empty") == (n == 0), n  # cut to nothing is an empty file
        if sop_class_at < n < sop_class_at + 20 or n > len(data) - ROWS * COLS * 2:
            assert info.value.reason == "truncated", (n, info.value)
    # a folder with a file cut inside its header: scan says truncated, the rest loads
    uid = new_uid()
    truth = _axial_series(tmp_path / "series", series_uid=uid)
    _axial_slice(tmp_path / "series" / "cut.dcm", expected_stored(9, ROWS, COLS), 10.0, series_uid=uid)
    (tmp_path / "series" / "cut.dcm").write_bytes((tmp_path / "series" / "cut.dcm").read_bytes()[:400])
    result = scan(tmp_path / "series", cache=False)
    assert [(s.path.endswith("cut.dcm"), s.reason) for s in result.skipped] == [(True, "truncated")]
    _assert_slices_on_grid(load_path(tmp_path / "series"), truth)


# ------------------------------------------------------------------------------ real files, harder
def _corpus_files(corpus, case_id):
    folder = next(corpus.glob(f"*/{case_id}/dicom"))
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "DIRFILE")


def _assert_same_volume(a, b):
    np.testing.assert_array_equal(a.array, b.array)
    assert a.geometry.isclose(b.geometry, atol_mm=1e-4)


def test_real_mosaic_with_tile_count_only_in_csa(corpus, tmp_path):
    import pydicom

    (source,) = _corpus_files(corpus, "mr_siemens_mosaic_explicit")
    ds = pydicom.dcmread(str(source))
    creators = {b: str(ds[(0x0019, b)].value).strip().upper() for b in range(0x10, 0x100) if (0x0019, b) in ds}
    block = next(b for b, creator in creators.items() if creator == "SIEMENS MR HEADER")
    del ds[(0x0019, (block << 8) | 0x0A)]
    ds.save_as(str(tmp_path / "m.dcm"))
    _assert_same_volume(load_path(tmp_path / "m.dcm"), load_path(source))


def test_real_enhanced_with_frames_shuffled(corpus, tmp_path):
    import pydicom

    (source,) = _corpus_files(corpus, "mr_philips_enhanced_anat")
    ds = pydicom.dcmread(str(source))
    order = np.random.default_rng(3).permutation(int(ds.NumberOfFrames))
    pixels = ds.pixel_array
    ds.PerFrameFunctionalGroupsSequence = pydicom.sequence.Sequence(
        [ds.PerFrameFunctionalGroupsSequence[int(i)] for i in order]
    )
    ds.PixelData = np.ascontiguousarray(pixels[order]).tobytes()
    ds.save_as(str(tmp_path / "e.dcm"))
    _assert_same_volume(load_path(tmp_path / "e.dcm"), load_path(source))


def test_real_tilted_ct_with_missing_slices(corpus, tmp_path):
    files = _corpus_files(corpus, "ct_philips_ingenuity_tilt_neg18")
    import pydicom

    full = load_files(files, regularize=False)
    kept = [k for k in range(full.array.shape[0]) if k not in (20, 21)]
    by_uid = {str(pydicom.dcmread(str(p), stop_before_pixels=True, force=True).get("SOPInstanceUID")): p for p in files}
    for name_no, k in enumerate(reversed(kept)):  # names in reverse slice order
        source = by_uid[full.metadata["provenance"]["source_instances"][k]["sop_instance_uid"]]
        shutil.copy(source, tmp_path / f"{name_no:03d}.dcm")
    raw = load_files(sorted(tmp_path.iterdir()), regularize=False)
    expected_positions = np.asarray(full.metadata["slice_positions"])[kept]
    assert np.abs(np.asarray(raw.metadata["slice_positions"]) - expected_positions).max() < 1e-3
    np.testing.assert_array_equal(raw.array, full.array[kept])
    with pytest.raises(GeometryError, match=r"18\.50 degrees.*uneven slice spacing: 7\.11"):
        load_path(tmp_path, geometry_policy="reject")
    gapped, complete = load_path(tmp_path), load_path(files[0].parent)
    assert gapped.geometry.isclose(complete.geometry, atol_mm=1e-3)  # the same orthogonal grid
    keep_z = [k for k in range(complete.array.shape[0]) if abs(k - 20.5) > 1.5]  # away from the gap
    a = gapped.array[keep_z].astype(np.float64).ravel()
    b = complete.array[keep_z].astype(np.float64).ravel()
    assert np.corrcoef(a, b)[0, 1] > 0.999


# ------------------------------------------------------------------------------ 4D with a resent slice
@pytest.mark.parametrize("key", ["TemporalPositionIdentifier", "AcquisitionNumber"])
def test_4d_series_with_a_slice_sent_twice(tmp_path, key, caplog):
    uid = new_uid()
    for t in range(2):
        for z in range(4):
            _axial_slice(
                tmp_path / f"t{t}z{z}.dcm",
                expected_stored(z + 10 * t, ROWS, COLS),
                3.0 * z,
                series_uid=uid,
                **{key: t + 1},
            )
    resent = tmp_path / "resent.dcm"
    _axial_slice(resent, expected_stored(2 + 10, ROWS, COLS), 6.0, series_uid=uid, **{key: 2})
    (stack,) = scan(tmp_path, cache=False).stacks
    assert stack.n_timepoints == 2
    with caplog.at_level("DEBUG", logger="MedPrepLib.dicom.load"):
        volume = load_path(tmp_path)
    for t in range(2):
        truth = [(np.array([0.0, 0.0, 3.0 * z]), expected_stored(z + 10 * t, ROWS, COLS)) for z in range(4)]
        _assert_slices_on_grid(volume, truth, t=t)
    dropped = [w for w in volume.metadata["warnings"] if w.startswith("dropped exact duplicate slice")]
    assert len(dropped) == 1 and "slice 3 of 4" in dropped[0] and ".dcm" not in dropped[0]
    debug = [r.getMessage() for r in caplog.records if r.levelname == "DEBUG" and "dropped duplicate" in r.getMessage()]
    assert len(debug) == 1 and "resent.dcm" in debug[0] and "t1z2.dcm" in debug[0]  # file names: DEBUG only
    # the same slice sent again with other pixels: refused, naming the time point (files: detail)
    _axial_slice(resent, expected_stored(77, ROWS, COLS), 6.0, series_uid=uid, **{key: 2})
    with pytest.raises(DicomError, match=r"6\.000 mm along the normal\) and \w+ 2 .*slice 3 of 4") as exc:
        load_path(tmp_path)
    assert exc.value.detail == "resent.dcm, t1z2.dcm"


# ------------------------------------------------------------------------------ HTJ2K
def _write_raw(path, ds) -> None:
    """Write preamble, file meta and data set as they are (no transfer-syntax validation:
    pydicom 2.4 refuses to save a syntax it does not know)."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset, write_file_meta_info

    buf = DicomBytesIO()
    buf.write(b"\0" * 128 + b"DICM")
    write_file_meta_info(buf, ds.file_meta, enforce_standard=True)
    buf.is_little_endian, buf.is_implicit_VR = True, False
    write_dataset(buf, ds)
    path.write_bytes(buf.getvalue())


def test_high_throughput_jpeg2000_loads_or_names_the_upgrade(tmp_path):
    import pydicom
    from pydicom.encaps import encapsulate

    htj2k = "1.2.840.10008.1.2.4.201"
    path = write_slice(tmp_path / "h.dcm", expected_stored(1, 32, 32), position=(0, 0, 0), series_uid=new_uid())
    ds = pydicom.dcmread(str(path))
    if pydicom.__version__.startswith("2."):
        ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + b"\0" * 60])  # never decoded: no decoder on 2.4
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
        ds.file_meta.TransferSyntaxUID = htj2k
        _write_raw(path, ds)
        with pytest.raises(MissingDecoderError, match=r"High-Throughput JPEG 2000.*pydicom >= 3\.0"):
            load_path(path)
        return
    _recode(path, "1.2.840.10008.1.2.4.90")  # a JPEG 2000 Part 1 code stream is valid HTJ2K input
    ds = pydicom.dcmread(str(path))
    ds.file_meta.TransferSyntaxUID = htj2k
    _write_raw(path, ds)
    volume = load_path(path)
    np.testing.assert_array_equal(volume.array[0], expected_stored(1, 32, 32) - 1024)


# ------------------------------------------------------------------------------ SimpleITK where it is right
@pytest.mark.parametrize(
    "orientation, step, encoding",
    [
        (AXIAL, -2.5, "signed"),
        (CORONAL, 3.0, "big-endian"),
        (SAGITTAL, 3.0, "plain"),
        (_oblique(), 2.0, "plain"),
    ],
    ids=["axial-descending-signed", "coronal-big-endian", "sagittal", "oblique"],
)
def test_regular_stacks_equal_simpleitk(tmp_path, orientation, step, encoding):
    sitk = pytest.importorskip("SimpleITK")
    positions = _tilted_positions(5, step, 0.0, orientation, origin=(5, -3, 40))
    uid = new_uid()
    for k, p in enumerate(positions):
        stored = expected_stored(k, ROWS, COLS) - (2048 if encoding == "signed" else 0)
        path = write_slice(
            tmp_path / f"{k}.dcm",
            stored,
            position=p,
            orientation=orientation,
            pixel_spacing=PIXEL_SPACING,
            series_uid=uid,
            signed=encoding == "signed",
        )
        if encoding == "big-endian":
            rewrite_big_endian(path)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(tmp_path)))
    reference = reader.Execute()
    volume = load_path(tmp_path)
    np.testing.assert_array_equal(volume.array, sitk.GetArrayFromImage(reference))
    np.testing.assert_allclose(volume.geometry.direction, np.reshape(reference.GetDirection(), (3, 3)), atol=1e-5)
    np.testing.assert_allclose(volume.geometry.origin, reference.GetOrigin(), atol=1e-3)
    np.testing.assert_allclose(volume.geometry.spacing, reference.GetSpacing(), atol=1e-3)


def test_one_series_in_mixed_transfer_syntaxes(tmp_path):
    # A PACS that recompressed part of a series: every file decoded its own way, one volume
    import pydicom
    from dicom_factory import save

    uid, expected = new_uid(), []
    for k, encoding in enumerate(["big-endian", "rle", "deflated", "implicit", "explicit"]):
        values = expected_stored(k, ROWS, COLS) - 2048
        path = write_slice(tmp_path / f"{k}.dcm", values, position=(0, 0, 2.0 * k), series_uid=uid, signed=True)
        if encoding == "big-endian":
            rewrite_big_endian(path)
        elif encoding == "rle":
            _recode(path, "1.2.840.10008.1.2.5")
        elif encoding in ("deflated", "implicit"):
            ds = pydicom.dcmread(str(path))
            ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.1.99" if encoding == "deflated" else "1.2.840.10008.1.2"
            save(ds, path)
        expected.append(values - 1024)
    np.testing.assert_array_equal(load_path(tmp_path).array, np.stack(expected))


@pytest.mark.parametrize("n_t", [1, 2])
def test_enhanced_ct_tilted_coronal_with_gap_and_shuffled_frames(tmp_path, n_t):
    from MedPrepLib.volume import Volume

    positions = _tilted_positions(7, 2.5, 12.0, CORONAL, origin=(1, 2, 3), gap_after=2)
    frames = [
        {
            "position": p,
            "orientation": CORONAL,
            "stored": expected_stored(k + 3 * t, ROWS, COLS),
            "temporal": t + 1 if n_t > 1 else None,
            "t": t,
        }
        for t in range(n_t)
        for k, p in enumerate(positions)
    ]
    frames = _shuffled(frames)
    path = write_enhanced_frames(
        tmp_path / "e.dcm", frames, modality="CT", shared_rescale=(1.0, -1024.0), pixel_spacing=PIXEL_SPACING
    )
    raw = load_files([path], regularize=False)
    placed = np.asarray(raw.metadata["slice_positions"])
    for f in frames:
        k = int(np.argmin(np.linalg.norm(placed - f["position"], axis=1)))
        assert np.linalg.norm(placed[k] - f["position"]) < 1e-3
        got = raw.array[k] if n_t == 1 else raw.array[k, ..., f["t"]]
        np.testing.assert_array_equal(got, f["stored"] - 1024)
    volume = load_path(path)
    assert volume.metadata["regularized"]
    for t in range(n_t):
        one = volume if n_t == 1 else Volume(np.ascontiguousarray(volume.array[..., t]), volume.geometry)
        _assert_resampled_values(one, [(f["position"], f["stored"]) for f in frames if f["t"] == t], CORONAL)
