"""Decoding pixel data through pydicom's handlers (pydicom 2.4 and 3.x), with a clear error
naming the transfer syntax and the package to install when no decoder is available, and the
decoder's own reason when decoding fails (pydicom's warnings and log records, and whatever
native code writes to stderr, are held, never printed).

Also what a compressed stream says about itself before anything is decoded: the items of
encapsulated pixel data (:func:`read_fragments`), the image size in a JPEG / JPEG-LS SOF or a
JPEG 2000 SIZ marker (:func:`codestream_size`), the segment table of an RLE frame
(:func:`rle_segments`), and the largest expansion of RLE and deflate; :mod:`.pixels` compares
them with the header.

Returned arrays hold *stored* values (no Modality LUT), shape (rows, cols) for one frame or
(frames, rows, cols) for several.
"""

from __future__ import annotations

import logging
import os
import struct
import sys
import tempfile
import warnings
from dataclasses import dataclass

import numpy as np

from ..errors import DicomError, MissingDecoderError

log = logging.getLogger(__name__)

# Transfer syntax UID -> the pip packages that give pydicom a decoder for it.
_PACKAGES = {
    "1.2.840.10008.1.2.4.50": "pylibjpeg pylibjpeg-libjpeg (or pillow)",
    "1.2.840.10008.1.2.4.51": "pylibjpeg pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.57": "pylibjpeg pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.70": "pylibjpeg pylibjpeg-libjpeg",
    "1.2.840.10008.1.2.4.80": "pylibjpeg pylibjpeg-libjpeg (or pyjpegls)",
    "1.2.840.10008.1.2.4.81": "pylibjpeg pylibjpeg-libjpeg (or pyjpegls)",
    "1.2.840.10008.1.2.4.90": "pylibjpeg pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.91": "pylibjpeg pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.201": "pylibjpeg pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.202": "pylibjpeg pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.4.203": "pylibjpeg pylibjpeg-openjpeg",
    "1.2.840.10008.1.2.5": "pylibjpeg pylibjpeg-rle",
}


# High-Throughput JPEG 2000 (2023): pydicom 2.4 knows neither the names nor a decoder.
_HTJ2K = {
    "1.2.840.10008.1.2.4.201": "High-Throughput JPEG 2000 Image Compression (Lossless Only)",
    "1.2.840.10008.1.2.4.202": "High-Throughput JPEG 2000 with RPCL Options Image Compression (Lossless Only)",
    "1.2.840.10008.1.2.4.203": "High-Throughput JPEG 2000 Image Compression",
}


def _pydicom2() -> bool:
    import pydicom

    return pydicom.__version__.startswith("2.")


def transfer_syntax_name(uid: str) -> str:
    """The human name of a transfer syntax UID (the UID itself when unknown)."""
    if uid in _HTJ2K:
        return _HTJ2K[uid]
    try:
        from pydicom.uid import UID

        name = UID(uid).name
        return name if name and name != uid else uid
    except Exception:  # pragma: no cover - pydicom always present in practice
        return uid


def package_for(uid: str) -> str:
    """pip package(s) providing a decoder for this transfer syntax."""
    return _PACKAGES.get(uid, "pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg pylibjpeg-rle (or gdcm)")


def _missing(uid: str, path: str) -> MissingDecoderError:
    hint = f"pip install {package_for(uid)}"
    if uid in _HTJ2K and _pydicom2():
        hint = f"decoding it needs pydicom >= 3.0: pip install 'pydicom>=3' {package_for(uid)}"
    return MissingDecoderError(
        f"pixel data is compressed as '{transfer_syntax_name(uid)}' ({uid}) and no installed decoder handles it",
        path=path,
        hint=hint,
    )


def decoder_available(uid: str) -> bool:
    """True when pydicom (3.x decoders or 2.4 handlers) can decode this transfer syntax."""
    try:
        from pydicom.pixels import get_decoder  # pydicom >= 3
    except ImportError:
        get_decoder = None
    if get_decoder is not None:
        try:
            return bool(get_decoder(uid).is_available)
        except (NotImplementedError, ValueError, KeyError):
            return False
    import pydicom.config

    for handler in getattr(pydicom.config, "pixel_data_handlers", []):
        try:
            if handler.supports_transfer_syntax(uid) and handler.is_available():
                return True
        except Exception:  # noqa: S112 - a broken handler is simply not available
            continue
    return False


