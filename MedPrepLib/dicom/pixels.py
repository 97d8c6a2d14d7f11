"""Pixel values: reading stored values into a preallocated buffer, BitsStored handling, and
the Modality LUT (RescaleSlope / RescaleIntercept) per slice.

Uncompressed little- or big-endian native pixel data is read straight from the file at the
offset the header reader found (no pydicom parse of the pixels); everything else goes through
pydicom's decoders (:mod:`.codecs`). Buffers are (slices, rows, cols) of the *stored* integer
type; :func:`apply_modality_lut` turns them into output values, ``stored * slope + intercept``:
int16 when every slope and intercept is integral, equal across slices, and the result fits;
int32 when integral but wider; float32 otherwise (float64 for Double Float Pixel Data).
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterable
from functools import lru_cache

import numpy as np

from ..errors import DicomError, MedPrepError, UnsupportedDicomError
from .codecs import (
    CODESTREAM_PROBE_BYTES,
    DEFLATE_MAX_RATIO,
    JPEG_LOSSLESS,
    RLE_LOSSLESS,
    RLE_MAX_RATIO,
    PydicomMessages,
    codestream_size,
    decode_dataset,
    ensure_decoder,
    read_fragments,
    rle_segments,
    transfer_syntax_name,
)
from .header import DEFLATED_LE, EXPLICIT_VR_BE, EXPLICIT_VR_LE, IMPLICIT_VR_LE
from .mosaic import demosaic
from .stack import FileHeader

_FAST_SYNTAXES = {IMPLICIT_VR_LE, EXPLICIT_VR_LE, EXPLICIT_VR_BE}


_FLOAT_PIXEL_TAGS = {0x7FE00008: np.dtype(np.float32), 0x7FE00009: np.dtype(np.float64)}
"""Float Pixel Data and Double Float Pixel Data (parametric maps): values are stored as IEEE floats."""
_PIXEL_TAGS = {0x7FE00010, *_FLOAT_PIXEL_TAGS}


# ------------------------------------------------------------------------ memory budget
BUDGET_ENV = "MEDPREP_MAX_PIXEL_BYTES"
"""Environment variable overriding the pixel memory budget: bytes, or a number with a binary
suffix (``512M``, ``4G``, ``4GiB``, ``1.5T``)."""
_DEFAULT_BUDGET_UNKNOWN = 4 << 30


class PixelBudgetError(DicomError):
    """Pixel data would need more memory than the budget (:func:`max_pixel_bytes`) allows, or
    more than the machine could give."""


def _size(n: int | float) -> str:
    """A byte count for people: '8 GiB', '70.8 KiB', '512 bytes'."""
    n = float(n)
    if n < 1024:
        return f"{int(n)} bytes"
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB"):
        n /= 1024
        if n < 1024 or unit == "PiB":
            return f"{n:.3g} {unit}"
    raise AssertionError("unreachable")


@lru_cache(maxsize=1)
def _memory_bytes() -> int | None:
    """Physical memory, or the container's memory limit when that is smaller (bytes)."""
    try:
        total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        total = None
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(limit_file) as f:
                text = f.read().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) > 0:
            total = min(total, int(text)) if total else int(text)
        break
    return total if total and total > 0 else None


_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmgtp]?)(i?b)?\s*$", re.I)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def _parse_bytes(text: str) -> int:
    match = _SIZE.match(text)
    value = float(match.group(1)) * _UNITS[match.group(2).lower()] if match else 0.0
    if value < 1:
        raise MedPrepError(
            f"{BUDGET_ENV}={text!r} is not a size in bytes",
            hint=f"give bytes or a size with a binary suffix such as 512M, 8G or 16GiB, e.g. {BUDGET_ENV}=8G",
        )
    return int(value)


