"""A fast, header-only DICOM reader for the common case, handing everything unusual to pydicom.

Discovery reads the header of every file in a folder; pydicom's ``dcmread`` manages about a
thousand headers a second, which makes a 50,000-file study folder a minute-long wait. This
module reads only the bytes before the pixel data of a Part-10 file in little-endian explicit
or implicit VR (including the encapsulated, compressed transfer syntaxes, whose header part is
explicit VR little endian), keeps only the elements :class:`~MedPrepLib.dicom.stack.FileHeader`
needs, skips everything else by its length (nested sequences included), and stops at the
pixel data, recording where it starts and how long it is.

It *declines* (raises :class:`Declined`) whenever the file is anything but plain: no preamble/``DICM``,
deflated or big-endian transfer syntax, enhanced multi-frame objects, Siemens mosaics (their
geometry lives in the CSA header), non-ASCII text in the elements we keep, malformed lengths,
no pixel data. :func:`read_header_fast` then falls back to :func:`~MedPrepLib.dicom.header.read_header`
(pydicom), so the fast path changes speed, never results: ``Testing/test_dicom_fastheader.py``
checks on every corpus file that the two paths produce equal FileHeaders (or that the fast
path declined).

Values follow DICOM units: positions and spacings in mm (LPS), times in ms, as pydicom
converts them (DS -> float, IS -> int).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field

from . import header as _header
from .stack import FileHeader

# Transfer syntaxes whose data set is explicit VR little endian (native or encapsulated pixels)
# or implicit VR little endian. Deflate (1.2.840.10008.1.2.1.99) and big endian are declined.
IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_LE = "1.2.840.10008.1.2.1"
_DECLINED_TS = {"1.2.840.10008.1.2.1.99", "1.2.840.10008.1.2.2"}

_LONG_VRS = set(b"OB OW OF OD OL OV SQ UC UR UT UN SV UV".split())  # 2 reserved bytes + 4-byte length
_SHORT_VRS = set(b"AE AS AT CS DA DS DT FL FD IS LO LT PN SH SL SS ST TM UI UL US".split())  # 2-byte length
_HEAD_EXPLICIT = struct.Struct("<HHHH")  # group, element, VR (2 ASCII bytes as an integer), length
_HEAD_IMPLICIT = struct.Struct("<HHI")
_U32 = struct.Struct("<I")
_UNDEFINED = 0xFFFFFFFF
_PIXEL_DATA = 0x7FE00010
_ITEM = 0xFFFEE000
_SEQ_END = 0xFFFEE0DD

# Elements kept, with the VR used when the file does not say (implicit VR).
# Tags are (group << 16) | element.
WANTED: dict[int, str] = {
    0x00080008: "CS",  # ImageType
    0x00080016: "UI",  # SOPClassUID
    0x00080018: "UI",  # SOPInstanceUID
    0x00080032: "TM",  # AcquisitionTime
    0x00080060: "CS",  # Modality
    0x0008103E: "LO",  # SeriesDescription
    0x00180050: "DS",  # SliceThickness
    0x00180081: "DS",  # EchoTime
    0x00180086: "IS",  # EchoNumbers
    0x00180088: "DS",  # SpacingBetweenSlices
    0x00181060: "DS",  # TriggerTime
    0x0020000D: "UI",  # StudyInstanceUID
    0x0020000E: "UI",  # SeriesInstanceUID
    0x00200011: "IS",  # SeriesNumber
    0x00200012: "IS",  # AcquisitionNumber
    0x00200013: "IS",  # InstanceNumber
    0x00200032: "DS",  # ImagePositionPatient
    0x00200037: "DS",  # ImageOrientationPatient
    0x00200100: "IS",  # TemporalPositionIdentifier
    0x00280002: "US",  # SamplesPerPixel
    0x00280004: "CS",  # PhotometricInterpretation
    0x00280008: "IS",  # NumberOfFrames
    0x00280010: "US",  # Rows
    0x00280011: "US",  # Columns
    0x00280030: "DS",  # PixelSpacing
    0x00280100: "US",  # BitsAllocated
    0x00280101: "US",  # BitsStored
    0x00280103: "US",  # PixelRepresentation
    0x00280120: "xs",  # PixelPaddingValue (US or SS, by PixelRepresentation)
    0x00281050: "DS",  # WindowCenter
    0x00281051: "DS",  # WindowWidth
    0x00281052: "DS",  # RescaleIntercept
    0x00281053: "DS",  # RescaleSlope
}

# Present at top level => not the plain single-frame case; let pydicom (and frames.py/mosaic.py) do it.
_DECLINE_TAGS = {
    0x52009229,  # SharedFunctionalGroupsSequence (enhanced multi-frame)
    0x52009230,  # PerFrameFunctionalGroupsSequence
    0x7FE00008,  # FloatPixelData
    0x7FE00009,  # DoubleFloatPixelData
    0x00041220,  # DirectoryRecordSequence (a DICOMDIR)
}

# The hot loop compares VRs as little-endian integers of their two ASCII letters.
_LONG_VR_CODES = {int.from_bytes(v, "little") for v in _LONG_VRS}
_SHORT_VR_CODES = {int.from_bytes(v, "little") for v in _SHORT_VRS}
_VR_NAMES = {int.from_bytes(v, "little"): v.decode() for v in _LONG_VRS | _SHORT_VRS}
_VR_UN = int.from_bytes(b"UN", "little")
_PIXEL_VR_CODES = {int.from_bytes(v, "little") for v in _header.PIXEL_VRS}

# One lookup per element: the VR to keep it as, "pixels" (stop) or "decline".
_SPECIAL: dict[int, str] = {**WANTED, **{t: "decline" for t in _DECLINE_TAGS}, _PIXEL_DATA: "pixels"}

_CHUNK = 16384


class Declined(Exception):
    """The file is not the plain case this parser handles; use pydicom."""


@dataclass
class RawHeader:
    """Elements of interest as raw bytes, plus where the pixel data sits in the file."""

    transfer_syntax_uid: str
    implicit: bool
    elements: dict[int, tuple[str, bytes]] = field(default_factory=dict)
    pixel_data_offset: int | None = None  # byte offset of the pixel data value in the file
    pixel_data_length: int | None = None  # None when encapsulated (undefined length)
    complete: bool = True  # encapsulated fragments all lie within the file
    media_storage_sop_class_uid: str = ""
    size: int = 0  # file size, bytes
    mtime_ns: int = 0


class _Reader:
    """Forward-only window onto a file: bytes are fetched only where values are needed."""

    __slots__ = ("f", "base", "data")

    def __init__(self, f):
        self.f = f
        self.base = 0
        self.data = f.read(_CHUNK)

    def get(self, pos: int, n: int) -> bytes:
        start = pos - self.base
        if start < 0 or start + n > len(self.data):
            self.f.seek(pos)
            self.data = self.f.read(max(n, _CHUNK))
            self.base = pos
            start = 0
        out = self.data[start : start + n]
        if len(out) != n:
            raise Declined("unexpected end of file in header")
        return out


def _skip_undefined_sequence(r: _Reader, pos: int, implicit: bool) -> int:
    """Position just after an undefined-length sequence whose first item starts at ``pos``."""
    while True:
        tag_group, tag_elem, length = struct.unpack("<HHI", r.get(pos, 8))
        tag = (tag_group << 16) | tag_elem
        pos += 8
        if tag == _SEQ_END:
            return pos
        if tag != _ITEM:
            raise Declined(f"unexpected tag {tag:08X} in sequence")
        if length != _UNDEFINED:
            pos += length
            continue
        pos = _skip_item(r, pos, implicit)


def _skip_item(r: _Reader, pos: int, implicit: bool) -> int:
    """Skip the elements of an undefined-length item from ``pos``; position after its delimiter."""
    while True:
        group, elem, length = struct.unpack("<HHI", r.get(pos, 8))
        if group == 0xFFFE and elem == 0xE00D:
            return pos + 8
        if implicit:
            pos += 8
        else:
            vr = r.get(pos + 4, 2)
            if vr in _LONG_VRS:
                (length,) = struct.unpack("<I", r.get(pos + 8, 4))
                pos += 12
            elif vr in _SHORT_VRS:
                length >>= 16  # bytes 6-7 hold the 16-bit length
                pos += 8
            else:
                raise Declined(f"invalid VR at offset {pos}")
        if length == _UNDEFINED:
            pos = _skip_undefined_sequence(r, pos, implicit or vr == b"UN")
        else:
            pos += length


def _walk_top(r: _Reader, pos: int, implicit: bool, out: RawHeader, special_map: dict[int, str] = _SPECIAL) -> None:
    """Walk the top-level data set from ``pos`` to the pixel data, keeping the WANTED elements.

    The hot loop of the scan: element headers are unpacked straight from the reader's window,
    with one dictionary lookup per element (``_SPECIAL``) deciding whether to keep, stop or
    decline; the window is refilled only when an element crosses its end.
    """
    head_explicit = _HEAD_EXPLICIT.unpack_from
    head_implicit = _HEAD_IMPLICIT.unpack_from
    u32 = _U32.unpack_from
    special = special_map.get
    short_vrs, long_vrs = _SHORT_VR_CODES, _LONG_VR_CODES
    elements = out.elements
    data, base = r.data, r.base
    n = len(data)
    while True:
        i = pos - base  # never negative: the window only moves forward, to where pos is
        if i + 12 > n:
            try:
                r.get(pos, 12)
            except Declined:
                r.get(pos, 8)
            data, base = r.data, r.base
            n = len(data)
            i = 0
        if implicit:
            group, elem, length = head_implicit(data, i)
            vr = 0
            pos += 8
        else:
            group, elem, vr, length = head_explicit(data, i)
            if vr in short_vrs:
                pos += 8
            elif vr in long_vrs:
                (length,) = u32(data, i + 8)
                pos += 12
            else:
                raise Declined(f"invalid VR at offset {pos}")
        tag = (group << 16) | elem
        action = special(tag)
        if action is not None:
            if action == "pixels":
                if vr and (vr not in _PIXEL_VR_CODES or (vr == _VR_UN and length == _UNDEFINED)):
                    raise Declined("pixel data with a VR that is not binary")
                out.pixel_data_offset = pos
                out.pixel_data_length = None if length == _UNDEFINED else length
                return
            if action == "decline":
                raise Declined(f"element {tag:08X} needs the full reader")
            if length == _UNDEFINED:
                raise Declined("undefined length on a kept element")
            if vr and vr != _VR_UN:
                have = _VR_NAMES.get(vr, "??")
                if have != action and not (action == "xs" and have in ("US", "SS")):
                    raise Declined(f"element {tag:08X} has VR {have}, expected {action}")
                action = have
            j = pos - base
            if j + length <= n:
                elements[tag] = (action, data[j : j + length])
            else:
                elements[tag] = (action, r.get(pos, length))
                data, base = r.data, r.base
                n = len(data)
        if length == _UNDEFINED:
            # Sequences (or UN holding one, which is implicit VR inside).
            pos = _skip_undefined_sequence(r, pos, implicit or vr == _VR_UN)
            data, base = r.data, r.base
            n = len(data)
        else:
            pos += length


def parse_raw(path: str | os.PathLike, special_map: dict[int, str] = _SPECIAL) -> RawHeader:
    """Read the kept elements of a plain Part-10 little-endian file; raise Declined otherwise.
    ``special_map``: tag -> the VR to keep it as, ``"pixels"`` (stop) or ``"decline"``."""
    with open(path, "rb", buffering=0) as f:
        r = _Reader(f)
        if len(r.data) < 144 or r.data[128:132] != b"DICM":
            raise Declined("no DICOM preamble")
        pos = 132
        ts = ""
        sop_class = ""
        data = r.data
        meta = _HEAD_EXPLICIT.unpack_from
        while True:  # file meta group: explicit VR little endian, always
            if pos + 12 > len(data):
                raise Declined("file meta information runs past the first block")
            group, elem, vr, length = meta(data, pos)
            if group != 0x0002:
                break
            if vr in _LONG_VR_CODES:
                (length,) = _U32.unpack_from(data, pos + 8)
                pos += 12
            else:
                pos += 8
            if length == _UNDEFINED or pos + length > len(data):
                raise Declined("unusual file meta information")
            if elem == 0x0010:
                ts = data[pos : pos + length].rstrip(b"\x00 ").decode("ascii", "replace")
            elif elem == 0x0002:
                sop_class = data[pos : pos + length].rstrip(b"\x00 ").decode("ascii", "replace")
            pos += length
        if not ts or ts in _DECLINED_TS:
            raise Declined(f"transfer syntax {ts or 'missing'}")
        implicit = ts == IMPLICIT_LE
        if not implicit and not ts.startswith("1.2.840.10008.1.2."):
            raise Declined(f"unknown transfer syntax {ts}")
        out = RawHeader(transfer_syntax_uid=ts, implicit=implicit, media_storage_sop_class_uid=sop_class)
        st = os.fstat(f.fileno())
        out.size, out.mtime_ns = st.st_size, st.st_mtime_ns
        try:
            _walk_top(r, pos, implicit, out, special_map)
            if out.pixel_data_length is None and out.pixel_data_offset is not None:
                out.complete = _header._encapsulated_complete(f, out.pixel_data_offset, st.st_size, False)
        except struct.error as exc:
            raise Declined(f"malformed header: {exc}") from exc
        return out


# -- value conversion (as pydicom converts them) -------------------------------------------

_NUMERIC_BINARY = {"US": ("H", 2), "SS": ("h", 2), "UL": ("I", 4), "SL": ("i", 4), "FL": ("f", 4), "FD": ("d", 8)}


def _number(s: str, vr: str) -> float | int:
    if "_" in s:  # Python's float()/int() accept "1_0"; DICOM does not
        raise Declined(f"malformed {vr} value")
    try:
        if vr == "DS":
            return float(s)
        try:
            return int(s)
        except ValueError:
            f = float(s)
            if f != int(f):
                raise ValueError(s) from None
            return int(f)
    except ValueError as exc:
        raise Declined(f"malformed {vr} value") from exc


def convert(vr: str, data: bytes, tag: int, pixel_representation: int = 0):
    """A kept element's value as pydicom's ``Dataset.get`` would give it, in plain Python types.

    Empty -> None (numbers) or "" (text); one value -> a scalar; several -> a list.
    """
    if vr == "US" or (vr == "xs" and pixel_representation != 1):
        if len(data) == 2:
            return data[0] | (data[1] << 8)
        vr = "US"
    elif vr == "xs":
        vr = "SS"
    if vr in _NUMERIC_BINARY:
        fmt, size = _NUMERIC_BINARY[vr]
        n = len(data) // size
        if n * size != len(data):
            raise Declined("binary value length is not a multiple of its size")
        values = list(struct.unpack(f"<{n}{fmt}", data))
        return None if n == 0 else values[0] if n == 1 else values
    try:
        text = data.decode("ascii").rstrip("\x00 ")
    except UnicodeDecodeError as exc:
        raise Declined("non-ASCII text: character set handling is left to pydicom") from exc
    if vr == "DS" or vr == "IS":
        if not text:
            return None
        if "\\" not in text:
            return _number(text, vr)
        parts = text.split("\\")
        if any(not p.strip() for p in parts):
            raise Declined("empty value inside a multi-valued number")
        return [_number(p, vr) for p in parts]
    if "\\" in text:
        if tag != 0x00080008:  # only ImageType is multi-valued among kept text
            raise Declined("backslash in a single-valued text element")
        return [p.strip(" \x00") for p in text.split("\\")]
    return text.strip(" \x00")


# Keyword -> tag for what header_from_dataset asks, so the fast path never imports pydicom.
_KEYWORD_TAG: dict[str, int] = {
    "ImageType": 0x00080008,
    "SOPClassUID": 0x00080016,
    "SOPInstanceUID": 0x00080018,
    "AcquisitionTime": 0x00080032,
    "Modality": 0x00080060,
    "SeriesDescription": 0x0008103E,
    "SliceThickness": 0x00180050,
    "EchoTime": 0x00180081,
    "EchoNumbers": 0x00180086,
    "SpacingBetweenSlices": 0x00180088,
    "TriggerTime": 0x00181060,
    "StudyInstanceUID": 0x0020000D,
    "SeriesInstanceUID": 0x0020000E,
    "SeriesNumber": 0x00200011,
    "AcquisitionNumber": 0x00200012,
    "InstanceNumber": 0x00200013,
    "ImagePositionPatient": 0x00200032,
    "ImageOrientationPatient": 0x00200037,
    "TemporalPositionIdentifier": 0x00200100,
    "SamplesPerPixel": 0x00280002,
    "PhotometricInterpretation": 0x00280004,
    "NumberOfFrames": 0x00280008,
    "Rows": 0x00280010,
    "Columns": 0x00280011,
    "PixelSpacing": 0x00280030,
    "BitsAllocated": 0x00280100,
    "BitsStored": 0x00280101,
    "PixelRepresentation": 0x00280103,
    "PixelPaddingValue": 0x00280120,
    "WindowCenter": 0x00281050,
    "WindowWidth": 0x00281051,
    "RescaleIntercept": 0x00281052,
    "RescaleSlope": 0x00281053,
    "DirectoryRecordSequence": 0x00041220,
    "SharedFunctionalGroupsSequence": 0x52009229,
    "PerFrameFunctionalGroupsSequence": 0x52009230,
}


class _FastDataset:
    """Just enough of pydicom's Dataset interface for ``header_from_dataset``.

    Every element ``header_from_dataset`` may ask about is either kept by the walk (WANTED)
    or makes the walk decline (``_DECLINE_TAGS``), so an element missing here is missing
    from the file. Asking for any other keyword raises :class:`Declined`: a new need in
    ``header_from_dataset`` makes the fast path step aside instead of answering differently
    from pydicom.
    """

    def __init__(self, raw: RawHeader):
        self.file_meta = {
            "TransferSyntaxUID": raw.transfer_syntax_uid,
            "MediaStorageSOPClassUID": raw.media_storage_sop_class_uid,
        }
        pr = raw.elements.get(0x00280103)
        pixel_representation = (convert(pr[0], pr[1], 0x00280103) if pr is not None else 0) or 0
        # Every kept element is asked for by header_from_dataset: convert them all at once.
        self._values = {
            tag: _convert_memo(vr, data, tag, pixel_representation) for tag, (vr, data) in raw.elements.items()
        }

    def get(self, key, default=None):
        tag = _KEYWORD_TAG.get(key)
        if tag is None:
            raise Declined(f"{key} is not covered by the fast parser")
        value = self._values.get(tag)
        return default if value is None else value

    def __contains__(self, key) -> bool:
        tag = _KEYWORD_TAG.get(key)
        if tag is None:
            raise Declined(f"{key} is not covered by the fast parser")
        return tag in self._values

    def __getattr__(self, name):
        raise Declined(f"attribute {name} is not provided by the fast parser")


_MEMO: dict[tuple[int, str, bytes, int], object] = {}


def _convert_memo(vr: str, data: bytes, tag: int, pixel_representation: int):
    """``convert`` with a memo: most kept values repeat across the files of a series."""
    key = (tag, vr, data, pixel_representation)
    value = _MEMO.get(key, _MEMO)
    if value is not _MEMO:
        return value
    value = convert(vr, data, tag, pixel_representation)
    if len(_MEMO) > 20000:
        _MEMO.clear()
    if not isinstance(value, list):  # lists are mutable: never share them
        _MEMO[key] = value
    return value


def header_from_raw(raw: RawHeader, path: str, size: int, mtime_ns: int) -> FileHeader:
    """Build the FileHeader of a plain single-frame file through ``header_from_dataset``."""
    image_type = raw.elements.get(0x00080008)
    if image_type is not None and b"MOSAIC" in image_type[1].upper():
        raise Declined("Siemens mosaic: geometry comes from the CSA header")
    nframes = raw.elements.get(0x00280008)
    if nframes is not None and (convert("IS", nframes[1], 0x00280008) or 1) != 1:
        raise Declined("multi-frame object")
    if raw.media_storage_sop_class_uid == "1.2.840.10008.1.3.10":
        raise Declined("DICOMDIR")
    location = _header.PixelDataLocation(
        0x7FE00010, raw.pixel_data_offset, raw.pixel_data_length, raw.pixel_data_length is None
    )
    return _header.header_from_dataset(
        _FastDataset(raw), path, size, mtime_ns, pixel_location=location, encapsulated_complete=raw.complete
    )


def read_header_fast(path: str | os.PathLike) -> FileHeader:
    """The FileHeader of ``path``: the fast path when the file is plain, pydicom otherwise.

    Raises the same ``SkipFile`` as :func:`~MedPrepLib.dicom.header.read_header`.
    """
    p = os.fspath(path)
    try:
        raw = parse_raw(p)
        return header_from_raw(raw, p, raw.size, raw.mtime_ns)
    except (Declined, OSError):
        return _header.read_header(p)


# -- a few more top-level elements, for whoever needs them (the patient of a study) -------------

_TEXT_VRS = frozenset("AE AS CS DA DT LO PN SH ST TM UI".split())


def read_elements(path: str | os.PathLike, elements: dict[str, tuple[int, str]]) -> dict[str, object]:
    """The top-level ``elements`` (keyword -> (tag, VR)) of a plain Part-10 file, by keyword,
    as pydicom's ``Dataset.get`` gives them for plain text: ``str`` for text (a person name as
    its one string), ``float``/``int`` for DS/IS, a list for several numbers; absent elements
    are left out. Raises :class:`Declined` for everything else, so that the caller asks pydicom:
    the file cases :func:`parse_raw` declines, text that is not plain ASCII (another character
    set, ISO 2022 escapes), a backslash in text (pydicom splits it into a list), an element
    whose VR is not the expected one. ``Testing/test_export_patient_fields.py`` checks on every
    corpus file that the answers equal pydicom's or that the file was declined."""
    for _, vr in elements.values():
        if vr not in _TEXT_VRS and vr not in ("DS", "IS"):
            raise ValueError(f"read_elements reads text, DS and IS elements, not {vr}")
    special = {tag: vr for tag, vr in elements.values()}
    special[_PIXEL_DATA] = "pixels"
    raw = parse_raw(path, special)
    out: dict[str, object] = {}
    for keyword, (tag, vr) in elements.items():
        found = raw.elements.get(tag)
        if found is None:
            continue
        data = found[1]
        if vr in _TEXT_VRS and (b"\\" in data or b"\x1b" in data):
            raise Declined(f"{keyword}: several values or an escape sequence")
        out[keyword] = convert(vr, data, tag)
    return out