def ensure_decoder(uid: str, path: str) -> None:
    """Raise :class:`MissingDecoderError` when no decoder for ``uid`` is installed."""
    if not decoder_available(uid):
        raise _missing(uid, path)


class PydicomMessages:
    """What pydicom says while it reads or decodes one file, held instead of printed.

    pydicom reports through ``warnings`` and through its ``pydicom`` logger, sometimes with a
    traceback (a decoder plugin that failed); on a command line that would bury MedPrep's
    one-line error. Inside ``with PydicomMessages(path) as said:`` both are collected in
    ``said.messages`` (filled when the block ends) and the logger does not propagate.
    """

    def __init__(self, path: str):
        self.path = path
        self.messages: list[str] = []
        self._held: list[logging.LogRecord] = []

    def __enter__(self) -> PydicomMessages:
        held = self._held

        class _Hold(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                held.append(record)

        self._logger = logging.getLogger("pydicom")
        self._handler, self._propagate = _Hold(logging.WARNING), self._logger.propagate
        self._logger.addHandler(self._handler)
        self._logger.propagate = False
        self._warnings = warnings.catch_warnings(record=True)
        self._caught = self._warnings.__enter__()
        warnings.simplefilter("always")
        return self

    def __exit__(self, *exc_info) -> None:
        self._warnings.__exit__(*exc_info)
        self._logger.removeHandler(self._handler)
        self._logger.propagate = self._propagate
        texts = [_message(r) for r in self._held]
        texts += [str(w.message) for w in self._caught if not issubclass(w.category, DeprecationWarning)]
        for text in texts:  # the same message often arrives twice (warn_and_log)
            if text and text not in self.messages:
                self.messages.append(text)

    def forward(self, level: int | None = None) -> None:
        """Log the held messages under MedPrep's logger at ``level``; by default a mismatch
        pydicom worked around while decoding as a warning (values may be affected), everything
        else at debug level."""
        for text in self.messages:
            mismatch = any(w in text.lower() for w in ("doesn't match", "does not match", "mismatch"))
            lvl = level if level is not None else logging.WARNING if mismatch else logging.DEBUG
            log.log(lvl, "%s: pydicom: %s", self.path, text)


class _NativeStderr:
    """Hold what native decoder code writes straight to file descriptor 2 while it runs (a
    Rust panic message and backtrace, a C library's warnings): Python's ``warnings`` and
    logging never see it, and on a command line it would bury MedPrep's one-line error.
    ``text`` holds it afterwards. Does nothing where descriptor 2 cannot be duplicated."""

    def __enter__(self) -> _NativeStderr:
        self.text = ""
        self._saved = self._tmp = None
        try:
            sys.stderr.flush()
            self._tmp = tempfile.TemporaryFile()
            self._saved = os.dup(2)
            os.dup2(self._tmp.fileno(), 2)
        except (OSError, ValueError, AttributeError):
            self._close()
        return self

    def __exit__(self, *exc_info) -> None:
        if self._saved is not None:
            try:
                os.dup2(self._saved, 2)
                self._tmp.seek(0)
                self.text = self._tmp.read(20000).decode("utf-8", "replace")
            except (OSError, ValueError):
                pass
        self._close()

    def _close(self) -> None:
        if self._saved is not None:
            os.close(self._saved)
            self._saved = None
        if self._tmp is not None:
            self._tmp.close()
            self._tmp = None


def _is_panic(exc: BaseException) -> bool:
    """A Rust decoder's panic (pylibjpeg-rle and others built with pyo3): it derives from
    BaseException, not Exception, but it is only a decoder failing on bad data."""
    return type(exc).__name__ == "PanicException"


def _message(record: logging.LogRecord) -> str:
    try:
        text = record.getMessage()
    except Exception:  # a malformed log call must not hide the real error
        text = str(record.msg)
    return " ".join(text.split())[:400]


def _plugins(uid: str) -> str:
    try:
        from pydicom.pixels import get_decoder

        names = get_decoder(uid).available_plugins
        return ", ".join(names) if names else "pydicom"
    except Exception:
        return "pydicom's handlers"


def decode_dataset(ds, path: str) -> np.ndarray:
    """All frames of a fully read dataset as stored values, via pydicom.

    Raises :class:`MissingDecoderError` naming the transfer syntax and the package to install
    when no decoder is available, :class:`DicomError` naming the decoder's own reason when
    decoding fails (never blaming a missing package when a decoder is installed). Lets
    ``MemoryError`` through for the caller, which knows the memory budget. pydicom's warnings
    and log records are held (see :class:`PydicomMessages`), never printed.
    """
    meta = getattr(ds, "file_meta", None)
    uid = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    if uid:
        ensure_decoder(uid, path)
    failure: BaseException | None = None
    with PydicomMessages(path) as said, _NativeStderr() as native:
        try:
            array = ds.pixel_array
        except MemoryError:
            raise
        except Exception as exc:  # pydicom and its plugins raise many types on bad data
            failure = exc
        except BaseException as exc:
            if not _is_panic(exc):
                raise
            failure = exc
    if native.text.strip():
        log.debug("%s: the decoder wrote: %s", path, native.text.strip()[:2000])
    if failure is None:
        said.forward()
        return array
    text = " ".join(str(failure).split())
    if isinstance(failure, (NotImplementedError, ImportError)) and any(
        word in text.lower() for word in ("handler", "plugin", "dependenc", "install")
    ):
        # pydicom 2.4: a handler is installed but none supports this file's encoding
        raise MissingDecoderError(
            f"no installed decoder handles this file's '{transfer_syntax_name(uid)}' pixel data ({text[:300]})",
            path=path,
            hint=f"pip install {package_for(uid)}",
        ) from failure
    name = f"'{transfer_syntax_name(uid)}' ({uid})" if uid else "its transfer syntax"
    cause = f"{type(failure).__name__}: {text[:500]}"
    said_more = [m for m in said.messages if m[:80] not in text]
    if said_more:
        cause += f"; pydicom also said: {said_more[-1][:200]}"
    raise DicomError(
        f"pixel data cannot be decoded as {name} by the installed decoder ({_plugins(uid)}): {cause}",
        path=path,
        hint="the file's pixel data is damaged or does not match its header",
    ) from failure


# ------------------------------------------------------------ what a compressed stream holds
# These read only the first bytes of the encapsulated data, so that a header declaring an
# image its compressed data cannot hold is refused before anything is decoded or allocated.
RLE_LOSSLESS = "1.2.840.10008.1.2.5"
RLE_MAX_RATIO = 64
"""An RLE packet of 2 bytes (a replicate run) expands to at most 128 bytes (PS3.5 G.3.1)."""
DEFLATE_MAX_RATIO = 1032
"""zlib's deflate expands at most about 1032:1 (a run of 258 bytes in about 2 bits)."""

JPEG_LOSSLESS = {"1.2.840.10008.1.2.4.57", "1.2.840.10008.1.2.4.70"}
_JPEG = {f"1.2.840.10008.1.2.4.{n}" for n in (*range(50, 67), 70)}  # baseline ... lossless SV1
_JPEG_LS = {"1.2.840.10008.1.2.4.80", "1.2.840.10008.1.2.4.81"}
_J2K = {"1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91", "1.2.840.10008.1.2.4.92", "1.2.840.10008.1.2.4.93"}
_J2K |= set(_HTJ2K)
# Start of frame markers of the JPEG family (not DHT C4, JPG C8, DAC CC); F7 is JPEG-LS's SOF55.
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF, 0xF7}
_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # TEM and RSTn carry no length
CODESTREAM_PROBE_BYTES = 65536
"""How much of the first fragment is searched for the image size (SOF / SIZ marker)."""


