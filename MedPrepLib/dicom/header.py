"""Header-only reading of one DICOM file into a :class:`~MedPrepLib.dicom.stack.FileHeader`.

``read_header`` parses everything up to the pixel data (never the pixels), finds where the
pixel data element starts and how long it claims to be (so that a truncated file is caught
from its size alone, and the loader can later read uncompressed pixels straight from the
file), classifies the object, and raises :class:`SkipFile` with a reason code from
``SKIP_REASONS`` for anything that is not a loadable scalar image. SEG and RTSTRUCT files
are skipped as ``label_source`` so that callers can list them as label sources.

``header_from_dataset`` does the classification and extraction on an already parsed
dataset, so that a faster parser can reuse it. No patient identity is copied.
"""

from __future__ import annotations

import logging
import math
import os
import re
import struct
from dataclasses import dataclass

from .codecs import PydicomMessages
from .frames import enhanced_frames, frame_types, is_enhanced
from .mosaic import is_mosaic, mosaic_frames, number_of_tiles
from .stack import SKIP_REASONS, FileHeader, FrameGeometry, Skipped

IMPLICIT_VR_LE = "1.2.840.10008.1.2"
EXPLICIT_VR_LE = "1.2.840.10008.1.2.1"
DEFLATED_LE = "1.2.840.10008.1.2.1.99"
EXPLICIT_VR_BE = "1.2.840.10008.1.2.2"
UNCOMPRESSED_SYNTAXES = {IMPLICIT_VR_LE, EXPLICIT_VR_LE, EXPLICIT_VR_BE, DEFLATED_LE}

_PIXEL_TAGS = {0x7FE00010: "PixelData", 0x7FE00008: "FloatPixelData", 0x7FE00009: "DoubleFloatPixelData"}
_LONG_VRS = {b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"UN", b"SQ", b"UT", b"UC", b"UR", b"SV", b"UV"}
PIXEL_VRS = {b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"UN"}
"""The VRs a pixel data element may have (UN only with a defined length)."""

_SC_PREFIX = "1.2.840.10008.5.1.4.1.1.7"  # secondary capture storage, .7 and .7.1 - .7.4
_LABEL_SOURCES = {
    "1.2.840.10008.5.1.4.1.1.66.4": "segmentation (SEG)",
    "1.2.840.10008.5.1.4.1.1.66.5": "surface segmentation",
    "1.2.840.10008.5.1.4.1.1.481.3": "RT structure set (RTSTRUCT)",
}
_NON_IMAGE_PREFIXES = {
    "1.2.840.10008.5.1.4.1.1.88.": "structured report / key object",
    "1.2.840.10008.5.1.4.1.1.11.": "presentation state",
    "1.2.840.10008.5.1.4.1.1.481.": "RT object (plan, dose, record, image)",
    "1.2.840.10008.5.1.4.1.1.104.": "encapsulated document",
    "1.2.840.10008.5.1.4.1.1.9.": "waveform",
    "1.2.840.10008.5.1.4.1.1.66": "raw data / registration / fiducials",
    "1.2.840.10008.5.1.4.1.1.4.2": "MR spectroscopy",
}
_NON_IMAGE_MODALITIES = {"SR", "PR", "KO", "RTPLAN", "RTRECORD", "RTDOSE", "REG", "FID", "DOC", "RAW", "ECG", "AU"}
_LABEL_MODALITIES = {"SEG", "RTSTRUCT"}
_LOCALIZER_TYPES = {"LOCALIZER", "SCOUT", "TOPOGRAM", "SURVIEW"}
_SCREEN_TYPES = {"SCREEN SAVE", "DOSE_INFO", "DOSE INFO", "DOSE REPORT", "DOSE_REPORT"}
# Anywhere in the description: "AAHead_Scout", "t1_localizer", "SmartSurvey", "3-pl loc", "RF FAST PILOT"
_LOCALIZER_DESCRIPTION = re.compile(r"localizer|localiser|scout|topogram|surview|survey|\bpilot\b|3-?pl(ane)?[ _-]?loc", re.I)
_COLOUR = {
    "RGB",
    "YBR_FULL",
    "YBR_FULL_422",
    "YBR_PARTIAL_422",
    "YBR_PARTIAL_420",
    "YBR_ICT",
    "YBR_RCT",
    "PALETTE COLOR",
}


