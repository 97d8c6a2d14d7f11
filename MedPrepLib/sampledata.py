"""Built-in sample data: a synthetic chest CT phantom in Hounsfield units, written as DICOM.

Nothing is downloaded: the phantom is generated (seeded, so it is the same on every machine)
and written as a CT series with pydicom, the way a scanner would store it — signed 16-bit
stored values with RescaleIntercept -1024, a circular reconstruction field of view whose
outside carries PixelPaddingValue, axial slices in LPS.

Anatomy (approximate HU): air -1000, subcutaneous fat -100, muscle/soft tissue 40, lungs
-850, heart with contrast 150, vertebra (cortical 700, cancellous 250), ribs 500.
Patient identity is a pseudonym (``MEDPREP^DEMO``); there is no real patient in it.
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic import atomic_write_bytes, make_folder
from .volume import Volume

AIR_HU = -1000
PADDING_STORED = -2000  # stored value outside the reconstruction circle (as GE scanners write)
RESCALE_INTERCEPT = -1024


def chest_ct_phantom(
    shape_zyx: tuple[int, int, int] = (48, 192, 192),
    spacing_xyz: tuple[float, float, float] = (1.8, 1.8, 5.0),
    *,
    seed: int = 0,
    noise_hu: float = 12.0,
) -> Volume:
    """A chest-like CT volume in HU (int16), axial, identity direction (LPS).

    The origin centres the field of view on (0, 0, 0) mm. Voxels outside the circular
    reconstruction field of view hold air; see :func:`write_ct_series` for the padding.
    """
    nz, ny, nx = shape_zyx
    sx, sy, sz = spacing_xyz
    origin = (-(nx - 1) * sx / 2, -(ny - 1) * sy / 2, -(nz - 1) * sz / 2)
    z, y, x = np.meshgrid(
        origin[2] + sz * np.arange(nz), origin[1] + sy * np.arange(ny), origin[0] + sx * np.arange(nx), indexing="ij"
    )
    hu = np.full(shape_zyx, AIR_HU, dtype=np.float32)

    def ellipse(cx, cy, ax, ay):
        return ((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2 <= 1.0

    def ellipsoid(cx, cy, cz, ax, ay, az):
        return ((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2 + ((z - cz) / az) ** 2 <= 1.0

    zlen = nz * sz
    hu[ellipse(0, 0, 150, 105)] = -100  # fat
    hu[ellipse(0, 0, 138, 94)] = 40  # muscle / soft tissue
    # lungs on each side (L is +x in LPS), slightly posterior (+y)
    for side in (-1, 1):
        hu[ellipsoid(side * 68, 5, 0, 52, 68, 0.45 * zlen + 30)] = -850
    hu[ellipsoid(22, -30, 0, 45, 38, 0.3 * zlen + 20)] = 150  # heart, left-anterior
    hu[ellipse(0, 20, 14, 14)] = 100  # aorta region / mediastinum
    # vertebra: cortical ring, cancellous core, posterior (+y)
    hu[ellipse(0, 72, 18, 16)] = 700
    hu[ellipse(0, 72, 13, 11)] = 250
    # ribs: small bright ellipses along the body wall every 25 mm in z
    rib_z = np.abs(((z - origin[2]) % 25.0) - 12.5) < 4.0
    for angle in np.deg2rad(np.arange(20, 340, 32)):
        cx, cy = 132 * np.sin(angle), -88 * np.cos(angle)
        hu[rib_z & ellipse(cx, cy, 7, 7)] = 500
    rng = np.random.default_rng(seed)
    hu += rng.normal(0.0, noise_hu, size=hu.shape).astype(np.float32)
    fov = x**2 + y**2 <= (min(nx * sx, ny * sy) / 2) ** 2
    hu[~fov] = AIR_HU
    array = np.clip(np.rint(hu), -1024, 3071).astype(np.int16)
    return Volume(array, spacing=spacing_xyz, origin=origin, metadata={"fov_mask_radius_mm": min(nx * sx, ny * sy) / 2})


def _uid(seed: str) -> str:
    from pydicom.uid import generate_uid

    return generate_uid(entropy_srcs=["medprep-demo", seed])


@dataclass(frozen=True)
class DemoPatient:
    """A synthetic patient's identity as the DICOM headers carry it (pseudonyms, no real person)."""

    name: str = "MEDPREP^DEMO"
    patient_id: str = "MEDPREP-DEMO-0001"
    sex: str = "O"
    birth_date: str = ""