@dataclass(frozen=True)
class Codestream:
    """The image size a compressed frame declares in its own header (SOF or SIZ marker).

    ``rows`` is None when a JPEG leaves its height to a later DNL marker.
    """

    marker: str  # "SOF3", "SOF55", "SIZ"...
    rows: int | None
    columns: int
    components: int
    precision: int


def _jpeg_size(data: bytes) -> Codestream | None:
    """The SOF (or JPEG-LS SOF55) of a JPEG stream starting at SOI; None if not found in ``data``."""
    if data[:2] != b"\xff\xd8":
        return None
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return None  # not a marker where one must be: leave it to the decoder
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in _STANDALONE:
            pos += 2
            continue
        if marker in (0xD9, 0xDA):  # EOI or SOS before any SOF
            return None
        (length,) = struct.unpack(">H", data[pos + 2 : pos + 4])
        if marker in _SOF:
            if pos + 10 > len(data) or length < 8:
                return None
            precision, rows, columns, components = struct.unpack(">BHHB", data[pos + 4 : pos + 10])
            name = "SOF55" if marker == 0xF7 else f"SOF{marker - 0xC0}"
            return Codestream(name, rows or None, columns, components, precision)
        pos += 2 + length
    return None


def _j2k_size(data: bytes) -> Codestream | None:
    """The SIZ marker of a JPEG 2000 codestream (bare, or inside a JP2 file's boxes)."""
    start = 0 if data[:4] == b"\xff\x4f\xff\x51" else data.find(b"\xff\x4f\xff\x51")
    if start < 0 or start + 42 > len(data):
        return None
    xsiz, ysiz, xosiz, yosiz = struct.unpack(">IIII", data[start + 8 : start + 24])
    (components,) = struct.unpack(">H", data[start + 40 : start + 42])
    precision = (data[start + 42] & 0x7F) + 1 if start + 43 <= len(data) else 0
    if xsiz < xosiz or ysiz < yosiz:
        return Codestream("SIZ", 0, 0, components, precision)
    return Codestream("SIZ", ysiz - yosiz, xsiz - xosiz, components, precision)


