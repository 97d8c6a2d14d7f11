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

import os

import numpy as np

from ..errors import DicomError, UnsupportedDicomError
from .codecs import decode_dataset
from .header import EXPLICIT_VR_BE, EXPLICIT_VR_LE, IMPLICIT_VR_LE
from .mosaic import demosaic
from .stack import FileHeader

_FAST_SYNTAXES = {IMPLICIT_VR_LE, EXPLICIT_VR_LE, EXPLICIT_VR_BE}


_FLOAT_PIXEL_TAGS = {0x7FE00008: np.dtype(np.float32), 0x7FE00009: np.dtype(np.float64)}
"""Float Pixel Data and Double Float Pixel Data (parametric maps): values are stored as IEEE floats."""
_PIXEL_TAGS = {0x7FE00010, *_FLOAT_PIXEL_TAGS}


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

    try:
        return pydicom.dcmread(h.path, force=True)
    except Exception as exc:
        raise DicomError(
            f"cannot read the file again for its pixels ({type(exc).__name__}: {exc})", path=h.path
        ) from exc


def read_frames_into(h: FileHeader, frames: list[int], out: np.ndarray) -> None:
    """Stored values of some frames of one file into ``out`` (len(frames), rows, cols).

    ``frames`` are 0-based frame numbers (for a mosaic: tile numbers). ``out`` must be
    C-contiguous and of :func:`stored_dtype`; BitsStored masking / sign extension is applied.
    """
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
        buf = np.empty((n, h.rows, h.columns), stored_dtype(h))
        _read_direct(h, list(range(n)), buf)
        return buf if n > 1 else buf[0]
    ds = _read_dataset(h)
    return np.asarray(decode_dataset(ds, h.path))


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