class SkipFile(Exception):  # noqa: N818 - a control-flow signal, not an error to report as such
    """A file is not a loadable scalar image; carries the :class:`Skipped` record (reason code)."""

    def __init__(self, reason: str, detail: str = "", path: str = ""):
        if reason not in SKIP_REASONS:
            raise ValueError(f"unknown skip reason {reason!r}")
        self.skipped = Skipped(path=path, reason=reason, detail=detail or SKIP_REASONS[reason])
        super().__init__(f"{path}: {reason}: {self.skipped.detail}" if path else f"{reason}: {self.skipped.detail}")

    @property
    def reason(self) -> str:
        return self.skipped.reason

    def with_path(self, path: str) -> SkipFile:
        return SkipFile(self.skipped.reason, self.skipped.detail, path)


@dataclass(frozen=True)
class PixelDataLocation:
    """Where a file's pixel data element is: byte offsets from the start of the file.

    ``length`` is the declared value length in bytes (None when encapsulated / undefined).
    """

    tag: int
    value_offset: int
    length: int | None
    encapsulated: bool


# ---------------------------------------------------------------------------- reading
def _looks_like_dicom_start(head: bytes) -> bool:
    """A preamble-less DICOM stream starts with a group 0002 or 0008 element."""
    if len(head) < 8:
        return False
    for order in ("<", ">"):
        group, elem = struct.unpack(order + "HH", head[:4])
        if group in (0x0002, 0x0008) and elem < 0x0200:
            return True
    return False


def _transfer_syntax(ds) -> str:
    meta = getattr(ds, "file_meta", None)
    ts = meta.get("TransferSyntaxUID") if meta is not None else None
    if ts:
        return str(ts)
    # No file meta: use how pydicom found the data set encoded
    encoding = getattr(ds, "original_encoding", None)
    if encoding is not None and encoding[0] is not None:
        implicit, little = encoding
    else:
        implicit, little = getattr(ds, "is_implicit_VR", True), getattr(ds, "is_little_endian", True)
    if implicit:
        return IMPLICIT_VR_LE
    return EXPLICIT_VR_LE if little else EXPLICIT_VR_BE


def _locate_pixel_data(f, offset: int, size: int, ts: str, path: str = "") -> PixelDataLocation | None:
    """Parse the element header at ``offset`` (where pydicom stopped); None at end of data set.

    Raises :class:`SkipFile` when an explicit VR says the element is not binary (a pixel data
    element read as a sequence would make pydicom parse compressed bytes as elements)."""
    if ts == DEFLATED_LE:
        raise ValueError("deflated data set")
    f.seek(offset)
    head = f.read(12)
    if len(head) < 8:
        return None
    big = ts == EXPLICIT_VR_BE
    group, elem = struct.unpack((">" if big else "<") + "HH", head[:4])
    tag = (group << 16) | elem
    if tag not in _PIXEL_TAGS:
        return None
    u32 = ">I" if big else "<I"
    if ts == IMPLICIT_VR_LE:
        length, value_offset = struct.unpack("<I", head[4:8])[0], offset + 8
    elif head[4:6] in _LONG_VRS:
        if len(head) < 12:
            return PixelDataLocation(tag, size + 1, 0, False)
        length, value_offset = struct.unpack(u32, head[8:12])[0], offset + 12
    else:
        length, value_offset = struct.unpack((">H" if big else "<H"), head[6:8])[0], offset + 8
    vr = head[4:6]
    if ts != IMPLICIT_VR_LE and (vr not in PIXEL_VRS or (vr == b"UN" and length == 0xFFFFFFFF)):
        shown = vr.decode("latin-1") if vr.isalpha() else vr.hex()
        raise SkipFile("unreadable", f"the {_PIXEL_TAGS[tag]} element has VR {shown}, not OB or OW", path)
    if length == 0xFFFFFFFF:
        return PixelDataLocation(tag, value_offset, None, True)
    return PixelDataLocation(tag, value_offset, length, False)


