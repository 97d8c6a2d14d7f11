"""Header-only classification: every exclusion gets its reason code; pixel data location is
found without reading pixels."""

from __future__ import annotations

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")

from dicom_factory import expected_stored, new_uid, save, write_slice  # noqa: E402

from MedPrepLib.dicom.header import SkipFile, read_header  # noqa: E402
from MedPrepLib.dicom.stack import FileHeader  # noqa: E402

pytestmark = pytest.mark.pydicom_dependent


def _slice(tmp_path, name="a.dcm", **kw):
    return write_slice(tmp_path / name, expected_stored(0, 8, 8), position=(0, 0, 0), series_uid=new_uid(), **kw)


def _reason(path) -> str:
    with pytest.raises(SkipFile) as exc:
        read_header(str(path))
    assert exc.value.skipped.path == str(path)
    return exc.value.reason


@pytest.mark.parametrize(
    ("attributes", "reason"),
    [
        ({"sop_class": "1.2.840.10008.5.1.4.1.1.66.4", "modality": "SEG"}, "label_source"),
        ({"sop_class": "1.2.840.10008.5.1.4.1.1.481.3", "modality": "RTSTRUCT"}, "label_source"),
        ({"sop_class": "1.2.840.10008.5.1.4.1.1.88.22", "modality": "SR"}, "non_image"),
        ({"sop_class": "1.2.840.10008.5.1.4.1.1.481.5", "modality": "RTPLAN"}, "non_image"),
        ({"sop_class": "1.2.840.10008.5.1.4.1.1.7"}, "secondary_capture"),
        ({"image_type": ("DERIVED", "SECONDARY", "SCREEN SAVE")}, "secondary_capture"),
        ({"image_type": ("ORIGINAL", "PRIMARY", "LOCALIZER")}, "localizer"),
        ({"SeriesDescription": "AAHead_Scout"}, "localizer"),
    ],
)
def test_exclusions_have_reason_codes(tmp_path, attributes, reason):
    assert _reason(_slice(tmp_path, **attributes)) == reason


def test_no_pixel_data(tmp_path):
    path = _slice(tmp_path)
    ds = pydicom.dcmread(path)
    del ds.PixelData
    save(ds, path)
    assert _reason(path) == "no_pixel_data"


def test_dicomdir(tmp_path):
    path = _slice(tmp_path)
    ds = pydicom.dcmread(path)
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.1.3.10"
    ds.SOPClassUID = "1.2.840.10008.1.3.10"
    save(ds, path)
    assert _reason(path) == "dicomdir"


def test_header_records_pixel_location_and_keeps_no_identity(tmp_path):
    path = _slice(tmp_path, PixelPaddingValue=0)
    h = read_header(str(path))
    data = path.read_bytes()
    offset, length = h.extra["pixel_offset"], h.extra["pixel_length"]
    assert length == 8 * 8 * 2 and offset + length <= len(data)
    np.testing.assert_array_equal(
        np.frombuffer(data[offset : offset + length], "<u2").reshape(8, 8), expected_stored(0, 8, 8)
    )
    assert h.pixel_padding_value == 0 and h.frames[0].position == (0.0, 0.0, 0.0)
    text = str(h.to_dict())
    assert "Synthetic" not in text and "SYNTH-0001" not in text
    assert FileHeader.from_dict(h.to_dict()) == h
