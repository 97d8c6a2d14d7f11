"""Decoding pixel data through pydicom's handlers (pydicom 2.4 and 3.x), with a clear error
naming the transfer syntax and the package to install when no decoder is available.

Returned arrays hold *stored* values (no Modality LUT), shape (rows, cols) for one frame or
(frames, rows, cols) for several.
"""

from __future__ import annotations

import numpy as np

from ..errors import DicomError, MissingDecoderError

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


def decode_dataset(ds, path: str) -> np.ndarray:
    """All frames of a fully read dataset as stored values, via pydicom.

    Raises :class:`MissingDecoderError` naming the transfer syntax and the package to install
    when no decoder is available, :class:`DicomError` when decoding fails.
    """
    meta = getattr(ds, "file_meta", None)
    uid = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    if uid:
        ensure_decoder(uid, path)
    try:
        return ds.pixel_array
    except (NotImplementedError, RuntimeError, ImportError) as exc:
        text = str(exc).lower()
        if uid and ("handler" in text or "plugin" in text or "decoder" in text or "dependenc" in text):
            raise _missing(uid, path) from exc
        raise DicomError(f"pixel data cannot be decoded: {exc}", path=path) from exc
    except Exception as exc:
        raise DicomError(f"pixel data cannot be decoded ({type(exc).__name__}: {exc})", path=path) from exc