def _encapsulated_complete(f, value_offset: int, size: int, big: bool) -> bool:
    """Walk the items of encapsulated pixel data (headers only): do all fit in the file?"""
    order = ">" if big else "<"
    pos = value_offset
    while True:
        f.seek(pos)
        head = f.read(8)
        if len(head) < 8:
            return False
        group, elem, length = struct.unpack(order + "HHI", head)
        if (group, elem) == (0xFFFE, 0xE0DD):
            return True
        if (group, elem) != (0xFFFE, 0xE000) or length == 0xFFFFFFFF:
            return pos + 8 <= size  # unusual layout: leave it to the decoder
        pos += 8 + length
        if pos > size:
            return False


def _cut_short(ds, size: int) -> bool:
    """True when the file ends inside the data set: its last element's value runs past the end
    of the file, or bytes that are not a whole element follow it (or nothing follows the file meta)."""
    if len(ds) == 0:
        return True
    raw = ds._dict[max(ds.keys())]  # the raw element: reading it here would convert it
    length, tell = getattr(raw, "length", None), getattr(raw, "value_tell", None)
    if length is None or tell is None or length == 0xFFFFFFFF:
        return False  # already converted, or an undefined-length sequence: no cheap answer
    return tell + length != size


def _deflated_pixel_location(path: str) -> PixelDataLocation | None:
    """Which pixel data element a deflated file holds (its offset is unknown: -1), or None.

    The data set is one zlib stream, so the element is found by reading it all (a rare syntax)."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, force=True)
    except Exception:
        return PixelDataLocation(0x7FE00010, -1, None, False)  # let loading report the decoder's error
    for tag in _PIXEL_TAGS:
        if tag in ds:
            return PixelDataLocation(tag, -1, None, False)
    return None


def read_header(path: str) -> FileHeader:
    """Read the header of one DICOM file (no pixel data) into a :class:`FileHeader`.

    Raises :class:`SkipFile` (reason code from ``SKIP_REASONS``) for files that are not
    loadable scalar images: non-DICOM, DICOMDIR, truncated, without pixel data, localizers,
    secondary captures, colour, non-image objects, and SEG/RTSTRUCT (``label_source``).
    pydicom's warnings and log records about the file are held and logged at debug level.
    """
    path = os.fspath(path)
    said = PydicomMessages(path)
    try:
        with said:
            return _read_header(path)
    finally:
        said.forward(logging.DEBUG)


def _read_header(path: str) -> FileHeader:
    import pydicom

    try:
        st = os.stat(path)
    except OSError as exc:
        raise SkipFile("unreadable", f"cannot open: {exc.strerror}", path) from exc
    if st.st_size == 0:  # before "no DICM prefix": an empty file is a failed copy, not a foreign file
        raise SkipFile("empty", "empty file (0 bytes)", path)
    try:
        with open(path, "rb") as f:
            head = f.read(132)
            has_preamble = len(head) >= 132 and head[128:132] == b"DICM"
            if not has_preamble and not _looks_like_dicom_start(head):
                raise SkipFile("not_dicom", "no DICM prefix and no DICOM element at the start", path)
            f.seek(0)
            try:
                ds = pydicom.dcmread(f, stop_before_pixels=True, force=True)
            except Exception as exc:  # pydicom raises many types on garbage
                reason = "unreadable" if has_preamble else "not_dicom"
                raise SkipFile(reason, f"pydicom cannot parse it ({type(exc).__name__})", path) from exc
            stop = f.tell()
            ts = _transfer_syntax(ds)
            try:
                location = _locate_pixel_data(f, stop, st.st_size, ts, path)
                complete = True
                if location is not None and location.encapsulated:
                    complete = _encapsulated_complete(f, location.value_offset, st.st_size, ts == EXPLICIT_VR_BE)
            except (ValueError, struct.error, OSError):
                location, complete = None, True
                if ts == DEFLATED_LE:
                    location = _deflated_pixel_location(path)
    except OSError as exc:
        raise SkipFile("unreadable", f"cannot read: {exc.strerror}", path) from exc
    reached_end = location is None and ts != DEFLATED_LE and _cut_short(ds, st.st_size)
    try:
        return header_from_dataset(
            ds,
            path,
            st.st_size,
            st.st_mtime_ns,
            pixel_location=location,
            encapsulated_complete=complete,
            reached_end=reached_end,
        )
    except SkipFile:
        raise
    except Exception as exc:  # a value pydicom cannot convert (a file cut inside an element, garbage)
        reason = "truncated" if reached_end else "unreadable"
        raise SkipFile(reason, f"header values cannot be read ({type(exc).__name__}: {exc})", path) from exc


# ---------------------------------------------------------------------------- extraction
def _str(ds, keyword: str) -> str:
    value = ds.get(keyword)
    return "" if value is None else str(value).strip()


def _int(ds, keyword: str) -> int | None:
    value = ds.get(keyword)
    if value is None or value == "":
        return None
    try:
        return int(value if not isinstance(value, (list, tuple)) else value[0])
    except (TypeError, ValueError):
        return None


def _float(value) -> float | None:
    if value is None or value == "":
        return None
    try:
        if not isinstance(value, (str, bytes)) and hasattr(value, "__len__"):
            value = value[0]
        return float(value)
    except (TypeError, ValueError, IndexError):
        return None


def _floats(value, n: int | None = None) -> tuple[float, ...] | None:
    if value is None or value == "":
        return None
    try:
        values = tuple(
            float(v) for v in (value if hasattr(value, "__len__") and not isinstance(value, str) else [value])
        )
    except (TypeError, ValueError):
        return None
    if n is not None and len(values) != n:
        return None
    return values


def _classify(
    ds,
    header: FileHeader,
    location: PixelDataLocation | None,
    complete: bool,
    has_pixels: bool,
    reached_end: bool = False,
) -> None:
    """Raise SkipFile when the object is not a loadable scalar image.

    ``reached_end``: the file ends inside its data set, before any pixel data (cut short).
    """
    path = header.path
    sop_class = header.sop_class_uid
    meta = getattr(ds, "file_meta", None)
    media_class = str(meta.get("MediaStorageSOPClassUID", "")) if meta is not None else ""
    if media_class == "1.2.840.10008.1.3.10" or sop_class == "1.2.840.10008.1.3.10" or "DirectoryRecordSequence" in ds:
        raise SkipFile("dicomdir", path=path)
    if not (sop_class or header.series_instance_uid or header.rows):
        raise SkipFile("not_dicom", "no SOP class, series or image attributes", path)
    modality = header.modality.upper()
    if sop_class in _LABEL_SOURCES or modality in _LABEL_MODALITIES:
        raise SkipFile("label_source", _LABEL_SOURCES.get(sop_class, f"{modality} object"), path)
    for prefix, what in _NON_IMAGE_PREFIXES.items():
        if sop_class.startswith(prefix) and not sop_class.startswith("1.2.840.10008.5.1.4.1.1.481.1"):
            raise SkipFile("non_image", f"{what} (SOP class {sop_class})", path)
    if modality in _NON_IMAGE_MODALITIES:
        raise SkipFile("non_image", f"modality {modality}", path)
    if not has_pixels:
        if reached_end:
            raise SkipFile(
                "truncated", f"the file ends after {header.size_bytes} bytes, inside its header, before any pixel data",
                path,
            )
        raise SkipFile("no_pixel_data", path=path)
    if not complete:
        raise SkipFile("truncated", "encapsulated pixel data runs past the end of the file", path)
    if location is not None and location.length is not None and location.value_offset >= 0:
        expected = header.rows * header.columns * header.number_of_frames * header.samples_per_pixel
        expected = (expected * header.bits_allocated + 7) // 8
        end = location.value_offset + location.length
        if end > header.size_bytes:
            raise SkipFile(
                "truncated",
                f"pixel data declares {location.length} bytes from offset {location.value_offset} "
                f"but the file has {header.size_bytes} bytes",
                path,
            )
        if location.tag == 0x7FE00010 and location.length < expected:
            raise SkipFile(
                "truncated",
                f"pixel data holds {location.length} bytes, {header.rows}x{header.columns}x"
                f"{header.number_of_frames} pixels of {header.bits_allocated} bits need {expected}",
                path,
            )
    photometric = header.photometric_interpretation.upper()
    if header.samples_per_pixel > 1 or photometric in _COLOUR:
        raise SkipFile("colour", f"{photometric or 'colour'} image, {header.samples_per_pixel} samples per pixel", path)
    image_type = set(header.image_type) | set(header.extra.get("frame_type", ()))
    if sop_class.startswith(_SC_PREFIX) or image_type & _SCREEN_TYPES:
        raise SkipFile("secondary_capture", f"SOP class {sop_class}, ImageType {'/'.join(header.image_type)}", path)
    if image_type & _LOCALIZER_TYPES:
        raise SkipFile("localizer", f"ImageType {'/'.join(header.image_type)}", path)
    if _LOCALIZER_DESCRIPTION.search(header.series_description):
        raise SkipFile("localizer", "series description names a localizer / scout", path)


def header_from_dataset(
    ds,
    path: str,
    size: int,
    mtime: int,
    *,
    pixel_location: PixelDataLocation | None = None,
    encapsulated_complete: bool = True,
    reached_end: bool = False,
) -> FileHeader:
    """Build a :class:`FileHeader` from a parsed dataset (pixel data may be absent).

    ``size`` is the file size in bytes, ``mtime`` its modification time in ns. Without
    ``pixel_location`` the pixel data element is looked up in ``ds`` itself (no truncation
    check is then possible). Raises :class:`SkipFile` as :func:`read_header` does.
    """
    path = os.fspath(path)
    has_pixels = pixel_location is not None or any(tag in ds for tag in _PIXEL_TAGS)
    h = FileHeader(path=path, size_bytes=int(size), mtime_ns=int(mtime))
    h.sop_instance_uid = _str(ds, "SOPInstanceUID")
    h.sop_class_uid = _str(ds, "SOPClassUID")
    if not h.sop_class_uid:
        meta = getattr(ds, "file_meta", None)
        if meta is not None:
            h.sop_class_uid = str(meta.get("MediaStorageSOPClassUID", "") or "")
    h.series_instance_uid = _str(ds, "SeriesInstanceUID")
    h.study_instance_uid = _str(ds, "StudyInstanceUID")
    h.modality = _str(ds, "Modality")
    h.series_number = _int(ds, "SeriesNumber")
    h.series_description = _str(ds, "SeriesDescription")
    image_type = ds.get("ImageType")
    if image_type is not None:
        h.image_type = tuple(
            str(v).strip().upper() for v in (image_type if not isinstance(image_type, str) else [image_type])
        )
    h.transfer_syntax_uid = _transfer_syntax(ds)
    h.rows = _int(ds, "Rows") or 0
    h.columns = _int(ds, "Columns") or 0
    h.number_of_frames = _int(ds, "NumberOfFrames") or 1
    h.samples_per_pixel = _int(ds, "SamplesPerPixel") or 1
    h.photometric_interpretation = _str(ds, "PhotometricInterpretation")
    h.bits_allocated = _int(ds, "BitsAllocated") or 0
    h.bits_stored = _int(ds, "BitsStored") or h.bits_allocated
    h.pixel_representation = _int(ds, "PixelRepresentation") or 0
    h.instance_number = _int(ds, "InstanceNumber")
    h.echo_number = _int(ds, "EchoNumbers")
    h.echo_time = _float(ds.get("EchoTime"))
    h.acquisition_number = _int(ds, "AcquisitionNumber")
    h.temporal_position = _int(ds, "TemporalPositionIdentifier")
    h.trigger_time = _float(ds.get("TriggerTime"))
    h.acquisition_time = _str(ds, "AcquisitionTime")
    h.slice_thickness = _float(ds.get("SliceThickness"))
    h.rescale_slope = _float(ds.get("RescaleSlope"))
    h.rescale_intercept = _float(ds.get("RescaleIntercept"))
    h.pixel_padding_value = _float(ds.get("PixelPaddingValue"))
    h.window_center = _floats(ds.get("WindowCenter")) or ()
    h.window_width = _floats(ds.get("WindowWidth")) or ()
    spacing_between = _float(ds.get("SpacingBetweenSlices"))
    if spacing_between is not None:
        h.extra["spacing_between_slices"] = spacing_between
    if pixel_location is not None:
        h.extra["pixel_tag"] = pixel_location.tag
        h.extra["pixel_offset"] = pixel_location.value_offset
        h.extra["pixel_length"] = pixel_location.length
        h.extra["encapsulated"] = pixel_location.encapsulated
    if is_enhanced(ds):
        h.is_multiframe = True
        h.extra["frame_type"] = list(frame_types(ds))
    _classify(ds, h, pixel_location, encapsulated_complete, has_pixels, reached_end)
    if is_mosaic(ds):
        h.is_mosaic = True
        h.extra["mosaic_tiles"] = number_of_tiles(ds)
        h.frames = mosaic_frames(ds) or ()
    elif h.is_multiframe:
        h.frames = enhanced_frames(ds)
    elif h.number_of_frames > 1:
        # Legacy multi-frame without functional groups: per-frame positions are unknown.
        h.is_multiframe = True
        h.frames = tuple(FrameGeometry(None, None, None, frame_index=k) for k in range(h.number_of_frames))
    else:
        h.frames = (
            FrameGeometry(
                position=_floats(ds.get("ImagePositionPatient"), 3),
                orientation=_floats(ds.get("ImageOrientationPatient"), 6),
                pixel_spacing=_floats(ds.get("PixelSpacing"), 2),
                frame_index=0,
                rescale_slope=h.rescale_slope,
                rescale_intercept=h.rescale_intercept,
                slice_thickness=h.slice_thickness,
            ),
        )
    _check_finite(h)
    return h


def _check_finite(h: FileHeader) -> None:
    """Skip a file whose geometry or Modality LUT holds NaN or infinity (DS values such as
    "nan" or "1e999" parse as floats): no volume could be placed or valued from them."""
    values = [("RescaleSlope", h.rescale_slope), ("RescaleIntercept", h.rescale_intercept)]
    for f in h.frames:
        where = f" (frame {f.frame_index + 1})" if len(h.frames) > 1 else ""
        values += [
            (f"ImagePositionPatient{where}", f.position),
            (f"ImageOrientationPatient{where}", f.orientation),
            (f"PixelSpacing{where}", f.pixel_spacing),
            (f"RescaleSlope{where}", f.rescale_slope),
            (f"RescaleIntercept{where}", f.rescale_intercept),
        ]
    for name, value in values:
        if value is None:
            continue
        numbers = value if isinstance(value, tuple) else (value,)
        if not all(math.isfinite(v) for v in numbers):
            shown = "\\".join(f"{v:g}" for v in numbers)
            raise SkipFile("unreadable", f"{name} {shown} is not a finite number", h.path)
