"""Image files through MedPrepLib.imageio: exact round trips, foreign readers, refusals."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import SimpleITK as sitk
from scipy.spatial.transform import Rotation

from MedPrepLib.errors import InputError, InvalidImageError, OutputExistsError
from MedPrepLib.geometry import Geometry
from MedPrepLib.imageio import read_image, write_image
from MedPrepLib.volume import Volume


def oblique_volume(dtype=np.int16) -> Volume:
    """An anisotropic, oblique volume with a non-trivial origin and distinct voxel values."""
    rng = np.random.default_rng(7)
    array = rng.integers(-1024, 3000, size=(7, 11, 13)).astype(dtype)
    direction = Rotation.from_euler("xyz", [17, -9, 31], degrees=True).as_matrix()
    return Volume(array, spacing=(0.7, 0.8, 2.5), origin=(-120.25, 33.5, 71.125), direction=direction)


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd"])
@pytest.mark.parametrize("dtype", [np.int16, np.float32, np.uint8])
def test_round_trip_is_exact(tmp_path, suffix, dtype):
    vol = oblique_volume(dtype)
    path = write_image(vol, tmp_path / f"img{suffix}")
    back = read_image(path)
    assert back.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(back.array, vol.array)
    # NIfTI stores the transform as float32 (sform) — everything else as text/double.
    atol = 1e-4 if suffix.startswith(".nii") else 1e-12
    assert back.geometry.isclose(vol.geometry, atol_mm=atol, atol_dir=atol), (back.geometry, vol.geometry)
    assert back.geometry.size == vol.geometry.size


def test_mhd_writes_header_and_data_and_no_temporaries(tmp_path):
    write_image(oblique_volume(), tmp_path / "img.mhd")
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names[0] == "img.mhd" and names[1].startswith("img.") and len(names) == 2


@pytest.mark.parametrize("suffix", [".hdr", ".mnc"])
def test_analyze_and_minc_written_by_simpleitk_read_back(tmp_path, suffix):
    vol = oblique_volume(np.float32) if suffix == ".mnc" else oblique_volume()
    path = tmp_path / f"img{suffix}"
    sitk.WriteImage(vol.to_sitk(), str(path))
    back = read_image(path)
    np.testing.assert_array_equal(back.array, vol.array)
    assert back.geometry.isclose(vol.geometry, atol_mm=1e-4, atol_dir=1e-4)


def test_written_nifti_affine_equals_nibabel(tmp_path):
    nib = pytest.importorskip("nibabel", reason="nibabel is a test dependency")
    vol = oblique_volume()
    path = write_image(vol, tmp_path / "img.nii.gz")
    img = nib.load(str(path))
    np.testing.assert_allclose(img.affine, vol.geometry.affine_ras(), atol=1e-4)
    # nibabel's array is (x, y, z): ours transposed.
    np.testing.assert_array_equal(np.asarray(img.dataobj), vol.array.transpose(2, 1, 0))


def test_nibabel_written_nifti_reads_with_the_same_affine(tmp_path):
    nib = pytest.importorskip("nibabel", reason="nibabel is a test dependency")
    affine = np.array([[-0.9, 0.1, 0.0, 90.0], [0.1, 0.9, 0.05, -126.0], [0.0, -0.05, 3.0, -72.0], [0, 0, 0, 1]])
    # make the 3x3 part orthogonal with spacings (0.9055.., ...) via QR so ITK accepts it
    q, r = np.linalg.qr(affine[:3, :3])
    q = q * np.sign(np.diag(r))
    affine[:3, :3] = q @ np.diag([0.9, 1.1, 3.0])
    data = np.arange(5 * 6 * 4, dtype=np.int16).reshape(5, 6, 4)
    nib.save(nib.Nifti1Image(data, affine), str(tmp_path / "n.nii.gz"))
    vol = read_image(tmp_path / "n.nii.gz")
    np.testing.assert_allclose(vol.geometry.affine_ras(), affine, atol=1e-4)
    np.testing.assert_array_equal(vol.array, data.transpose(2, 1, 0))


def test_four_d_nifti_loads_as_channels(tmp_path):
    nib = pytest.importorskip("nibabel", reason="nibabel is a test dependency")
    data = np.random.default_rng(0).random((6, 5, 4, 3)).astype(np.float32)  # x, y, z, t
    affine = np.diag([2.0, 2.0, 3.0, 1.0])
    nib.save(nib.Nifti1Image(data, affine), str(tmp_path / "t.nii"))
    vol = read_image(tmp_path / "t.nii")
    assert vol.shape == (4, 5, 6, 3) and vol.n_channels == 3
    np.testing.assert_array_equal(vol.array, data.transpose(2, 1, 0, 3))
    np.testing.assert_allclose(vol.geometry.affine_ras(), affine, atol=1e-6)


def test_nan_voxels_are_refused_unless_allowed(tmp_path):
    vol = oblique_volume(np.float32)
    arr = vol.array.copy()
    arr[1, 2, 3] = np.nan
    arr[0, 0, 0] = np.inf
    path = write_image(vol.with_array(arr), tmp_path / "nan.nii.gz")
    with pytest.raises(InvalidImageError, match="2 voxel"):
        read_image(path)
    assert np.isnan(read_image(path, allow_nonfinite=True).array[1, 2, 3])


def _set_nifti_qform_offset(path, dx):
    """Shift the qform's x offset of an uncompressed .nii in place (sform untouched)."""
    raw = bytearray(path.read_bytes())
    (qx,) = struct.unpack("<f", raw[268:272])
    raw[268:272] = struct.pack("<f", qx + dx)
    path.write_bytes(bytes(raw))


