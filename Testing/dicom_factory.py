"""Synthetic DICOM series for tests and demos (pydicom 2.4 and 3.x), with no patient identity.

``write_ct_series`` writes a small single-frame CT series slice by slice; its keyword arguments
produce the usual difficulties (gantry tilt, a missing slice, rescale, BitsStored, padding).
``write_slice`` writes one file from explicit attributes, for anything more unusual.

Stored values are deterministic: ``expected_stored(k, rows, cols)`` gives slice k's pixels,
so a test can check loaded values (``stored * slope + intercept``) exactly.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
MR_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.4"


def new_uid() -> str:
    from pydicom.uid import generate_uid

    return str(generate_uid())


def expected_stored(k: int, rows: int, cols: int, *, bits_stored: int = 12) -> np.ndarray:
    """Stored values of slice ``k`` as written by :func:`write_ct_series` (uint16/int16 range)."""
    j, i = np.mgrid[0:rows, 0:cols]
    values = (37 * k + 3 * j + 5 * i) % (1 << bits_stored)
    return values.astype(np.int64)


def _is_pydicom2() -> bool:
    import pydicom

    return pydicom.__version__.startswith("2.")


def save(ds, path: str | os.PathLike) -> Path:
    """Write a dataset as a DICOM Part 10 file (preamble, file meta), any pydicom version."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ts = str(ds.file_meta.TransferSyntaxUID)
    if _is_pydicom2():
        ds.is_little_endian = ts != "1.2.840.10008.1.2.2"
        ds.is_implicit_VR = ts == "1.2.840.10008.1.2"
        ds.save_as(str(path), write_like_original=False)
    else:
        ds.save_as(str(path), enforce_file_format=True)
    return path


