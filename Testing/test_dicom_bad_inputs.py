"""The bad-input catalogue of issue 3: each case is built with pydicom in tmp_path and must be
loaded correctly, skipped with its reason code, or refused with a precise error."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")

from dicom_factory import expected_stored, new_uid, save, write_ct_series, write_slice  # noqa: E402

from MedPrepLib.dicom.header import SkipFile, read_header  # noqa: E402
from MedPrepLib.dicom.scan import scan_files  # noqa: E402
from MedPrepLib.errors import (  # noqa: E402
    DicomError,
    GeometryError,
    MissingDecoderError,
    SeriesSelectionError,
)
from MedPrepLib.sources import load_path  # noqa: E402

pytestmark = pytest.mark.pydicom_dependent


def _files(folder):
    return sorted(str(p) for p in folder.rglob("*") if p.is_file())


def _reasons(folder) -> dict[str, str]:
    result = scan_files(_files(folder), cache=False, workers=1)
    return {s.path.split("/")[-1]: s.reason for s in result.skipped}


def _expected_hu(k, rows=24, cols=32, intercept=-1024):
    return expected_stored(k, rows, cols) + intercept


def test_mixed_series_in_one_folder_needs_a_choice(tmp_path):
    write_ct_series(tmp_path, 4, prefix="A")
    write_ct_series(tmp_path, 3, prefix="B", rows=16, cols=16)
    with pytest.raises(SeriesSelectionError) as exc:
        load_path(tmp_path)
    stacks = scan_files(_files(tmp_path), cache=False, workers=1).stacks
    assert len(stacks) == 2
    for s in stacks:
        assert s.id in str(exc.value)
    small = next(s for s in stacks if s.headers[0].rows == 16)
    vol = load_path(tmp_path, series=small.id)
    assert vol.shape == (3, 16, 16)
    np.testing.assert_array_equal(vol.array[2], expected_stored(2, 16, 16) - 1024)


@pytest.mark.parametrize("flagged", [True, False], ids=["ImageType-LOCALIZER", "orientation-only"])
def test_localizer_inside_a_series_is_skipped(tmp_path, flagged):
    paths = write_ct_series(tmp_path, 5)
    series_uid = pydicom.dcmread(paths[0]).SeriesInstanceUID
    write_slice(
        tmp_path / "scout.dcm",
        expected_stored(0, 40, 40),
        position=(-100, 0, 100),
        orientation=(1, 0, 0, 0, 0, -1),
        series_uid=series_uid,
        image_type=("ORIGINAL", "PRIMARY", "LOCALIZER") if flagged else ("ORIGINAL", "PRIMARY", "AXIAL"),
    )
    assert _reasons(tmp_path).get("scout.dcm") == "localizer"
    vol = load_path(tmp_path)
    assert vol.shape == (5, 24, 32)


def test_missing_slice_is_resampled_with_a_warning_or_rejected_with_the_gap(tmp_path):
    paths = write_ct_series(tmp_path, 5, gap_after=2, step=2.5)
    with pytest.raises(GeometryError) as exc:
        load_path(tmp_path, geometry_policy="reject")
    message = str(exc.value)
    assert "5.000 mm" in message and "2.500 mm" in message
    assert "between slice 3 of 5" in message and "and slice 4 of 5" in message
    # file names only in the verbose-only detail (names often carry the patient's name)
    assert paths[2].name not in message and paths[2].name in exc.value.detail and paths[3].name in exc.value.detail
    vol = load_path(tmp_path)
    assert vol.shape[0] == 6 and vol.spacing[2] == pytest.approx(2.5)
    assert any("uneven slice spacing" in w for w in vol.metadata["warnings"])
    # acquired slices keep their values; the missing one is interpolated between its neighbours
    np.testing.assert_array_equal(vol.array[2], _expected_hu(2))
    np.testing.assert_array_equal(vol.array[4], _expected_hu(3))
    mid = np.rint((_expected_hu(2) + _expected_hu(3)) / 2)
    np.testing.assert_allclose(vol.array[3], mid, atol=1)


def test_duplicated_slice_file_is_skipped_by_sop_instance(tmp_path):
    paths = write_ct_series(tmp_path, 4)
    shutil.copy(paths[1], tmp_path / "copy_of_slice.dcm")
    assert "duplicate_sop_instance" in _reasons(tmp_path).values()
    assert load_path(tmp_path).shape == (4, 24, 32)


def test_exact_duplicate_with_new_uid_is_dropped_with_a_warning(tmp_path):
    paths = write_ct_series(tmp_path, 4)
    ds = pydicom.dcmread(paths[1])
    ds.SOPInstanceUID = new_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    save(ds, tmp_path / "dup.dcm")
    vol = load_path(tmp_path)
    assert vol.shape == (4, 24, 32)
    assert any("duplicate" in w for w in vol.metadata["warnings"])
    np.testing.assert_array_equal(vol.array[1], _expected_hu(1))


def test_same_position_with_different_pixels_is_refused(tmp_path):
    paths = write_ct_series(tmp_path, 4)
    ds = pydicom.dcmread(paths[1])
    ds.SOPInstanceUID = new_uid()
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.PixelData = (expected_stored(7, 24, 32).astype(np.uint16)).tobytes()
    save(ds, tmp_path / "other.dcm")
    with pytest.raises(DicomError) as exc:
        load_path(tmp_path)
    assert "same position" in str(exc.value) and "other.dcm" not in str(exc.value)
    assert "other.dcm" in exc.value.detail


def test_truncated_file_is_skipped_as_truncated(tmp_path):
    paths = write_ct_series(tmp_path, 4)
    data = paths[3].read_bytes()
    paths[3].write_bytes(data[: len(data) - 100])
    with pytest.raises(SkipFile) as exc:
        read_header(str(paths[3]))
    assert exc.value.reason == "truncated"
    assert _reasons(tmp_path)[paths[3].name] == "truncated"
    vol = load_path(tmp_path)  # the other three slices still load (last slice gone: still regular)
    assert vol.shape == (3, 24, 32)


def test_non_dicom_files_are_skipped(tmp_path):
    write_ct_series(tmp_path, 3)
    (tmp_path / "notes.txt").write_text("not an image\n")
    (tmp_path / "DIRFILE").write_bytes(b"\0" * 300)
    (tmp_path / "random.bin").write_bytes(np.random.default_rng(0).bytes(2000))
    reasons = _reasons(tmp_path)
    for name in ("notes.txt", "DIRFILE", "random.bin"):
        assert reasons.get(name) in ("not_dicom", "unreadable"), (name, reasons)
    assert load_path(tmp_path).shape == (3, 24, 32)


def _disable_decoders(monkeypatch, uid):
    try:
        from pydicom.pixels import get_decoder  # pydicom 3
    except ImportError:
        import pydicom.config

        monkeypatch.setattr(pydicom.config, "pixel_data_handlers", [])
        return
    decoder = get_decoder(uid)
    monkeypatch.setattr(decoder, "_available", {})


def test_no_decoder_installed_names_transfer_syntax_and_package(tmp_path, monkeypatch):
    from pydicom.encaps import encapsulate
    from pydicom.uid import JPEG2000Lossless

    paths = write_ct_series(tmp_path, 3)
    for p in paths:
        ds = pydicom.dcmread(p)
        ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
        ds.PixelData = encapsulate([b"\xff\x4f\xff\x51" + b"\0" * 64])
        ds["PixelData"].VR = "OB"
        save(ds, p)
    _disable_decoders(monkeypatch, JPEG2000Lossless)
    with pytest.raises(MissingDecoderError) as exc:
        load_path(tmp_path)
    message = str(exc.value)
    assert "JPEG 2000" in message and str(JPEG2000Lossless) in message
    assert "pip install" in message and "pylibjpeg-openjpeg" in message


@pytest.mark.parametrize("missing", ["ImagePositionPatient", "ImageOrientationPatient"])
def test_missing_position_or_orientation_is_refused(tmp_path, missing):
    paths = write_ct_series(tmp_path, 3)
    ds = pydicom.dcmread(paths[1])
    delattr(ds, missing)
    save(ds, paths[1])
    with pytest.raises(GeometryError) as exc:
        load_path(tmp_path)
    assert "instance 2" in str(exc.value) and paths[1].name not in str(exc.value)  # write_ct_series: 3 - k
    assert paths[1].name in exc.value.detail


def test_rgb_image_is_skipped_as_colour(tmp_path):
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[..., 0] = 200
    write_slice(tmp_path / "photo.dcm", rgb, position=(0, 0, 0), series_uid=new_uid(), rescale=None)
    with pytest.raises(SkipFile) as exc:
        read_header(str(tmp_path / "photo.dcm"))
    assert exc.value.reason == "colour"
    with pytest.raises(SeriesSelectionError) as exc2:
        load_path(tmp_path)
    assert "colour" in str(exc2.value)


def test_4d_series_loads_as_time_points_last(tmp_path):
    uid = new_uid()
    write_ct_series(tmp_path / "t1", 3, series_uid=uid, TemporalPositionIdentifier=1, prefix="A")
    paths2 = write_ct_series(tmp_path / "t2", 3, series_uid=uid, TemporalPositionIdentifier=2, prefix="B")
    for p in paths2:  # second time point: other values
        ds = pydicom.dcmread(p)
        ds.PixelData = (np.frombuffer(ds.PixelData, np.uint16) + 1).astype(np.uint16).tobytes()
        save(ds, p)
    vol = load_path(tmp_path)
    assert vol.shape == (3, 24, 32, 2)
    assert vol.metadata["n_timepoints"] == 2 and vol.metadata["temporal_key"] == "temporal_position"
    for k in range(3):
        np.testing.assert_array_equal(vol.array[k, ..., 0], _expected_hu(k))
        np.testing.assert_array_equal(vol.array[k, ..., 1], _expected_hu(k) + 1)


def test_dicomdir_file_stands_for_its_folder(tmp_path):
    paths = write_ct_series(tmp_path, 3)
    ds = pydicom.dcmread(paths[0])
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.1.3.10"
    ds.SOPClassUID = "1.2.840.10008.1.3.10"
    ds.SOPInstanceUID = new_uid()
    save(ds, tmp_path / "DICOMDIR")
    assert _reasons(tmp_path)["DICOMDIR"] == "dicomdir"
    assert load_path(tmp_path / "DICOMDIR").shape == (3, 24, 32)