def test_qform_sform_disagreement_is_reported(tmp_path, caplog):
    vol = Volume(np.zeros((3, 4, 5), np.int16), spacing=(1, 1, 2))
    path = write_image(vol, tmp_path / "q.nii")
    assert read_image(path).metadata["warnings"] == []
    _set_nifti_qform_offset(path, 5.0)
    with caplog.at_level("WARNING"):
        back = read_image(path)
    assert any("qform" in w and "sform" in w and "5 mm" in w for w in back.metadata["warnings"])
    assert "disagree" in caplog.text


def test_never_overwrites_without_flag(tmp_path):
    vol = oblique_volume()
    path = write_image(vol, tmp_path / "a.nrrd")
    before = path.read_bytes()
    with pytest.raises(OutputExistsError):
        write_image(vol.with_array(vol.array + 1), path)
    assert path.read_bytes() == before
    write_image(vol.with_array(vol.array + 1), path, overwrite=True)
    np.testing.assert_array_equal(read_image(path).array, vol.array + 1)


def test_unreadable_and_unknown_inputs_name_the_file(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_image(tmp_path / "missing.nii")
    bogus = tmp_path / "bogus.nii.gz"
    bogus.write_bytes(gzip.compress(b"not an image"))
    with pytest.raises(InputError, match="bogus.nii.gz"):
        read_image(bogus)
    with pytest.raises(InputError, match="is a folder"):
        read_image(tmp_path)
    png = tmp_path / "x.png"
    png.write_bytes(b"")
    with pytest.raises(InputError, match="unknown image format"):
        read_image(png)


def test_geometry_round_trips_through_sitk_without_copy():
    vol = oblique_volume()
    image = vol.to_sitk()
    view = Volume.from_sitk(image)
    assert not view.array.flags.writeable  # a view on SimpleITK's buffer
    assert view.geometry == Geometry.from_sitk(image)
    np.testing.assert_array_equal(view.array, vol.array)


def test_multichannel_volume_writes_as_4d_nifti_and_reads_back(tmp_path):
    nib = pytest.importorskip("nibabel", reason="nibabel is a test dependency")
    arr = np.random.default_rng(3).random((4, 5, 6, 2)).astype(np.float32)  # z, y, x, t
    vol = Volume(arr, spacing=(1.0, 2.0, 3.0), origin=(5, 6, 7))
    path = write_image(vol, tmp_path / "t.nii.gz")
    img = nib.load(str(path))
    assert img.shape == (6, 5, 4, 2)  # x, y, z, t: a time series, not a 5D vector image
    np.testing.assert_array_equal(np.asarray(img.dataobj), arr.transpose(2, 1, 0, 3))
    back = read_image(path)
    np.testing.assert_array_equal(back.array, arr)
    assert back.geometry.isclose(vol.geometry)


def test_written_files_have_ordinary_permissions(tmp_path):
    from MedPrepLib.atomic import atomic_write_text, default_file_mode

    p = atomic_write_text(tmp_path / "a.json", "{}")
    assert p.stat().st_mode & 0o777 == default_file_mode()
    assert write_image(oblique_volume(), tmp_path / "a.nii").stat().st_mode & 0o777 == default_file_mode()
    with pytest.raises(OutputExistsError):
        atomic_write_text(p, "[]")
    assert p.read_text() == "{}" and [q.name for q in tmp_path.iterdir() if q.name.startswith(".")] == []