def codestream_size(uid: str, data: bytes) -> Codestream | None:
    """The image size the first bytes of a compressed frame declare, for the JPEG family,
    JPEG-LS and JPEG 2000 / HTJ2K; None for other syntaxes or when no size marker is found."""
    if uid in _JPEG or uid in _JPEG_LS:
        return _jpeg_size(data)
    if uid in _J2K:
        return _j2k_size(data)
    return None


@dataclass(frozen=True)
class Fragments:
    """The items of encapsulated pixel data: the Basic Offset Table, then the fragments.

    Offsets are byte offsets of each fragment's value in the file. ``complete`` is False when
    the item walk ended without a sequence delimiter (the file ends, or an item is not one).
    """

    offset_table_length: int
    offsets: tuple[int, ...]
    lengths: tuple[int, ...]
    complete: bool

    @property
    def total(self) -> int:
        return sum(self.lengths)


def read_fragments(f, value_offset: int, size: int, big_endian: bool = False, limit: int = 1 << 20) -> Fragments:
    """Walk the items of encapsulated pixel data from ``value_offset`` (item headers only).

    ``f`` is a binary file, ``size`` its length; at most ``limit`` items are listed.
    """
    order = ">HHI" if big_endian else "<HHI"
    pos = value_offset
    bot = -1
    offsets: list[int] = []
    lengths: list[int] = []
    while len(offsets) < limit:
        f.seek(pos)
        head = f.read(8)
        if len(head) < 8:
            break
        group, elem, length = struct.unpack(order, head)
        if (group, elem) == (0xFFFE, 0xE0DD):
            return Fragments(max(bot, 0), tuple(offsets), tuple(lengths), True)
        if (group, elem) != (0xFFFE, 0xE000) or length == 0xFFFFFFFF or pos + 8 + length > size:
            break
        if bot < 0:
            bot = length
        else:
            offsets.append(pos + 8)
            lengths.append(length)
        pos += 8 + length
    return Fragments(max(bot, 0), tuple(offsets), tuple(lengths), False)


def rle_segments(header: bytes, fragment_length: int) -> list[int] | None:
    """Lengths of the segments an RLE frame's 64-byte header lists; None when it is malformed."""
    if len(header) < 64:
        return None
    values = struct.unpack("<16I", header[:64])
    n = values[0]
    if not 1 <= n <= 15:
        return None
    offsets = [*values[1 : n + 1], fragment_length]
    if offsets[0] != 64 or any(b < a for a, b in zip(offsets, offsets[1:])):
        return None
    return [b - a for a, b in zip(offsets, offsets[1:])]