def _base_dataset(sop_class: str, sop_uid: str, *, patient: DemoPatient, study_seed: str, modality: str,
                  series_uid: str, series_number: int, series_description: str, image_type):  # fmt: skip
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.PatientName = patient.name
    ds.PatientID = patient.patient_id
    ds.PatientBirthDate = patient.birth_date
    ds.PatientSex = patient.sex
    ds.StudyInstanceUID = _uid(study_seed + "study")
    ds.SeriesInstanceUID = series_uid
    ds.FrameOfReferenceUID = _uid(study_seed + "frame")
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = _dt.date(2026, 1, 1).strftime("%Y%m%d")
    ds.StudyDescription = "MedPrep synthetic chest phantom"
    ds.SeriesDescription = series_description
    ds.Modality = modality
    ds.Manufacturer = "MedPrep"
    ds.StudyID, ds.SeriesNumber, ds.AcquisitionNumber = "1", series_number, 1
    ds.ImageType = list(image_type)
    return ds


def _pixels(ds, stored: np.ndarray) -> None:
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = stored.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
    ds.PixelData = np.ascontiguousarray(stored.astype(np.int16)).tobytes()


def write_ct_series(
    volume: Volume,
    folder: str | Path,
    *,
    study_seed: str = "demo",
    series_seed: str | None = None,
    patient: DemoPatient = DemoPatient(),
    series_number: int = 2,
    series_description: str = "Chest phantom axial",
    tilt_deg: float = 0.0,
    pad_outside_fov: bool = True,
    overwrite: bool = False,
) -> list[Path]:
    """Write an HU volume (axial, any direction) as a DICOM CT series, one file per slice.

    Stored values are ``HU - RescaleIntercept`` (int16, intercept -1024, slope 1). With
    ``pad_outside_fov`` the voxels outside the circular field of view get the stored value
    PixelPaddingValue (-2000), which reads back as -3024 "HU" unless padding is handled.
    File names are ``IM0001.dcm``...; UIDs are derived from ``study_seed`` (the study) and
    ``series_seed`` (the series; default: the study seed), so they are stable. ``tilt_deg``
    writes the slices as a gantry-tilted scanner does: the column direction leans by that angle
    about the left-right axis while the slice positions still step along the volume's z axis (a
    sheared stack, which a loader must resample). Existing files are replaced only with
    ``overwrite``. Returns the written paths.
    """
    import pydicom
    from pydicom.uid import CTImageStorage

    folder = Path(folder)
    make_folder(folder)
    g = volume.geometry
    stored = volume.array.astype(np.int32) - RESCALE_INTERCEPT
    if pad_outside_fov and "fov_mask_radius_mm" in volume.metadata:
        nz, ny, nx = volume.shape
        jj, ii = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
        pts = g.index_to_physical(np.stack([ii, jj, np.zeros_like(ii)], -1))
        centre = g.index_to_physical([(nx - 1) / 2, (ny - 1) / 2, 0])
        outside = np.linalg.norm((pts - centre)[..., :2], axis=-1) > volume.metadata["fov_mask_radius_mm"]
        stored[:, outside] = PADDING_STORED
    series_seed = study_seed if series_seed is None else series_seed
    series_uid = _uid(series_seed + "series")
    row_dir, col_dir = g.direction[:, 0], g.direction[:, 1]
    if tilt_deg:
        t = np.deg2rad(tilt_deg)
        col_dir = np.cos(t) * g.direction[:, 1] - np.sin(t) * g.direction[:, 2]
    paths = []
    for k in range(volume.shape[0]):
        sop_uid = _uid(f"{study_seed}sop{k}" if series_seed == study_seed else f"{series_seed}sop{k}")
        ds = _base_dataset(CTImageStorage, sop_uid, patient=patient, study_seed=study_seed, modality="CT",
                           series_uid=series_uid, series_number=series_number,
                           series_description=series_description, image_type=("ORIGINAL", "PRIMARY", "AXIAL"))  # fmt: skip
        ds.InstanceNumber = k + 1
        ds.PatientPosition = "HFS"
        ds.ImagePositionPatient = [float(v) for v in g.index_to_physical([0, 0, k])]
        ds.ImageOrientationPatient = [float(v) for v in (*row_dir, *col_dir)]
        ds.PixelSpacing = [g.spacing[1], g.spacing[0]]  # DICOM: row spacing (y) first
        ds.SliceThickness = g.spacing[2]
        if tilt_deg:
            ds.GantryDetectorTilt = float(tilt_deg)
        ds.KVP = 120
        _pixels(ds, stored[k])
        ds.PixelPaddingValue = PADDING_STORED
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = RESCALE_INTERCEPT, 1, "HU"
        ds.WindowCenter, ds.WindowWidth = 40, 400
        path = folder / f"IM{k + 1:04d}.dcm"
        _save(ds, path, pydicom, overwrite=overwrite)
        paths.append(path)
    return paths


