"""A seeded mutation engine for DICOM files, and the worker that runs the loaders on its output.

The engine knows the DICOM element layout: :func:`walk` lists every element of a Part-10 file
(file meta, data set, nested sequences and items, delimiters, encapsulated fragments) with the
offsets of its tag, VR, length and value, so that a mutation can change exactly one thing:
a length, a VR, a value of Rows / Columns / BitsAllocated / NumberOfFrames..., the transfer
syntax UID, a sequence delimiter, a fragment; or cut the file at an element boundary or
anywhere, or flip and overwrite bytes of the header region. :func:`mutate` picks one (or two)
from a ``random.Random``, so a mutation is replayed from its seed and number alone.

Run as a script, this module is the fuzz worker (``Testing/test_dicom_fuzz.py`` starts it in
a subprocess with a memory limit): it reads a JSON job on stdin, writes each mutated file,
calls the real entry points (``scan_files``, ``load_path`` on the file and on a folder of its
series) under a per-mutation time limit, and prints one JSON line per mutation.
"""

from __future__ import annotations

import functools
import json
import os
import random
import signal
import struct
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

IMPLICIT_LE = "1.2.840.10008.1.2"
EXPLICIT_BE = "1.2.840.10008.1.2.2"
DEFLATED = "1.2.840.10008.1.2.1.99"
_LONG_VRS = {b"OB", b"OW", b"OF", b"OD", b"OL", b"OV", b"SQ", b"UC", b"UR", b"UT", b"UN", b"SV", b"UV"}
_SHORT_VRS = {
    b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FL", b"FD", b"IS", b"LO", b"LT", b"PN", b"SH",
    b"SL", b"SS", b"ST", b"TM", b"UI", b"UL", b"US",
}  # fmt: skip
ALL_VRS = sorted(_LONG_VRS | _SHORT_VRS)
ITEM, ITEM_END, SEQ_END = 0xFFFEE000, 0xFFFEE00D, 0xFFFEE0DD
PIXEL_TAGS = {0x7FE00010, 0x7FE00008, 0x7FE00009}

TRANSFER_SYNTAXES = [
    "1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99",
    "1.2.840.10008.1.2.4.50", "1.2.840.10008.1.2.4.51", "1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.4.201", "1.2.840.10008.1.2.4.203", "1.2.840.10008.1.2.5", "1.2.840.10008.1.2.4.100",
    "1.2.840.10008.1.2.4.112", "1.2.840.10008.1.2.1.98", "1.2.3.4", "", "1.2.840.10008.1.2.4.",
]  # fmt: skip

# Tags whose values matter most to the loader, with the values worth trying.
_US_VALUES = [0, 1, 2, 3, 7, 8, 12, 15, 16, 17, 24, 31, 32, 33, 64, 255, 256, 32767, 32768, 65535]
_IS_VALUES = ["0", "-1", "1", "2", "3", "7", "1000", "65535", "99999999", "1e9", "abc", "", "1\\2", "2.5", "+3"]
_DS_VALUES = ["0", "-0", "1e308", "-1e308", "nan", "inf", "1e-300", "", "abc", "0.5", "-2.5", "1\\0", "3\\3\\3"]
KEY_TAGS = {
    0x00280010: "US",  # Rows
    0x00280011: "US",  # Columns
    0x00280100: "US",  # BitsAllocated
    0x00280101: "US",  # BitsStored
    0x00280102: "US",  # HighBit
    0x00280103: "US",  # PixelRepresentation
    0x00280002: "US",  # SamplesPerPixel
    0x00280006: "US",  # PlanarConfiguration
    0x00280008: "IS",  # NumberOfFrames
    0x00280004: "CS",  # PhotometricInterpretation
    0x00280030: "DS",  # PixelSpacing
    0x00200032: "DS",  # ImagePositionPatient
    0x00200037: "DS",  # ImageOrientationPatient
    0x00180050: "DS",  # SliceThickness
    0x00281052: "DS",  # RescaleIntercept
    0x00281053: "DS",  # RescaleSlope
    0x00200013: "IS",  # InstanceNumber
    0x00080016: "UI",  # SOPClassUID
    0x00080008: "CS",  # ImageType
    0x00280120: "US",  # PixelPaddingValue
    0x00209056: "SH",  # StackID
    0x00209057: "UL",  # InStackPositionNumber
    0x00189087: "FD",  # DiffusionBValue
    0x00020010: "UI",  # TransferSyntaxUID
    0x00020002: "UI",  # MediaStorageSOPClassUID
    0x00291010: "OB",  # Siemens CSA image header
    0x0019100A: "US",  # Siemens NumberOfImagesInMosaic
}
_CS_VALUES = ["MONOCHROME1", "MONOCHROME2", "RGB", "PALETTE COLOR", "YBR_FULL", "YBR_FULL_422", "", "X" * 17]
_UI_VALUES = ["1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.4.1", "1.2.840.10008.5.1.4.1.1.7",
              "1.2.840.10008.1.3.10", "1.2.840.10008.5.1.4.1.1.66.4", "", "1.2.3"]  # fmt: skip