def max_pixel_bytes() -> int:
    """The pixel memory budget in bytes: the most that one pixel buffer may take.

    It caps the decoded pixels of one file (all its frames) and the stored values of a whole
    stack, checked before anything is decoded or allocated. Set it with the environment
    variable ``MEDPREP_MAX_PIXEL_BYTES`` (``8G``, ``512M``, bytes); the default is half of the
    machine's physical memory (or of the container's memory limit), 4 GiB where that cannot
    be read. A load can peak at about twice the budget (the Modality LUT may widen int16 to
    float32; resampling a tilted stack holds the input and the output).

    >>> os.environ["MEDPREP_MAX_PIXEL_BYTES"] = "512M"; max_pixel_bytes()
    536870912
    >>> del os.environ["MEDPREP_MAX_PIXEL_BYTES"]
    """
    text = os.environ.get(BUDGET_ENV, "").strip()
    if text:
        return _parse_bytes(text)
    memory = _memory_bytes()
    return memory // 2 if memory else _DEFAULT_BUDGET_UNKNOWN


def _budget_hint() -> str:
    return f"if the data is genuine and the machine has the memory, raise the budget, e.g. {BUDGET_ENV}=32G"


def check_allocation(nbytes: int, what: str, path: str | os.PathLike | None = None) -> None:
    """Raise :class:`PixelBudgetError` when a pixel buffer of ``nbytes`` exceeds the budget.

    ``what`` says what the buffer holds ("54 slices of 512 x 512 int16"), ``path`` where it
    comes from (a file or a series folder). Call it before allocating.
    """
    budget = max_pixel_bytes()
    if nbytes > budget:
        raise PixelBudgetError(
            f"{what} would take {_size(nbytes)}, more than the pixel memory budget of {_size(budget)}",
            path=path,
            hint=_budget_hint(),
        )


def allocate(shape: tuple[int, ...], dtype, what: str, path: str | os.PathLike | None = None) -> np.ndarray:
    """``np.empty(shape, dtype)`` within the budget; a refused or failed allocation is a
    :class:`PixelBudgetError` naming ``what`` and ``path``, never a bare ``MemoryError``."""
    dtype = np.dtype(dtype)
    nbytes = math.prod(int(n) for n in shape) * dtype.itemsize
    check_allocation(nbytes, what, path)
    try:
        return np.empty(shape, dtype)
    except (MemoryError, ValueError) as exc:
        raise PixelBudgetError(
            f"not enough memory for {what} ({_size(nbytes)}, within the pixel memory budget of "
            f"{_size(max_pixel_bytes())})",
            path=path,
            hint="free memory, or lower the budget with " + BUDGET_ENV,
        ) from exc


def allocate_stack(headers: Iterable[FileHeader], shape: tuple[int, ...], dtype) -> np.ndarray:
    """The (slices, rows, cols) buffer of a stack's stored values, after checking each file's
    pixel data (:func:`check_pixel_data`) and the budget, so that nothing is allocated for a
    header whose data cannot hold what it declares."""
    headers = list({h.path: h for h in headers}.values())
    for h in headers:
        check_pixel_data(h)
    where = os.path.dirname(headers[0].path) if len(headers) > 1 else (headers[0].path if headers else None)
    what = f"{shape[0]} slice{'s' if shape[0] != 1 else ''} of {' x '.join(map(str, shape[1:]))} {np.dtype(dtype)}"
    return allocate(shape, dtype, f"the stack's pixel buffer ({what})", where)


# ----------------------------------------------------------- what the stored data can hold
def declared_bytes(h: FileHeader) -> int:
    """Bytes of the decoded pixel data the header declares: Rows x Columns x frames x samples x bits."""
    bits = h.bits_allocated
    if h.extra.get("pixel_tag") in _FLOAT_PIXEL_TAGS:
        bits = _FLOAT_PIXEL_TAGS[h.extra["pixel_tag"]].itemsize * 8
    n = h.rows * h.columns * max(h.number_of_frames, 1) * max(h.samples_per_pixel, 1)
    return (n * bits + 7) // 8


def _shape_text(h: FileHeader) -> str:
    frames = max(h.number_of_frames, 1)
    samples = f" x {h.samples_per_pixel} samples" if h.samples_per_pixel > 1 else ""
    return f"{h.rows} x {h.columns} x {frames} frame{'s' if frames != 1 else ''}{samples}, {h.bits_allocated} bits"