def _new_file(
    path,
    sop_class: str,
    *,
    series_uid: str,
    modality: str,
    image_type: Sequence[str],
    sop_uid: str | None = None,
    study_uid: str = "1.2.826.0.1.3680043.8.498.1",
):
    """A data set to be saved at ``path`` (explicit VR little endian) with its file meta, SOP,
    study and series UIDs, modality and image type set."""
    from pydicom.dataset import Dataset, FileDataset, FileMetaDataset

    sop_uid = sop_uid or new_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = EXPLICIT_VR_LE
    meta.ImplementationClassUID = "1.2.826.0.1.3680043.8.498.2"
    ds = FileDataset(str(path), Dataset(), file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = sop_uid
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.Modality = modality
    ds.ImageType = list(image_type)
    return ds


def _new_multiframe_file(
    path, sop_class: str, *, rows: int, cols: int, pixel_spacing, slice_thickness: str, **identity
):
    """:func:`_new_file` for an enhanced multi-frame image of 16-bit unsigned grey pixels, and its
    Shared Functional Groups item holding the Pixel Measures macro (returned with it)."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence as Seq

    ds = _new_file(path, sop_class, **identity)
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    shared = Dataset()
    measures = Dataset()
    measures.PixelSpacing = [f"{v:g}" for v in pixel_spacing]
    measures.SliceThickness = slice_thickness
    shared.PixelMeasuresSequence = Seq([measures])
    return ds, shared


def write_slice(
    path: str | os.PathLike,
    pixels: np.ndarray,
    *,
    position: Sequence[float] | None,
    orientation: Sequence[float] | None = (1, 0, 0, 0, 1, 0),
    pixel_spacing: Sequence[float] = (0.7, 0.7),
    series_uid: str,
    study_uid: str = "1.2.826.0.1.3680043.8.498.1",
    sop_uid: str | None = None,
    modality: str = "CT",
    sop_class: str | None = None,
    bits_stored: int = 12,
    signed: bool = False,
    rescale: tuple[float, float] | None = (1.0, -1024.0),
    slice_thickness: float = 2.5,
    instance_number: int = 1,
    image_type: Sequence[str] = ("ORIGINAL", "PRIMARY", "AXIAL"),
    photometric: str = "MONOCHROME2",
    **attributes,
) -> Path:
    """Write one single-frame image; ``pixels`` are stored values, (rows, cols) or (rows, cols, 3)."""
    sop_class = sop_class or (CT_IMAGE_STORAGE if modality == "CT" else MR_IMAGE_STORAGE)
    ds = _new_file(
        path,
        sop_class,
        sop_uid=sop_uid,
        study_uid=study_uid,
        series_uid=series_uid,
        modality=modality,
        image_type=image_type,
    )
    ds.PatientName = "Synthetic^Phantom"
    ds.PatientID = "SYNTH-0001"
    ds.SeriesNumber = 1
    ds.InstanceNumber = instance_number
    if position is not None:
        ds.ImagePositionPatient = [f"{v:.6f}" for v in position]
    if orientation is not None:
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in orientation]
    ds.PixelSpacing = [f"{v:g}" for v in pixel_spacing]
    ds.SliceThickness = f"{slice_thickness:g}"
    if rescale is not None:
        ds.RescaleSlope = f"{rescale[0]:g}"
        ds.RescaleIntercept = f"{rescale[1]:g}"
    colour = pixels.ndim == 3
    ds.SamplesPerPixel = 3 if colour else 1
    ds.PhotometricInterpretation = "RGB" if colour else photometric
    if colour:
        ds.PlanarConfiguration = 0
    ds.Rows, ds.Columns = int(pixels.shape[0]), int(pixels.shape[1])
    ds.BitsAllocated = 8 if colour else 16
    ds.BitsStored = 8 if colour else bits_stored
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if signed and not colour else 0
    for key, value in attributes.items():
        setattr(ds, key, value)
    dtype = np.uint8 if colour else (np.int16 if signed else np.uint16)
    ds.PixelData = np.ascontiguousarray(pixels.astype(dtype)).tobytes()
    return save(ds, path)


def write_stack(
    folder: str | os.PathLike,
    positions: Sequence[Sequence[float]],
    *,
    rows: int,
    cols: int,
    skip: Sequence[int] = (),
    series_uid: str | None = None,
    **kwargs,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """One file per position (LPS, mm): slice k holds ``expected_stored(k, rows, cols)`` and
    InstanceNumber n - k, in a file named ``slice {(k * 5) % n:03d}-{k}.dcm`` (names not in
    slice order); the slices whose index is in ``skip`` are not written. Other keyword
    arguments go to :func:`write_slice`. Returns [(position, stored)] of the written slices,
    in position order."""
    folder = Path(folder)
    series_uid = series_uid or new_uid()
    truth = []
    n = len(positions)
    for k, p in enumerate(positions):
        if k in skip:
            continue
        stored = expected_stored(k, rows, cols)
        write_slice(
            folder / f"slice {(k * 5) % n:03d}-{k}.dcm",
            stored,
            position=p,
            series_uid=series_uid,
            instance_number=n - k,
            **kwargs,
        )
        truth.append((np.asarray(p, float), stored))
    return truth


def series_positions(
    n_slices: int,
    *,
    step: float = 2.5,
    origin: Sequence[float] = (-11.0, -11.0, 0.0),
    tilt_deg: float = 0.0,
    gap_after: int | None = None,
) -> tuple[np.ndarray, tuple[float, ...]]:
    """Slice positions (n, 3) and ImageOrientationPatient of a CT series.

    The table moves along +z (LPS superior) by ``step`` mm per slice. With ``tilt_deg`` the
    gantry is tilted about the left-right axis: the column direction leans, the positions
    still step along z, so the stack is sheared (as scanners write tilted CT). With
    ``gap_after=k`` the slice after index k is missing (the step there is doubled).
    """
    t = math.radians(tilt_deg)
    orientation = (1.0, 0.0, 0.0, 0.0, math.cos(t), -math.sin(t))
    z = []
    pos = 0.0
    for k in range(n_slices):
        z.append(pos)
        pos += step * (2 if gap_after is not None and k == gap_after else 1)
    positions = np.array([[origin[0], origin[1], origin[2] + dz] for dz in z])
    return positions, orientation


def write_ct_series(
    folder: str | os.PathLike,
    n_slices: int = 5,
    *,
    rows: int = 24,
    cols: int = 32,
    step: float = 2.5,
    pixel_spacing: Sequence[float] = (0.7, 0.8),
    origin: Sequence[float] = (-11.0, -11.0, 0.0),
    tilt_deg: float = 0.0,
    gap_after: int | None = None,
    rescale: tuple[float, float] | None = (1.0, -1024.0),
    bits_stored: int = 12,
    signed: bool = False,
    series_uid: str | None = None,
    prefix: str = "IM",
    shuffle_names: bool = True,
    **attributes,
) -> list[Path]:
    """Write a synthetic CT series, one file per slice, and return the paths (slice order).

    File names are deliberately not in slice order when ``shuffle_names`` (the loader must
    sort geometrically). Stored values come from :func:`expected_stored`. Extra keyword
    arguments become DICOM attributes of every slice (``PixelPaddingValue=...``).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    series_uid = series_uid or new_uid()
    positions, orientation = series_positions(
        n_slices, step=step, origin=origin, tilt_deg=tilt_deg, gap_after=gap_after
    )
    order = list(range(n_slices))
    if shuffle_names:
        order = order[1::2] + order[0::2]
    paths = [None] * n_slices
    for name_index, k in enumerate(order):
        stored = expected_stored(k, rows, cols, bits_stored=bits_stored)
        if signed:
            stored = stored - (1 << (bits_stored - 1)) // 2
        paths[k] = write_slice(
            folder / f"{prefix}{name_index:04d}.dcm",
            stored,
            position=positions[k],
            orientation=orientation,
            pixel_spacing=pixel_spacing,
            series_uid=series_uid,
            bits_stored=bits_stored,
            signed=signed,
            rescale=rescale,
            slice_thickness=step,
            instance_number=n_slices - k,  # reversed on purpose: never sort by InstanceNumber
            **attributes,
        )
    return paths


def write_enhanced_mr(
    path: str | os.PathLike,
    n_slices: int = 3,
    *,
    n_times: int = 1,
    echo_times: Sequence[float] = (10.0,),
    rows: int = 12,
    cols: int = 16,
    step: float = 3.0,
    pixel_spacing: Sequence[float] = (0.9, 1.1),
    second_orientation: bool = False,
    series_uid: str | None = None,
    rescale: tuple[float, float] = (1.0, 0.0),
) -> tuple[Path, list[dict]]:
    """Write one enhanced MR multi-frame file; returns the path and, per frame, its facts
    (``slice``, ``time``, ``echo``, ``stack`` and the stored ``pixels``).

    Frames are written time-major then echo then slice, reversed along z, so that a loader
    must use the functional groups, not the frame order. ``second_orientation`` adds a
    sagittal stack of the same slices (frames of two orientations in one file).
    """
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence as Seq

    ds, shared = _new_multiframe_file(
        path,
        "1.2.840.10008.5.1.4.1.1.4.1",
        series_uid=series_uid or new_uid(),
        modality="MR",
        image_type=("ORIGINAL", "PRIMARY", "M", "NONE"),
        rows=rows,
        cols=cols,
        pixel_spacing=pixel_spacing,
        slice_thickness=f"{step:g}",
    )
    lut = Dataset()
    lut.RescaleSlope, lut.RescaleIntercept, lut.RescaleType = f"{rescale[0]:g}", f"{rescale[1]:g}", "US"
    shared.PixelValueTransformationSequence = Seq([lut])
    ds.SharedFunctionalGroupsSequence = Seq([shared])
    stacks = [(1, 0, 0, 0, 1, 0)]
    if second_orientation:
        stacks.append((0, 1, 0, 0, 0, -1))
    stacks = [(iop, np.cross(iop[:3], iop[3:])) for iop in stacks]  # slices advance along the normal
    frames, facts = [], []
    for s, (iop, normal) in enumerate(stacks):
        for t in range(n_times):
            for e, te in enumerate(echo_times):
                for z in reversed(range(n_slices)):
                    item = Dataset()
                    pos = Dataset()
                    pos.ImagePositionPatient = [
                        f"{-5 + step * z * normal[0]:g}",
                        f"{-6 + step * z * normal[1]:g}",
                        f"{step * z * normal[2]:g}",
                    ]
                    item.PlanePositionSequence = Seq([pos])
                    ori = Dataset()
                    ori.ImageOrientationPatient = [f"{v:g}" for v in iop]
                    item.PlaneOrientationSequence = Seq([ori])
                    content = Dataset()
                    content.TemporalPositionIndex = t + 1
                    item.FrameContentSequence = Seq([content])
                    echo = Dataset()
                    echo.EffectiveEchoTime = te
                    item.MREchoSequence = Seq([echo])
                    frames.append(item)
                    pixels = expected_stored(z + 7 * t + 13 * e + 29 * s, rows, cols)
                    facts.append({"slice": z, "time": t, "echo": e, "stack": s, "pixels": pixels})
    ds.PerFrameFunctionalGroupsSequence = Seq(frames)
    ds.NumberOfFrames = len(frames)
    ds.PixelData = np.stack([f["pixels"] for f in facts]).astype(np.uint16).tobytes()
    return save(ds, path), facts


# ------------------------------------------------------------------------ Siemens mosaic
def csa2_header(elements: dict[str, tuple[str, Sequence[str]]]) -> bytes:
    """A Siemens CSA2 ("SV10") header holding ``name -> (VR, string items)`` (nibabel parses it)."""
    import struct

    out = bytearray(b"SV10\4\3\2\1")
    out += struct.pack("<2I", len(elements), 77)
    for name, (vr, items) in elements.items():
        out += struct.pack("<64si4s3i", name.encode(), len(items), vr.encode().ljust(4, b"\0"), 3, len(items), 77)
        for text in items:
            data = text.encode() + b"\0"
            out += struct.pack("<4i", len(data), len(data), 77, len(data))
            out += data + b"\0" * (-len(data) % 4)
    return bytes(out)


def write_mosaic(
    path: str | os.PathLike,
    tiles: np.ndarray,
    *,
    first_tile_position: Sequence[float],
    orientation: Sequence[float] = (1, 0, 0, 0, 1, 0),
    pixel_spacing: Sequence[float] = (2.0, 2.5),
    slice_step: float = 3.0,
    descending: bool = False,
    series_uid: str,
    tiles_in_csa_only: bool = False,
    acquisition_number: int = 1,
    instance_number: int = 1,
) -> Path:
    """Write one Siemens mosaic holding ``tiles`` (n, rows, cols) stored values.

    Tile ``k`` lies at ``first_tile_position + k * slice_step * s`` where ``s`` is the
    normal ``row x col`` (negated when ``descending``, and stated by the CSA header's
    SliceNormalVector). ImagePositionPatient is written as Siemens does: the position of the
    whole mosaic's first pixel. With ``tiles_in_csa_only`` NumberOfImagesInMosaic appears
    only in the CSA image header, not in (0019,xx0A).
    """
    n, tr, tc = tiles.shape
    m = int(math.ceil(math.sqrt(n)))
    image = np.zeros((m * tr, m * tc), np.uint16)
    for k in range(n):
        image[(k // m) * tr : (k // m + 1) * tr, (k % m) * tc : (k % m + 1) * tc] = tiles[k]
    r, c = np.asarray(orientation[:3], float), np.asarray(orientation[3:], float)
    normal = np.cross(r, c) * (-1 if descending else 1)
    rows, cols = image.shape
    ipp = (
        np.asarray(first_tile_position, float)
        - r * pixel_spacing[1] * (cols - tc) / 2.0
        - c * pixel_spacing[0] * (rows - tr) / 2.0
    )
    path = write_slice(
        path,
        image,
        position=ipp,
        orientation=orientation,
        pixel_spacing=pixel_spacing,
        series_uid=series_uid,
        modality="MR",
        bits_stored=12,
        rescale=None,
        slice_thickness=slice_step,
        instance_number=instance_number,
        image_type=("ORIGINAL", "PRIMARY", "M", "ND", "MOSAIC"),
        AcquisitionNumber=acquisition_number,
        SpacingBetweenSlices=f"{slice_step:g}",
        Manufacturer="SIEMENS",
    )
    import pydicom

    ds = pydicom.dcmread(str(path))
    ds.add_new((0x0019, 0x0010), "LO", "SIEMENS MR HEADER")
    if not tiles_in_csa_only:
        ds.add_new((0x0019, 0x100A), "US", n)
    csa = {
        "SliceNormalVector": ("FD", [f"{v:.8f}" for v in normal]),
        "NumberOfImagesInMosaic": ("US", [str(n)]),
        "AcquisitionMatrixText": ("SH", [f"{tr}p*{tc}"]),
    }
    ds.add_new((0x0029, 0x0010), "LO", "SIEMENS CSA HEADER")
    ds.add_new((0x0029, 0x1010), "OB", csa2_header(csa))
    return save(ds, path)


def rewrite_big_endian(path: str | os.PathLike) -> Path:
    """Re-encode a native little-endian file as Explicit VR Big Endian (retired, still met in archives).

    The pixel bytes are swapped here: pydicom writes the PixelData value as given.
    """
    import pydicom

    path = Path(path)
    ds = pydicom.dcmread(str(path))
    values = np.frombuffer(ds.PixelData, dtype=f"<{'i' if ds.PixelRepresentation else 'u'}{ds.BitsAllocated // 8}")
    ds.PixelData = values.astype(values.dtype.newbyteorder(">")).tobytes()
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.2"
    if _is_pydicom2():
        ds.is_little_endian, ds.is_implicit_VR = False, False
        ds.save_as(str(path), write_like_original=False)
    else:
        pydicom.dcmwrite(str(path), ds, implicit_vr=False, little_endian=False, force_encoding=True)
    return path


# ------------------------------------------------------------------- enhanced, frame by frame
def write_enhanced_frames(
    path: str | os.PathLike,
    frames: Sequence[dict],
    *,
    modality: str = "MR",
    pixel_spacing: Sequence[float] = (0.9, 1.1),
    shared_orientation: Sequence[float] | None = None,
    shared_rescale: tuple[float, float] | None = None,
    series_uid: str | None = None,
    **attributes,
) -> Path:
    """Write an enhanced CT/MR multi-frame file from explicit per-frame facts, in the given order.

    Each frame is a dict with ``stored`` (rows, cols) and optionally ``position`` (None: no
    Plane Position macro), ``orientation`` (None: taken from ``shared_orientation`` if any),
    ``temporal`` (TemporalPositionIndex), ``echo`` (EffectiveEchoTime, ms), ``stack``
    (StackID) and ``rescale`` (per-frame slope, intercept). PixelSpacing lives only in the
    shared Pixel Measures macro.
    """
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence as Seq

    rows, cols = frames[0]["stored"].shape
    ds, shared = _new_multiframe_file(
        path,
        "1.2.840.10008.5.1.4.1.1.2.1" if modality == "CT" else "1.2.840.10008.5.1.4.1.1.4.1",
        series_uid=series_uid or new_uid(),
        modality=modality,
        image_type=("ORIGINAL", "PRIMARY", "AXIAL" if modality == "CT" else "M", "NONE"),
        rows=rows,
        cols=cols,
        pixel_spacing=pixel_spacing,
        slice_thickness="3",
    )
    if shared_orientation is not None:
        ori = Dataset()
        ori.ImageOrientationPatient = [f"{v:.8f}" for v in shared_orientation]
        shared.PlaneOrientationSequence = Seq([ori])
    if shared_rescale is not None:
        lut = Dataset()
        lut.RescaleSlope, lut.RescaleIntercept = f"{shared_rescale[0]:g}", f"{shared_rescale[1]:g}"
        lut.RescaleType = "HU" if modality == "CT" else "US"
        shared.PixelValueTransformationSequence = Seq([lut])
    ds.SharedFunctionalGroupsSequence = Seq([shared])
    items = []
    for f in frames:
        item = Dataset()
        if f.get("position") is not None:
            pos = Dataset()
            pos.ImagePositionPatient = [f"{v:.6f}" for v in f["position"]]
            item.PlanePositionSequence = Seq([pos])
        if f.get("orientation") is not None:
            ori = Dataset()
            ori.ImageOrientationPatient = [f"{v:.8f}" for v in f["orientation"]]
            item.PlaneOrientationSequence = Seq([ori])
        content = Dataset()
        if f.get("temporal") is not None:
            content.TemporalPositionIndex = int(f["temporal"])
        if f.get("stack") is not None:
            content.StackID = str(f["stack"])
            content.InStackPositionNumber = int(f.get("in_stack", 1))
        item.FrameContentSequence = Seq([content])
        if f.get("echo") is not None:
            echo = Dataset()
            echo.EffectiveEchoTime = float(f["echo"])
            item.MREchoSequence = Seq([echo])
        if f.get("rescale") is not None:
            lut = Dataset()
            lut.RescaleSlope, lut.RescaleIntercept = f"{f['rescale'][0]:g}", f"{f['rescale'][1]:g}"
            lut.RescaleType = "US"
            item.PixelValueTransformationSequence = Seq([lut])
        items.append(item)
    ds.PerFrameFunctionalGroupsSequence = Seq(items)
    ds.NumberOfFrames = len(frames)
    for key, value in attributes.items():
        setattr(ds, key, value)
    ds.PixelData = np.stack([f["stored"] for f in frames]).astype(np.uint16).tobytes()
    return save(ds, path)
