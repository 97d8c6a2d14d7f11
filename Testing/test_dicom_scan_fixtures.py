"""Synthetic DICOM files for the discovery tests (no real identifiers; tiny pixel arrays).

Imported by test_dicom_scan.py, test_dicom_fastheader.py and test_dicom_slicerdb.py; holds no
tests itself. Works with pydicom 2.4 and 3.x.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian, generate_uid

CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
PYDICOM_MAJOR = int(pydicom.__version__.split(".")[0])


def write_dataset(ds: Dataset, path: Path, transfer_syntax: str = ExplicitVRLittleEndian) -> Path:
    """Write ``ds`` as a Part-10 file with the given (uncompressed) transfer syntax."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = ds.get("SOPClassUID", CT_IMAGE_STORAGE)
    meta.MediaStorageSOPInstanceUID = ds.get("SOPInstanceUID", generate_uid())
    meta.TransferSyntaxUID = transfer_syntax
    ds.file_meta = meta
    ds.preamble = b"\0" * 128
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if PYDICOM_MAJOR >= 3:
        ds.save_as(path, enforce_file_format=True)
    else:  # pragma: no cover - pydicom 2.4
        ds.is_little_endian = True
        ds.is_implicit_VR = transfer_syntax == ImplicitVRLittleEndian
        ds.save_as(path, write_like_original=False)
    return path


def ct_slice(
    series_uid: str,
    study_uid: str,
    z: float,
    instance: int,
    *,
    size: int = 8,
    orientation=(1, 0, 0, 0, 1, 0),
    description: str = "SYNTHETIC CT",
    with_sequence: bool = True,
) -> Dataset:
    """One synthetic CT slice at height ``z`` mm (LPS), ``size`` x ``size`` int16 pixels."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.SOPClassUID = CT_IMAGE_STORAGE
    ds.SOPInstanceUID = generate_uid()
    ds.StudyDate = "20000101"
    ds.AcquisitionTime = "120000.000"
    ds.Modality = "CT"
    ds.Manufacturer = "SYNTHETIC"
    ds.SeriesDescription = description
    ds.PatientName = "Synthetic^Phantom"
    ds.PatientID = "SYNTH-0001"
    if with_sequence:  # a nested sequence before the pixel data (pydicom writes it with undefined length)
        ref = Dataset()
        ref.ReferencedSOPClassUID = CT_IMAGE_STORAGE
        ref.ReferencedSOPInstanceUID = generate_uid()
        ref.is_undefined_length_sequence_item = True
        ds.ReferencedImageSequence = Sequence([ref])
        ds["ReferencedImageSequence"].is_undefined_length = True
    ds.SliceThickness = "2.5"
    ds.KVP = "120"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = 3
    ds.AcquisitionNumber = 1
    ds.InstanceNumber = instance
    ds.ImagePositionPatient = [-100.0, -120.5, float(z)]
    ds.ImageOrientationPatient = list(orientation)
    ds.FrameOfReferenceUID = generate_uid(prefix=None, entropy_srcs=[study_uid, "frame of reference"])
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = size
    ds.Columns = size
    ds.PixelSpacing = [0.75, 0.8]
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.WindowCenter = [40, 400]
    ds.WindowWidth = [400, 1500]
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"
    ds.add_new(0x00091010, "LO", "PRIVATE VALUE")  # a private element to be skipped
    pixels = (np.arange(size * size, dtype=np.int16).reshape(size, size) + instance).astype(np.int16)
    ds.PixelData = pixels.tobytes()
    return ds


def write_ct_series(
    folder: Path,
    n: int = 5,
    *,
    step: float = 2.5,
    series_uid: str | None = None,
    transfer_syntax: str = ExplicitVRLittleEndian,
    prefix: str = "IM",
    **kwargs,
) -> list[Path]:
    """Write an ``n``-slice synthetic CT series into ``folder``; returns the file paths."""
    series_uid = series_uid or generate_uid()
    study_uid = generate_uid()
    paths = []
    for k in range(n):
        ds = ct_slice(series_uid, study_uid, z=k * step, instance=k + 1, **kwargs)
        paths.append(write_dataset(ds, Path(folder) / f"{prefix}{k + 1:04d}.dcm", transfer_syntax))
    return paths