def _declares(h: FileHeader) -> str:
    return f"the header declares {_shape_text(h)} (Rows x Columns x frames) = {_size(declared_bytes(h))}"


def _unchanged(h: FileHeader) -> bool:
    try:
        st = os.stat(h.path)
    except OSError:
        return False
    return st.st_size == h.size_bytes and not (h.mtime_ns and st.st_mtime_ns != h.mtime_ns)


def check_pixel_data(h: FileHeader) -> None:
    """Refuse a file whose stored pixel data cannot hold the image its header declares, or
    whose decoded pixels would exceed the budget, before anything is decoded or allocated.

    What the stored data can hold, by transfer syntax class:

    - native (uncompressed): the pixel data element's length;
    - deflated explicit VR little endian: the file size x 1032 (deflate's largest ratio);
    - encapsulated: a decoder is installed (else :class:`MissingDecoderError`); at least one
      fragment per frame; RLE: the segment count matches
      SamplesPerPixel x BitsAllocated / 8 and each segment expands at most 64:1 to Rows x
      Columns bytes; the JPEG family, JPEG-LS and JPEG 2000 / HTJ2K: the image size in the
      codestream's own SOF / SIZ marker equals Rows x Columns; lossless JPEG needs at least
      one bit per sample.

    Raises :class:`DicomError` (the data does not match the header), :class:`PixelBudgetError`
    (more than :func:`max_pixel_bytes`) or :class:`UnsupportedDicomError` (BitsAllocated).
    """
    if h.rows <= 0 or h.columns <= 0:
        raise DicomError(f"the header declares an image of {h.rows} x {h.columns} pixels (Rows x Columns)", path=h.path)
    if h.number_of_frames < 1:
        raise DicomError(f"the header declares {h.number_of_frames} frames (NumberOfFrames)", path=h.path)
    stored_dtype(h)
    declared = declared_bytes(h)
    uid = h.transfer_syntax_uid
    offset, length = h.extra.get("pixel_offset"), h.extra.get("pixel_length")
    encapsulated = bool(h.extra.get("encapsulated"))
    if uid == DEFLATED_LE:
        if declared > h.size_bytes * DEFLATE_MAX_RATIO:
            raise DicomError(
                f"{_declares(h)}; the deflated file of {_size(h.size_bytes)} can hold at most "
                f"{_size(h.size_bytes * DEFLATE_MAX_RATIO)} (deflate expands at most {DEFLATE_MAX_RATIO}:1)",
                path=h.path,
            )
    elif uid in _FAST_SYNTAXES:
        if encapsulated:
            raise DicomError(
                f"pixel data is encapsulated (compressed) but the transfer syntax "
                f"'{transfer_syntax_name(uid)}' ({uid}) says it is not",
                path=h.path,
            )
        if length is not None and length < declared:
            raise DicomError(f"{_declares(h)}; the pixel data element holds {_size(length)}", path=h.path)
    elif offset is not None and offset >= 0 and _unchanged(h):
        ensure_decoder(uid, h.path)  # without a decoder, that is the one thing to say
        if not encapsulated:
            raise DicomError(
                f"pixel data is not encapsulated although the transfer syntax '{transfer_syntax_name(uid)}' "
                f"({uid}) is a compressed one",
                path=h.path,
            )
        _check_encapsulated(h, int(offset), declared)
    check_allocation(declared, f"this file's pixel data ({_shape_text(h)})", h.path)


