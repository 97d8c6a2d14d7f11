"""MedPrep's own image writer against SimpleITK's: the same files, byte for byte (uncompressed),
the same header and voxels (compressed), for every format, pixel type and layout."""

from __future__ import annotations

import gzip
import zlib

import numpy as np
import pytest
import SimpleITK as sitk

from MedPrepLib.geometry import Geometry
from MedPrepLib.imageio import read_image, write_image
from MedPrepLib.volume import Volume

FORMATS = [".nii", ".nii.gz", ".nrrd", ".nhdr", ".mha", ".mhd"]
DTYPES = [np.uint8, np.int16, np.uint16, np.int32, np.float32, np.float64]


def _volume(shape, dtype, seed=0) -> Volume:
    rng = np.random.default_rng(seed)
    array = (rng.normal(0, 200, shape)).astype(dtype)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    size = (shape[2], shape[1], shape[0])
    geometry = Geometry(size=size, spacing=tuple(rng.uniform(0.3, 3, 3)), origin=tuple(rng.uniform(-200, 200, 3)), direction=q)
    return Volume(array, geometry)


def _itk_image(volume: Volume, suffix: str):
    """What the previous writer (plain SimpleITK) was given for this volume."""
    if volume.array.ndim == 4 and suffix in (".nii", ".nii.gz"):
        image = sitk.GetImageFromArray(np.ascontiguousarray(np.moveaxis(volume.array, 3, 0)), isVector=False)
        g = volume.geometry
        direction = np.eye(4)
        direction[:3, :3] = g.direction
        image.SetSpacing((*g.spacing, 1.0))
        image.SetOrigin((*g.origin, 0.0))
        image.SetDirection(tuple(direction.ravel()))
        return image
    return volume.to_sitk()


def _files(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _payload(name: str, data: bytes) -> bytes:
    """Decompressed content of a compressed file, the header of a detached one as it is."""
    if name.endswith((".gz",)):
        return gzip.decompress(data)
    if name.endswith(".zraw"):
        return zlib.decompress(data)
    if name.endswith(".nrrd") and b"encoding: gzip" in data:
        head, _, body = data.partition(b"\n\n")
        return head.replace(b"encoding: gzip", b"encoding: raw") + b"\n\n" + gzip.decompress(body)
    if name.endswith(".mha") and b"CompressedData = True" in data:
        end = data.index(b"ElementDataFile = LOCAL\n") + len(b"ElementDataFile = LOCAL\n")
        head = data[:end].replace(b"CompressedData = True", b"CompressedData = False")
        head = b"\n".join(line for line in head.split(b"\n") if not line.startswith(b"CompressedDataSize"))
        return head + zlib.decompress(data[end:])
    if name.endswith(".mhd"):
        data = data.replace(b"CompressedData = True", b"CompressedData = False").replace(b".zraw", b".raw")
        return b"\n".join(line for line in data.split(b"\n") if not line.startswith(b"CompressedDataSize"))
    if name.endswith(".nhdr"):
        return data.replace(b"encoding: gzip", b"encoding: raw").replace(b".raw.gz", b".raw")
    return data


def _canonical_names(files: dict[str, bytes]) -> dict[str, bytes]:
    out = {}
    for name, data in files.items():
        out[name.replace(".raw.gz", ".raw").replace(".zraw", ".raw").replace(".nii.gz", ".nii")] = _payload(name, data)
    return out


@pytest.mark.parametrize("suffix", FORMATS)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
@pytest.mark.parametrize("layout", ["3d", "one-slice", "channels"])
def test_same_files_as_simpleitk(tmp_path, suffix, dtype, layout):
    shape = {"3d": (5, 7, 9), "one-slice": (1, 6, 4), "channels": (4, 5, 6, 3)}[layout]
    volume = _volume(shape, dtype)
    for compress in (False, True):
        ours, theirs = tmp_path / f"ours{compress}", tmp_path / f"itk{compress}"
        ours.mkdir()
        theirs.mkdir()
        write_image(volume, ours / f"v{suffix}", compress=compress)
        sitk.WriteImage(_itk_image(volume, suffix), str(theirs / f"v{suffix}"), compress)
        a, b = _files(ours), _files(theirs)
        assert sorted(a) == sorted(b)
        if suffix == ".nii" or (not compress and suffix != ".nii.gz"):  # .nii.gz is always gzip
            assert a == b  # byte-identical to SimpleITK's own writer
        else:
            assert _canonical_names(a) == _canonical_names(b)
        back = read_image(ours / f"v{suffix}")
        np.testing.assert_array_equal(back.array, volume.array)
        assert back.geometry.size == volume.geometry.size
        np.testing.assert_allclose(back.geometry.affine_lps(), volume.geometry.affine_lps(), atol=1e-4)  # NIfTI: float32


def test_compressed_output_is_deterministic(tmp_path):
    volume = _volume((6, 8, 10), np.int16)
    write_image(volume, tmp_path / "a.nii.gz")
    write_image(volume, tmp_path / "b.nii.gz")
    assert (tmp_path / "a.nii.gz").read_bytes() == (tmp_path / "b.nii.gz").read_bytes()


def test_four_d_nifti_keeps_its_time_spacing(tmp_path):
    image = sitk.GetImageFromArray(np.arange(2 * 3 * 4 * 5, dtype=np.int16).reshape(5, 4, 3, 2), isVector=False)
    image.SetSpacing((1.5, 1.5, 3.0, 2.5))  # pixdim[4]: 2.5 (e.g. seconds between volumes)
    sitk.WriteImage(image, str(tmp_path / "in.nii.gz"))
    volume = read_image(tmp_path / "in.nii.gz")
    write_image(volume, tmp_path / "out.nii.gz")
    assert sitk.ReadImage(str(tmp_path / "out.nii.gz")).GetSpacing()[3] == pytest.approx(2.5)


def test_deflate_engine_is_named_and_writes_standard_gzip(tmp_path):
    from MedPrepLib.imagewriter import deflate_engine

    engine = deflate_engine()
    assert engine.split()[0] in ("isal", "zlib")
    volume = _volume((6, 8, 10), np.int16)
    write_image(volume, tmp_path / "a.nii.gz")
    data = (tmp_path / "a.nii.gz").read_bytes()
    assert data[:4] == b"\x1f\x8b\x08\x00" and data[4:8] == b"\0\0\0\0"  # gzip, no name, mtime 0
    assert gzip.decompress(data)[352:] == volume.array.tobytes()


@pytest.mark.parametrize("suffix", [".nii.gz", ".nrrd", ".mha", ".mhd", ".nhdr"])
def test_zlib_fallback_writes_the_same_image(tmp_path, monkeypatch, suffix):
    """Where isal has no wheel the standard library compresses: other bytes, the same image."""
    import zlib

    from MedPrepLib import imagewriter

    volume = _volume((5, 7, 9), np.float32)
    write_image(volume, tmp_path / f"isal{suffix}")
    monkeypatch.setattr(imagewriter, "_DEFLATE", zlib)
    assert imagewriter.deflate_engine().startswith("zlib ")
    write_image(volume, tmp_path / f"zlib{suffix}")
    for name in ("isal", "zlib"):
        back = read_image(tmp_path / f"{name}{suffix}")
        np.testing.assert_array_equal(back.array, volume.array)