@dataclass
class Element:
    """One element (or item / delimiter) of a file, as byte offsets."""

    tag: int
    vr: bytes | None  # None: implicit VR, item or delimiter
    start: int  # offset of the tag
    length_at: int  # offset of the length field
    length_size: int  # 2 or 4 bytes
    value_at: int
    length: int | None  # None: undefined length
    depth: int
    meta: bool
    big: bool
    fragment: bool = False  # an item of encapsulated pixel data

    @property
    def end(self) -> int:
        return self.value_at + (self.length or 0)


@dataclass
class Layout:
    elements: list[Element]
    transfer_syntax: str
    pixel_value_at: int | None  # where the pixel data value starts (header region ends there)
    size: int


def _implicit_vr(tag: int) -> str:
    try:
        from pydicom.datadict import dictionary_VR

        return dictionary_VR(tag)
    except KeyError:
        return "UN"


class _Walker:
    def __init__(self, data: bytes, implicit: bool, big: bool):
        self.data, self.implicit, self.big = data, implicit, big
        self.out: list[Element] = []
        self.pixel_value_at: int | None = None

    def header(self, pos: int, depth: int, implicit: bool | None = None) -> Element | None:
        d = self.data
        if pos + 8 > len(d):
            return None
        order = ">" if self.big else "<"
        implicit = self.implicit if implicit is None else implicit
        group, elem = struct.unpack(order + "HH", d[pos : pos + 4])
        tag = (group << 16) | elem
        if group == 0xFFFE or implicit:  # items and delimiters never carry a VR
            (length,) = struct.unpack(order + "I", d[pos + 4 : pos + 8])
            return Element(tag, None, pos, pos + 4, 4, pos + 8, None if length == 0xFFFFFFFF else length, depth, False, self.big)
        vr = d[pos + 4 : pos + 6]
        if vr in _LONG_VRS:
            if pos + 12 > len(d):
                return None
            (length,) = struct.unpack(order + "I", d[pos + 8 : pos + 12])
            return Element(tag, vr, pos, pos + 8, 4, pos + 12, None if length == 0xFFFFFFFF else length, depth, False, self.big)
        if vr in _SHORT_VRS:
            (length,) = struct.unpack(order + "H", d[pos + 6 : pos + 8])
            return Element(tag, vr, pos, pos + 6, 2, pos + 8, length, depth, False, self.big)
        raise ValueError(f"bad VR {vr!r} at {pos}")

    def record(self, pos: int, depth: int, implicit: bool, delimiter: int) -> tuple[Element | None, int | None]:
        """Read and keep the header at ``pos``; returns it and, when the walk of its level ends
        there (no header fits, or it is ``delimiter``), the offset where that level ends."""
        e = self.header(pos, depth, implicit)
        if e is None:
            return None, len(self.data)
        self.out.append(e)
        return e, (e.value_at if e.tag == delimiter else None)

    def dataset(self, pos: int, end: int | None, depth: int, implicit: bool) -> int:
        """Elements from ``pos`` to ``end`` (or to an item delimiter when None); returns the end."""
        limit = len(self.data) if end is None else end
        while pos < limit:
            e, level_end = self.record(pos, depth, implicit, ITEM_END)
            if level_end is not None:
                return level_end
            if e.tag in PIXEL_TAGS and depth == 0:
                self.pixel_value_at = e.value_at
                if e.length is None:
                    return self.fragments(e.value_at)
                return e.end
            is_seq = e.vr == b"SQ" or (e.vr is None and _implicit_vr(e.tag) == "SQ") or (e.length is None)
            if is_seq:
                inner_implicit = implicit or e.vr == b"UN"
                pos = self.sequence(e.value_at, None if e.length is None else e.value_at + e.length, depth + 1, inner_implicit)
            else:
                pos = e.end
        return pos

    def sequence(self, pos: int, end: int | None, depth: int, implicit: bool) -> int:
        limit = len(self.data) if end is None else end
        while pos < limit:
            e, level_end = self.record(pos, depth, implicit, SEQ_END)
            if level_end is not None:
                return level_end
            if e.tag != ITEM:
                raise ValueError(f"tag {e.tag:08X} inside a sequence at {pos}")
            pos = self.dataset(e.value_at, None if e.length is None else e.end, depth + 1, implicit)
        return pos

    def fragments(self, pos: int) -> int:
        while pos + 8 <= len(self.data):
            e = self.header(pos, 1, True)
            e.fragment = True
            self.out.append(e)
            if e.tag != ITEM or e.length is None:
                return e.value_at
            pos = e.end
        return pos