def _check_encapsulated(h: FileHeader, offset: int, declared: int) -> None:
    uid, frames = h.transfer_syntax_uid, max(h.number_of_frames, 1)
    name = transfer_syntax_name(uid)
    with open(h.path, "rb") as f:
        fr = read_fragments(f, offset, h.size_bytes, limit=frames + 4096)
        if not fr.lengths:
            raise DicomError("encapsulated pixel data holds no fragments", path=h.path)
        holds = f"the compressed data holds {_size(fr.total)} in {len(fr.lengths)} fragment(s)"
        if len(fr.lengths) < frames and fr.complete:
            raise DicomError(
                f"{_declares(h)}; {holds}, fewer than one per frame", path=h.path
            )
        if uid == RLE_LOSSLESS:
            _check_rle(h, f, fr, declared, holds)
            return
        f.seek(fr.offsets[0])
        head = f.read(min(fr.lengths[0], CODESTREAM_PROBE_BYTES))
    cs = codestream_size(uid, head)
    if cs is not None:
        rows_differ = cs.rows is not None and cs.rows != h.rows
        if rows_differ or cs.columns != h.columns or cs.components != max(h.samples_per_pixel, 1):
            rows = "?" if cs.rows is None else cs.rows
            raise DicomError(
                f"{_declares(h)}, but its '{name}' codestream ({cs.marker} marker) is {rows} x {cs.columns} "
                f"with {cs.components} component(s); {holds}",
                path=h.path,
                hint="the header does not describe the compressed image (Rows, Columns or SamplesPerPixel edited?)",
            )
    if uid in JPEG_LOSSLESS:
        samples = h.rows * h.columns * frames * max(h.samples_per_pixel, 1)
        if samples > 8 * fr.total:
            raise DicomError(
                f"{_declares(h)}; {holds}, and lossless JPEG needs at least one bit per sample, "
                f"so at most {8 * fr.total} samples ({samples} declared)",
                path=h.path,
            )