def write_localizer(volume: Volume, path: str | Path, *, study_seed: str, patient: DemoPatient = DemoPatient(),
                    overwrite: bool = False) -> Path:  # fmt: skip
    """Write a one-image coronal localizer (scout) of ``volume``'s study, as a scanner writes it
    before the axial series (ImageType ``ORIGINAL\\PRIMARY\\LOCALIZER``): an export skips it."""
    import pydicom
    from pydicom.uid import CTImageStorage

    g = volume.geometry
    projection = volume.array.astype(np.float32).mean(axis=1)[::-1]  # (z, x), superior on top
    stored = np.clip(projection - RESCALE_INTERCEPT, -2000, 4000)
    ds = _base_dataset(CTImageStorage, _uid(study_seed + "localizer-sop"), patient=patient, study_seed=study_seed,
                       modality="CT", series_uid=_uid(study_seed + "localizer"), series_number=1,
                       series_description="Topogram", image_type=("ORIGINAL", "PRIMARY", "LOCALIZER"))  # fmt: skip
    ds.InstanceNumber = 1
    top = g.index_to_physical([0, 0, volume.shape[0] - 1])
    ds.ImagePositionPatient = [float(v) for v in top]
    ds.ImageOrientationPatient = [1.0, 0.0, 0.0, 0.0, 0.0, -1.0]  # coronal: rows along x, columns down
    ds.PixelSpacing = [g.spacing[2], g.spacing[0]]
    _pixels(ds, stored)
    ds.RescaleIntercept, ds.RescaleSlope = RESCALE_INTERCEPT, 1
    _save(ds, Path(path), pydicom, overwrite=overwrite)
    return Path(path)


def write_dose_report(path: str | Path, *, study_seed: str, patient: DemoPatient = DemoPatient(),
                      overwrite: bool = False) -> Path:  # fmt: skip
    """Write a CT dose report as many scanners store it: a Secondary Capture screen (a table as
    pixels) in its own series, which an export skips."""
    import pydicom

    secondary_capture = "1.2.840.10008.5.1.4.1.1.7"
    ds = _base_dataset(secondary_capture, _uid(study_seed + "dose-sop"), patient=patient, study_seed=study_seed,
                       modality="OT", series_uid=_uid(study_seed + "dose"), series_number=999,
                       series_description="Dose Report", image_type=("DERIVED", "SECONDARY", "OTHER"))  # fmt: skip
    ds.InstanceNumber = 1
    ds.ConversionType = "WSD"
    screen = np.zeros((64, 96), np.int16)
    screen[8:12, 8:88] = 200  # lines of a table
    screen[20:24, 8:60] = 200
    _pixels(ds, screen)
    _save(ds, Path(path), pydicom, overwrite=overwrite)
    return Path(path)


def _save(ds, path: Path, pydicom, *, overwrite: bool) -> None:
    """Write a Part-10 file with pydicom 2.4 or 3.x, staged and renamed like every output."""
    import io

    buffer = io.BytesIO()
    if int(pydicom.__version__.split(".")[0]) >= 3:
        pydicom.dcmwrite(buffer, ds, enforce_file_format=True)
    else:  # pragma: no cover - exercised in the pydicom 2.4 environment
        ds.is_little_endian, ds.is_implicit_VR = True, False
        ds.save_as(buffer, write_like_original=False)
    atomic_write_bytes(path, buffer.getvalue(), overwrite=overwrite)