def walk(data: bytes) -> Layout:
    """Every element of a Part-10 file (preamble + DICM) with its offsets; raises ValueError
    when the file is not one this walker understands (mutated files often are not)."""
    if data[128:132] != b"DICM":
        raise ValueError("no DICM prefix")
    w = _Walker(data, implicit=False, big=False)
    pos, ts = 132, ""
    while pos + 8 <= len(data) and struct.unpack("<H", data[pos : pos + 2])[0] == 0x0002:
        e = w.header(pos, 0, implicit=False)
        if e is None:
            break
        e.meta = True
        w.out.append(e)
        if e.tag == 0x00020010:
            ts = data[e.value_at : e.end].rstrip(b"\0 ").decode("ascii", "replace")
        pos = e.end
    if ts != DEFLATED:
        w.implicit, w.big = ts == IMPLICIT_LE, ts == EXPLICIT_BE
        w.dataset(pos, None, 0, w.implicit)
    return Layout(w.out, ts, w.pixel_value_at, len(data))


# ----------------------------------------------------------------------------- mutations
def _pack_length(e: Element, value: int) -> bytes:
    order = ">" if e.big else "<"
    return struct.pack(order + ("H" if e.length_size == 2 else "I"), value % (1 << (8 * e.length_size)))


def _set_length(data: bytearray, e: Element, value: int) -> None:
    data[e.length_at : e.length_at + e.length_size] = _pack_length(e, value)


def _replace_value(data: bytes, e: Element, value: bytes) -> bytes:
    """The file with ``e``'s value replaced (its length field updated; parents' lengths are not)."""
    if e.length is None:
        return data
    if len(value) % 2:
        value += b"\0" if e.vr in (b"UI", b"OB", None) else b" "
    out = bytearray(data[: e.value_at] + value + data[e.end :])
    _set_length(out, e, len(value))
    return bytes(out)