def _check_rle(h: FileHeader, f, fr, declared: int, holds: str) -> None:
    if fr.total * RLE_MAX_RATIO < declared:
        raise DicomError(
            f"{_declares(h)}; {holds}, which RLE expands to at most {_size(fr.total * RLE_MAX_RATIO)} "
            f"({RLE_MAX_RATIO}:1)",
            path=h.path,
        )
    if len(fr.lengths) != max(h.number_of_frames, 1):
        return  # RLE puts each frame in one fragment; the decoder judges other layouts
    expected = max(h.samples_per_pixel, 1) * ((h.bits_allocated + 7) // 8)
    plane = h.rows * h.columns
    for k, (start, length) in enumerate(zip(fr.offsets, fr.lengths)):
        f.seek(start)
        segments = rle_segments(f.read(64), length)
        frame = f"frame {k + 1} of {len(fr.lengths)}"
        if segments is None:
            raise DicomError(f"the RLE header of {frame} is malformed (segment count or offsets)", path=h.path)
        if len(segments) != expected:
            raise DicomError(
                f"the RLE header of {frame} lists {len(segments)} segment(s); SamplesPerPixel "
                f"{max(h.samples_per_pixel, 1)} and BitsAllocated {h.bits_allocated} need {expected}",
                path=h.path,
            )
        short = min(segments)
        if short * RLE_MAX_RATIO < plane:
            raise DicomError(
                f"{_declares(h)}; an RLE segment of {frame} holds {short} bytes, which expand to at most "
                f"{short * RLE_MAX_RATIO} bytes, not the {plane} of a {h.rows} x {h.columns} plane",
                path=h.path,
            )


def stored_dtype(h: FileHeader) -> np.dtype:
    """The native numpy type holding one stored value of this file."""
    if h.extra.get("pixel_tag") in _FLOAT_PIXEL_TAGS:
        return _FLOAT_PIXEL_TAGS[h.extra["pixel_tag"]]
    if h.bits_allocated not in (8, 16, 32):
        raise UnsupportedDicomError(
            f"BitsAllocated {h.bits_allocated} is not supported for images (8, 16 or 32 expected)", path=h.path
        )
    kind = "i" if h.pixel_representation == 1 else "u"
    return np.dtype(f"{kind}{h.bits_allocated // 8}")


def fix_bits_stored(a: np.ndarray, bits_stored: int, signed: bool) -> None:
    """In place: keep the low ``bits_stored`` bits and sign-extend them when ``signed``.

    Idempotent, so it is safe on values a decoder already corrected. Float data is left alone.
    """
    if a.dtype.kind == "f":
        return
    bits = a.dtype.itemsize * 8
    if not 0 < bits_stored < bits:
        return
    u = a.view(np.dtype(f"u{a.dtype.itemsize}"))
    mask = (1 << bits_stored) - 1
    np.bitwise_and(u, u.dtype.type(mask), out=u)
    if signed:
        sign = u.dtype.type(1 << (bits_stored - 1))
        # (v ^ sign) - sign sign-extends, computed in the unsigned view modulo 2**bits
        np.bitwise_xor(u, sign, out=u)
        np.subtract(u, sign, out=u)


def _fast_path_ok(h: FileHeader) -> bool:
    offset = h.extra.get("pixel_offset")
    length = h.extra.get("pixel_length")
    if (
        h.transfer_syntax_uid not in _FAST_SYNTAXES
        or h.extra.get("pixel_tag") not in _PIXEL_TAGS
        or h.extra.get("encapsulated")
        or offset is None
        or offset < 0
        or length is None
        or h.samples_per_pixel != 1
        or h.bits_allocated not in (8, 16, 32, 64)
        or stored_dtype(h).itemsize * 8 != h.bits_allocated
    ):
        return False
    try:
        st = os.stat(h.path)
    except OSError:
        return False
    # The header must describe the file as it is now (a cached header of a changed file is not)
    if st.st_size != h.size_bytes or (h.mtime_ns and st.st_mtime_ns != h.mtime_ns):
        return False
    frame_bytes = h.rows * h.columns * h.bits_allocated // 8
    return length >= frame_bytes * h.number_of_frames


def _read_direct(h: FileHeader, frames: list[int], out: np.ndarray) -> None:
    """Read native pixel data frames straight from the file into ``out[k]`` (k-th of frames)."""
    frame_bytes = h.rows * h.columns * h.bits_allocated // 8
    base = int(h.extra["pixel_offset"])
    with open(h.path, "rb", buffering=0) as f:
        for k, frame in enumerate(frames):
            f.seek(base + frame * frame_bytes)
            view = memoryview(out[k]).cast("B")
            n = f.readinto(view)
            if n != frame_bytes:
                raise DicomError(f"pixel data ends early (frame {frame}: {n} of {frame_bytes} bytes)", path=h.path)
    if h.transfer_syntax_uid == EXPLICIT_VR_BE and out.dtype.itemsize > 1:
        out.byteswap(inplace=True)


def _read_dataset(h: FileHeader):
    import pydicom

    failure = None
    with PydicomMessages(h.path) as said:
        try:
            ds = pydicom.dcmread(h.path, force=True)
        except MemoryError:
            raise
        except Exception as exc:  # pydicom raises many types on damaged files
            failure = exc
    if failure is not None:
        raise DicomError(
            f"cannot read the file again for its pixels ({type(failure).__name__}: {failure})", path=h.path
        ) from failure
    said.forward()
    return ds


def read_frames_into(h: FileHeader, frames: list[int], out: np.ndarray) -> None:
    """Stored values of some frames of one file into ``out`` (len(frames), rows, cols).

    ``frames`` are 0-based frame numbers (for a mosaic: tile numbers). ``out`` must be
    C-contiguous and of :func:`stored_dtype`; BitsStored masking / sign extension is applied.
    The pixel data is checked against the header and the budget first (:func:`check_pixel_data`).
    """
    check_pixel_data(h)
    if h.is_mosaic:
        n_tiles = int(h.extra.get("mosaic_tiles") or len(h.frames))
        image = _decode_all(h)
        if image.ndim == 3:
            image = image[0]
        tiles = demosaic(image, n_tiles)
        if tiles.shape[1:] != out.shape[1:]:
            raise DicomError(f"mosaic tiles are {tiles.shape[1:]}, expected {out.shape[1:]}", path=h.path)
        out[...] = tiles[frames]
    elif _fast_path_ok(h):
        _read_direct(h, frames, out)
    else:
        data = _decode_all(h)
        if data.ndim == 2:
            data = data[None]
        if data.shape[1:] != out.shape[1:] or max(frames) >= data.shape[0]:
            raise DicomError(
                f"decoded pixel data has shape {data.shape}, expected frames of {out.shape[1:]}", path=h.path
            )
        out[...] = data[frames]
    fix_bits_stored(out, h.bits_stored, h.pixel_representation == 1)


def _decode_all(h: FileHeader) -> np.ndarray:
    if _fast_path_ok(h):
        n = h.number_of_frames
        buf = allocate((n, h.rows, h.columns), stored_dtype(h), "this file's pixel data", h.path)
        _read_direct(h, list(range(n)), buf)
        return buf if n > 1 else buf[0]
    try:
        ds = _read_dataset(h)
        return np.asarray(decode_dataset(ds, h.path))
    except MemoryError as exc:
        raise PixelBudgetError(
            f"not enough memory to decode the pixel data ({_declares(h)}, within the pixel memory budget "
            f"of {_size(max_pixel_bytes())})",
            path=h.path,
            hint="free memory, or lower the budget with " + BUDGET_ENV,
        ) from exc


def tile_shape(h: FileHeader) -> tuple[int, int]:
    """(rows, cols) of one slice of this file (a mosaic tile for a mosaic)."""
    if h.is_mosaic:
        from .mosaic import tile_grid

        m = tile_grid(int(h.extra.get("mosaic_tiles") or len(h.frames) or 1))
        return h.rows // m, h.columns // m
    return h.rows, h.columns


# ------------------------------------------------------------------------ Modality LUT
def plan_modality_lut(slopes: np.ndarray, intercepts: np.ndarray) -> str:
    """'identity', 'integral' (same integral slope/intercept everywhere) or 'float'."""
    if np.all(slopes == 1.0) and np.all(intercepts == 0.0):
        return "identity"
    same = np.all(slopes == slopes[0]) and np.all(intercepts == intercepts[0])
    integral = np.all(slopes == np.round(slopes)) and np.all(intercepts == np.round(intercepts))
    return "integral" if same and integral else "float"


def apply_modality_lut(buf: np.ndarray, slopes: np.ndarray, intercepts: np.ndarray) -> np.ndarray:
    """Output values ``stored * slope + intercept`` from a (slices, rows, cols[, ...]) buffer.

    ``slopes``/``intercepts`` have one value per slice (axis 0). Reuses ``buf``'s memory
    when the result fits in int16 and ``buf`` is a 16-bit integer array (modular arithmetic in
    place, then a reinterpretation), so no second copy is made for the common CT case.
    """
    if not (np.all(np.isfinite(slopes)) and np.all(np.isfinite(intercepts))):
        raise DicomError("RescaleSlope or RescaleIntercept is not a finite number (NaN or infinity)")
    plan = plan_modality_lut(slopes, intercepts)
    if buf.dtype.kind == "f":  # Float / Double Float Pixel Data: stay floating point
        out = buf.astype(np.result_type(buf.dtype, np.float32), copy=False)
        if plan != "identity":
            for k in range(buf.shape[0]):
                out[k] = out[k] * float(slopes[k]) + float(intercepts[k])
        return out
    if plan == "float":
        out = np.empty(buf.shape, np.float32)
        for k in range(buf.shape[0]):
            # float64 per slice, then float32: the result is the correctly rounded value
            out[k] = buf[k] * float(slopes[k]) + float(intercepts[k])
        return out
    lo, hi = (int(buf.min()), int(buf.max())) if buf.size else (0, 0)
    slope, intercept = (1, 0) if plan == "identity" else (int(slopes[0]), int(intercepts[0]))
    ends = (lo * slope + intercept, hi * slope + intercept)
    out_lo, out_hi = min(ends), max(ends)
    fits16 = -32768 <= out_lo and out_hi <= 32767
    if fits16 and buf.dtype.itemsize == 2:
        u = buf.view(np.uint16)
        if slope != 1:
            np.multiply(u, np.uint16(slope % 65536), out=u)
        if intercept != 0:
            np.add(u, np.uint16(intercept % 65536), out=u)
        return buf.view(np.int16)
    target = np.int16 if fits16 else np.int32
    if not (-(2**31) <= out_lo and out_hi < 2**31):
        target = np.float64
    out = buf.astype(target)
    if slope != 1:
        out *= target(slope)
    if intercept != 0:
        out += target(intercept)
    return out