def _interesting_length(rng: random.Random, e: Element, size: int) -> int:
    n = e.length or 0
    big = (1 << (8 * e.length_size)) - 1
    return rng.choice([0, 1, 2, n - 1, n + 1, n + 2, n * 2, n // 2, big, big - 1, size, size - e.value_at, rng.randrange(big + 1)])


def _header_region(layout: Layout) -> int:
    return layout.pixel_value_at if layout.pixel_value_at is not None else layout.size


def m_length(data: bytes, layout: Layout, rng: random.Random) -> tuple[bytes, str]:
    e = rng.choice(layout.elements)
    value = _interesting_length(rng, e, layout.size)
    out = bytearray(data)
    _set_length(out, e, value)
    return bytes(out), f"length of {e.tag:08X} at {e.start}: {e.length} -> {value % (1 << (8 * e.length_size))}"


def m_vr(data: bytes, layout: Layout, rng: random.Random) -> tuple[bytes, str]:
    explicit = [e for e in layout.elements if e.vr is not None]
    if not explicit:
        return m_flip(data, layout, rng)
    e = rng.choice(explicit)
    new = rng.choice([*ALL_VRS, b"\0\0", b"ZZ", b"  ", e.vr[::-1]])
    out = bytearray(data)
    out[e.start + 4 : e.start + 6] = new
    return bytes(out), f"VR of {e.tag:08X} at {e.start}: {e.vr.decode('latin1')} -> {new.decode('latin1')}"


def _value_for(rng: random.Random, vr: str, e: Element, data: bytes) -> bytes:
    if vr == "US":
        old = struct.unpack((">" if e.big else "<") + "H", data[e.value_at : e.value_at + 2])[0] if e.length == 2 else 0
        v = rng.choice([*_US_VALUES, old + 1, max(old - 1, 0), old * 2, old // 2])
        return struct.pack((">" if e.big else "<") + "H", v % 65536)
    if vr == "UL":
        return struct.pack((">" if e.big else "<") + "I", rng.choice([0, 1, 2, 0xFFFFFFFF, rng.randrange(1 << 32)]))
    if vr == "FD":
        return struct.pack((">" if e.big else "<") + "d", rng.choice([0.0, -1.0, 1e308, float("nan"), float("inf"), 1000.0]))
    if vr == "IS":
        return rng.choice(_IS_VALUES).encode()
    if vr == "DS":
        n = rng.choice([1, 2, 3, 6, 7])
        return "\\".join(rng.choice(_DS_VALUES) for _ in range(n)).encode()
    if vr == "CS":
        return rng.choice(_CS_VALUES + ["ORIGINAL\\PRIMARY\\LOCALIZER", "DERIVED\\SECONDARY\\MOSAIC"]).encode()
    if vr == "UI":
        return rng.choice(_UI_VALUES + TRANSFER_SYNTAXES).encode()
    if vr == "OB":  # a private binary header (Siemens CSA): scramble part of it
        body = bytearray(data[e.value_at : e.end])
        for _ in range(rng.randint(1, 16)):
            if body:
                body[rng.randrange(len(body))] = rng.randrange(256)
        if body and rng.random() < 0.3:
            body = body[: rng.randrange(len(body))]
        return bytes(body)
    return rng.choice([b"", b"x" * rng.randint(1, 80), bytes(rng.randrange(256) for _ in range(8))])


def m_value(data: bytes, layout: Layout, rng: random.Random) -> tuple[bytes, str]:
    keyed = [e for e in layout.elements if e.tag in KEY_TAGS and e.length is not None]
    if not keyed:
        return m_flip(data, layout, rng)
    e = rng.choice(keyed)
    vr = KEY_TAGS[e.tag]
    if e.tag == 0x00020010:
        return m_transfer_syntax(data, layout, rng)
    value = _value_for(rng, vr, e, data)
    return _replace_value(data, e, value), f"value of {e.tag:08X} at {e.start} (depth {e.depth}) -> {value[:40]!r}"


def m_transfer_syntax(data: bytes, layout: Layout, rng: random.Random) -> tuple[bytes, str]:
    ts = [e for e in layout.elements if e.tag == 0x00020010]
    if not ts:
        return m_flip(data, layout, rng)
    uid = rng.choice(TRANSFER_SYNTAXES + ["\xff\xfe garbage"])
    return _replace_value(data, ts[0], uid.encode("latin1")), f"transfer syntax {layout.transfer_syntax} -> {uid!r}"


def m_truncate_element(data: bytes, layout: Layout, rng: random.Random) -> tuple[bytes, str]:
    e = rng.choice(layout.elements)
    cut = rng.choice([e.start, e.start + 2, e.start + 4, e.length_at + 1, e.value_at, e.value_at + (e.length or 0) // 2, e.end])
    cut = max(0, min(cut, len(data)))
    return data[:cut], f"truncated at {cut} ({e.tag:08X})"


def m_truncate_random(data: bytes, layout: Layout, rng: random.Random) -> tuple[bytes, str]:
    cut = rng.randrange(len(data))
    return data[:cut], f"truncated at {cut} of {len(data)}"


def m_flip(data: bytes, layout: Layout, rng: random.Random) -> tuple[bytes, str]:
    region = min(len(data), _header_region(layout) + 64)
    out = bytearray(data)
    where = []
    for _ in range(rng.randint(1, 8)):
        i = rng.randrange(128, region) if region > 128 else rng.randrange(region)
        out[i] ^= 1 << rng.randrange(8)
        where.append(i)
    return bytes(out), f"bit flips at {where}"


def m_overwrite(data: bytes, layout: Layout, rng: random.Random) -> tuple[bytes, str]:
    region = min(len(data), _header_region(layout) + 64)
    start = rng.randrange(132, region) if region > 132 else 0
    n = rng.randint(1, 16)
    fill = rng.choice([b"\0" * n, b"\xff" * n, bytes(rng.randrange(256) for _ in range(n))])
    out = bytearray(data)
    out[start : start + n] = fill
    return bytes(out[: len(data)]), f"overwrote {n} bytes at {start} with {fill[:8].hex()}"


def m_delimiter(data: bytes, layout: Layout, rng: random.Random) -> tuple[bytes, str]:
    items = [e for e in layout.elements if e.tag >> 16 == 0xFFFE]
    if not items:
        return m_length(data, layout, rng)
    e = rng.choice(items)
    kind = rng.choice(["retag", "remove", "length", "duplicate"])
    out = bytearray(data)
    if kind == "retag":
        new = rng.choice([ITEM, ITEM_END, SEQ_END, 0x00080008, 0xFFFEE001, 0xFEFF00E0])
        out[e.start : e.start + 4] = struct.pack((">" if e.big else "<") + "HH", new >> 16, new & 0xFFFF)
        return bytes(out), f"{e.tag:08X} at {e.start} retagged {new:08X}"
    if kind == "remove":
        return bytes(out[: e.start] + out[e.value_at :]), f"removed {e.tag:08X} header at {e.start}"
    if kind == "duplicate":
        return bytes(out[: e.value_at] + out[e.start : e.value_at] + out[e.value_at :]), f"doubled {e.tag:08X} at {e.start}"
    value = rng.choice([0, 1, 0xFFFFFFFF, (e.length or 0) + 8, len(data)])
    _set_length(out, e, value)
    return bytes(out), f"length of {e.tag:08X} at {e.start} -> {value}"


def m_pixels(data: bytes, layout: Layout, rng: random.Random) -> tuple[bytes, str]:
    """The pixel data element: its length, its fragments, the first bytes of a codestream."""
    frags = [e for e in layout.elements if e.fragment and e.tag == ITEM]
    out = bytearray(data)
    if frags and rng.random() < 0.6:
        e = rng.choice(frags)
        if rng.random() < 0.5 and e.length:
            # the codestream / RLE header at the start of a fragment: SOF, SIZ, segment table
            for _ in range(rng.randint(1, 4)):
                i = e.value_at + rng.randrange(min(e.length, 64))
                out[i] = rng.choice([0, 0xFF, rng.randrange(256), out[i] ^ (1 << rng.randrange(8))])
            return bytes(out), f"codestream header bytes of fragment at {e.start}"
        value = _interesting_length(rng, e, len(data))
        _set_length(out, e, value)
        return bytes(out), f"fragment length at {e.start} -> {value}"
    pixel = [e for e in layout.elements if e.tag in PIXEL_TAGS and e.depth == 0]
    if not pixel:
        return m_flip(data, layout, rng)
    e = pixel[0]
    if rng.random() < 0.5:
        value = rng.choice([0, 1, 2, 0xFFFFFFFF, (e.length or 0) - 2, (e.length or 0) + 2, (e.length or 0) // 2])
        _set_length(out, e, value)
        return bytes(out), f"pixel data length -> {value}"
    cut = e.value_at + rng.randrange(max(1, len(data) - e.value_at))
    return data[:cut], f"pixel data cut at {cut} of {len(data)}"


def m_delete(data: bytes, layout: Layout, rng: random.Random) -> tuple[bytes, str]:
    top = [e for e in layout.elements if e.depth == 0 and e.length is not None and e.tag not in PIXEL_TAGS]
    if not top:
        return m_flip(data, layout, rng)
    e = rng.choice(top)
    return data[: e.start] + data[e.end :], f"deleted {e.tag:08X} at {e.start}"


def m_duplicate(data: bytes, layout: Layout, rng: random.Random) -> tuple[bytes, str]:
    top = [e for e in layout.elements if e.depth == 0 and e.length is not None and e.tag not in PIXEL_TAGS]
    if len(top) < 2:
        return m_flip(data, layout, rng)
    e, at = rng.choice(top), rng.choice(top)
    return data[: at.start] + data[e.start : e.end] + data[at.start :], f"copied {e.tag:08X} before {at.tag:08X}"


MUTATIONS = {
    "length": (m_length, 3),
    "vr": (m_vr, 2),
    "value": (m_value, 6),
    "transfer_syntax": (m_transfer_syntax, 2),
    "truncate_element": (m_truncate_element, 2),
    "truncate_random": (m_truncate_random, 1),
    "flip": (m_flip, 2),
    "overwrite": (m_overwrite, 1),
    "delimiter": (m_delimiter, 2),
    "pixels": (m_pixels, 2),
    "delete": (m_delete, 1),
    "duplicate": (m_duplicate, 1),
}


def mutate(data: bytes, rng: random.Random) -> tuple[bytes, list[str]]:
    """One mutation of ``data`` (sometimes two in a row), and what was done."""
    names = list(MUTATIONS)
    weights = [MUTATIONS[n][1] for n in names]
    done = []
    for _ in range(rng.choice([1, 1, 1, 2, 2, 3])):
        if len(data) < 2:
            break
        try:
            layout = walk(data)
        except (ValueError, struct.error):
            layout = Layout([], "", None, len(data))
        if not layout.elements:
            data, what = m_truncate_random(data, layout, rng) if rng.random() < 0.3 else m_flip(data, layout, rng)
            done.append(what)
            continue
        name = rng.choices(names, weights)[0]
        data, what = MUTATIONS[name][0](data, layout, rng)
        done.append(f"{name}: {what}")
    return data, done


def mutation_rng(seed: int, index: int) -> random.Random:
    return random.Random(f"medprep-fuzz:{seed}:{index}")


# --------------------------------------------------------------------------------- worker
class _TimeLimit(BaseException):
    """Raised by SIGALRM: the library took longer than the per-mutation time limit."""


def _on_alarm(signum, frame):
    raise _TimeLimit()


def _check_volume(volume, expect_in_plane: tuple[int, int] | None) -> str | None:
    """None when the volume is consistent with the header, else what is wrong."""
    import numpy as np

    a = volume.array
    if a.ndim not in (3, 4):
        return f"array has {a.ndim} dimensions"
    if a.dtype not in (np.int16, np.int32, np.float32, np.float64, np.uint8, np.uint16):
        return f"unexpected dtype {a.dtype}"
    if a.size == 0:
        return "empty array"
    if tuple(volume.geometry.size) != (a.shape[2], a.shape[1], a.shape[0]):
        return f"geometry size {volume.geometry.size} does not match the array {a.shape}"
    spacing = np.asarray(volume.geometry.spacing, float)
    if not (np.all(np.isfinite(spacing)) and np.all(spacing > 0)):
        return f"spacing {spacing}"
    if not np.all(np.isfinite(np.asarray(volume.geometry.origin, float))):
        return f"origin {volume.geometry.origin}"
    if expect_in_plane is not None and not volume.metadata.get("regularized") and a.shape[1:3] != expect_in_plane:
        return f"in-plane shape {a.shape[1:3]} differs from the header's {expect_in_plane}"
    return None


def _expected_in_plane(path: str) -> tuple[int, int] | None:
    from MedPrepLib.dicom.header import SkipFile, read_header
    from MedPrepLib.dicom.pixels import tile_shape

    try:
        return tile_shape(read_header(path))
    except (SkipFile, Exception):
        return None


def _outcome(fn, check) -> dict:
    from MedPrepLib.errors import MedPrepError

    try:
        result = fn()
    except _TimeLimit:
        raise
    except MedPrepError as exc:
        text = exc.one_line()
        if "not enough memory" in text:  # the budget held, yet the limit of this process was hit
            return {"ok": False, "why": f"MemoryError within the budget: {text}"}
        return {"ok": True, "result": f"{type(exc).__name__}: {text[:160]}"}
    except BaseException as exc:  # noqa: BLE001 - everything else is a finding
        tb = traceback.format_exc(limit=-6)
        return {"ok": False, "why": f"{type(exc).__name__}: {exc}"[:300], "traceback": tb}
    problem = check(result) if check is not None else None
    if problem:
        return {"ok": False, "why": problem}
    return {"ok": True, "result": type(result).__name__}


def run_job(job: dict) -> None:
    """Run mutations ``job['start']``..``job['stop']`` and print one JSON line for each."""
    from MedPrepLib.dicom.scan import scan_files
    from MedPrepLib.sources import load_path

    bases = job["bases"]
    work = Path(job["work"])
    limit = float(job.get("time_limit", 20))
    signal.signal(signal.SIGALRM, _on_alarm)
    for index in range(job["start"], job["stop"]):
        base = bases[index % len(bases)]
        rng = mutation_rng(job["seed"], index)
        data, what = mutate(Path(base["file"]).read_bytes(), rng)
        folder = work / f"m{index}"
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / "mutated.dcm"
        target.write_bytes(data)
        series = work / f"s{index}"
        series.mkdir(exist_ok=True)
        (series / "mutated.dcm").write_bytes(data)
        for k, other in enumerate(base.get("companions", [])):
            os.symlink(other, series / f"companion{k}.dcm")
        print(json.dumps({"begin": index}), flush=True)
        record = {"index": index, "base": base["name"], "mutation": what, "checks": {}}
        t0 = time.monotonic()
        try:
            signal.setitimer(signal.ITIMER_REAL, limit)
            in_plane = _expected_in_plane(str(target))
            volume_ok = functools.partial(_check_volume, expect_in_plane=in_plane)
            checks = record["checks"]
            checks["scan_files"] = _outcome(functools.partial(scan_files, [str(target)], cache=False, workers=1), None)
            checks["load_path(file)"] = _outcome(functools.partial(load_path, str(target)), volume_ok)
            if base.get("companions"):
                checks["load_path(series)"] = _outcome(functools.partial(load_path, str(series)), volume_ok)
        except _TimeLimit:
            record["checks"]["time"] = {"ok": False, "why": f"no answer within {limit:g} s (hang?)"}
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
        record["seconds"] = round(time.monotonic() - t0, 3)
        print(json.dumps(record), flush=True)
        for p in (*folder.iterdir(), *series.iterdir()):
            p.unlink()
        folder.rmdir()
        series.rmdir()


def _limit_memory(extra_bytes: int) -> None:
    """Cap this process's address space at what it uses now plus ``extra_bytes``."""
    import resource

    with open("/proc/self/status") as f:
        vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    resource.setrlimit(resource.RLIMIT_AS, (vm + extra_bytes, vm + extra_bytes))


def main() -> None:
    job = json.loads(sys.stdin.read())
    sys.path.insert(0, str(REPO))
    import numpy  # noqa: F401 - imported before the limit so that the baseline includes them
    import pydicom  # noqa: F401

    import MedPrepLib.dicom.load  # noqa: F401
    import MedPrepLib.dicom.scan  # noqa: F401

    if job.get("address_space_extra") and sys.platform.startswith("linux"):
        _limit_memory(int(job["address_space_extra"]))
    run_job(job)


if __name__ == "__main__":
    main()
