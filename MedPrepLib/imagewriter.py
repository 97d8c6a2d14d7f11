"""Writing image files: the header from SimpleITK, the voxels streamed by MedPrep.

SimpleITK's writers are one long C++ call: Ctrl-C or SIGTERM waits until it ends (seconds for
a compressed CT), and its NIfTI writer reports *no error* when the disk fills up (it prints
``** ERROR: NWAD`` and leaves a truncated file). So MedPrep lets SimpleITK write only the
header, for a one-voxel image with the same pixel type, spacing, origin and direction, puts the
real size into it, and writes the voxels itself in chunks: interruptible between chunks, every
OS error a :class:`~MedPrepLib.errors.OutputError`, and the result byte-identical to what
SimpleITK writes uncompressed (``Testing/test_imagewriter.py`` checks this for every format).

Only the size fields of these headers depend on the image size (checked by the tests):

* NIfTI-1 (``.nii``, ``.nii.gz``): ``dim[1..n]`` (int16 at byte 42 + 2k); voxels follow at
  ``vox_offset``, x fastest — the C order of a (z, y, x) array, or (t, z, y, x) for 4D.
* NRRD (``.nrrd``, ``.nhdr`` + data file): the ``sizes:`` line; gzip encoding.
* MetaImage (``.mha``, ``.mhd`` + data file): ``DimSize`` and, compressed, ``CompressedDataSize``
  (a zlib stream).

Compression is deflate level :data:`COMPRESS_LEVEL` with a zero timestamp and no file name, so
the same volume always gives the same bytes (an interrupted export that is resumed ends
byte-identical). The deflate engine is ISA-L (the ``isal`` package, a dependency where it has
wheels: about four times zlib's speed at level 1, for a few percent of size) and the standard
library's zlib otherwise; both write standard gzip/zlib streams that every reader takes, but
their bytes differ, so :func:`deflate_engine` names the one in use (export provenance records it).
Large files go to disk past the page cache where the filesystem allows (:mod:`.directio`).
"""

from __future__ import annotations

import os
import re
import struct
import zlib
from pathlib import Path

import numpy as np

from .atomic import output_error, publish, staging_folder, write_chunks
from .directio import open_for_writing
from .errors import InputError
from .volume import Volume

COMPRESS_LEVEL = 1
"""Deflate level of ``.nii.gz`` / compressed NRRD and MetaImage: level 1 (as nibabel) compresses a
CT about as well as level 6 within a few percent, several times faster."""


def _deflate():
    try:
        from isal import isal_zlib

        return isal_zlib
    except ImportError:  # no wheel for this platform
        return zlib


_DEFLATE = _deflate()


def deflate_engine() -> str:
    """``"isal <version>"`` or ``"zlib <version>"``: what compresses this process's image files."""
    if _DEFLATE is zlib:
        return f"zlib {zlib.ZLIB_VERSION}"
    import isal

    return f"isal {isal.__version__}"


def _compressor(level: int, wbits: int):
    """A deflate compressor: ``wbits`` 31 for gzip (``.nii.gz``, NRRD gzip), 15 for zlib (MetaImage)."""
    return _DEFLATE.compressobj(level, _DEFLATE.DEFLATED, wbits)

_NIFTI1_MAX_DIM = 32767


def _sitk_header_image(array: np.ndarray, spacing, origin, direction, vector: bool):
    """A one-voxel SimpleITK image with ``array``'s pixel type and the given geometry."""
    import SimpleITK as sitk

    shape = (1,) * (array.ndim - 1) + ((array.shape[-1],) if vector else (1,))
    tiny = sitk.GetImageFromArray(np.zeros(shape, array.dtype), isVector=vector)
    tiny.SetSpacing(tuple(float(s) for s in spacing))
    tiny.SetOrigin(tuple(float(o) for o in origin))
    tiny.SetDirection(tuple(float(d) for d in np.asarray(direction).ravel()))
    return tiny


def _layout(volume: Volume, suffix: str, time_spacing: float):
    """(array in file order, spacing, origin, direction, vector?, sizes in file order)."""
    g = volume.geometry
    array = volume.array
    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    if array.dtype.byteorder == ">" or (array.dtype.byteorder == "=" and not np.little_endian):
        array = array.astype(array.dtype.newbyteorder("<"))
    if array.ndim == 4 and suffix in (".nii", ".nii.gz"):
        # channels as the 4th NIfTI dimension (x, y, z, t): what every NIfTI tool expects
        direction = np.eye(4)
        direction[:3, :3] = g.direction
        data = np.ascontiguousarray(np.moveaxis(array, 3, 0))
        return data, (*g.spacing, time_spacing), (*g.origin, 0.0), direction, False, (*g.size, array.shape[3])
    data = np.ascontiguousarray(array)
    return data, g.spacing, g.origin, g.direction, array.ndim == 4, tuple(g.size)


def _header_from_sitk(tiny, staged_dir: Path, path: Path) -> dict[str, bytes]:
    """The files SimpleITK writes for the one-voxel image, by name (written uncompressed)."""
    import SimpleITK as sitk

    probe = staged_dir / "header"
    probe.mkdir()
    try:
        sitk.WriteImage(tiny, str(probe / path.name), False)
    except RuntimeError as exc:
        raise InputError(f"cannot write image: {str(exc).strip().splitlines()[-1]}", path=path) from None
    return {p.name: p.read_bytes() for p in probe.iterdir()}


def _replace_line(text: bytes, key: bytes, value: bytes) -> bytes:
    pattern = re.compile(rb"^" + re.escape(key) + rb".*$", re.M)
    if not pattern.search(text):
        raise ValueError(f"no {key!r} line")
    return pattern.sub(lambda _: key + value, text, count=1)


def write_volume_file(
    volume: Volume,
    path: str | os.PathLike,
    suffix: str,
    *,
    compress: bool,
    time_spacing: float = 1.0,
    progress=None,
    hasher=None,
) -> Path:
    """Write ``volume`` to ``path`` (format ``suffix``), staged and renamed; see the module doc.

    ``hasher`` (a :mod:`hashlib` object) receives the bytes of a one-file format as they are
    written (``.nii``, ``.nii.gz``, ``.nrrd``, ``.mha``); it is not used for the two-file ones.

    ``time_spacing`` is the 4th NIfTI pixdim of a (z, y, x, t) volume (seconds or any unit the
    source had; 1.0 when unknown). ``progress`` (callback or Progress) hears of every chunk and
    may cancel between two.
    """
    from .progress import as_progress

    prog = as_progress(progress)
    path = Path(path)
    data, spacing, origin, direction, vector, sizes = _layout(volume, suffix, time_spacing)
    tiny = _sitk_header_image(data, spacing, origin, direction, vector)
    with staging_folder(path.parent) as tmp:
        # a .nii.gz name would make SimpleITK gzip the header: ask for the .nii header instead
        header_path = path.with_name(path.name[:-3]) if suffix == ".nii.gz" else path
        head = _header_from_sitk(tiny, tmp, header_path)[header_path.name]
        level = COMPRESS_LEVEL
        staged: list[Path] = []
        if suffix in (".nii", ".nii.gz"):
            if max(sizes) > _NIFTI1_MAX_DIM or struct.unpack("<i", head[:4])[0] != 348:
                raise InputError(f"image too large for NIfTI-1 (size {sizes})", path=path, hint="write .nrrd or .mha")
            vox_offset = int(struct.unpack("<f", head[108:112])[0])
            header = bytearray(head[:vox_offset])
            struct.pack_into(f"<{len(sizes)}h", header, 42, *sizes)
            staged.append(_stream(tmp / path.name, [bytes(header)], data, path, gzip="all" if suffix == ".nii.gz" else "", level=level, progress=prog, hasher=hasher))
        elif suffix in (".nrrd", ".nhdr"):
            size_text = " ".join(map(str, ((data.shape[-1],) if vector else ()) + sizes)).encode()
            if suffix == ".nrrd":
                header = head[: head.index(b"\n\n") + 2]
            else:
                header = head
            header = _replace_line(header, b"sizes: ", size_text)
            if compress:
                header = _replace_line(header, b"encoding: ", b"gzip")
            if suffix == ".nrrd":
                gz = "data" if compress else ""
                staged.append(_stream(tmp / path.name, [header], data, path, gzip=gz, level=level, progress=prog, hasher=hasher))
            else:
                data_name = path.name[: -len(suffix)] + (".raw.gz" if compress else ".raw")
                header = _replace_line(header, b"data file: ", data_name.encode())
                gz = "all" if compress else ""
                staged.append(_stream(tmp / data_name, [], data, path.with_name(data_name), gzip=gz, level=level, progress=prog))
                staged.append(_stream(tmp / path.name, [header], None, path))
        elif suffix in (".mha", ".mhd"):
            size_text = " ".join(map(str, sizes)).encode()
            if suffix == ".mha":
                end = head.index(b"ElementDataFile = LOCAL\n") + len(b"ElementDataFile = LOCAL\n")
                header = head[:end]
            else:
                header = head
            header = _replace_line(header, b"DimSize = ", size_text)
            chunks: list[bytes] | None = None
            if compress:
                compressor = _compressor(level, 15)
                view = memoryview(data).cast("B")
                chunks = []
                for i in range(0, len(view), 4 << 20):
                    prog.update(f"compressing {path.name}", i / max(len(view), 1))
                    chunks.append(compressor.compress(view[i : i + (4 << 20)]))
                chunks.append(compressor.flush())
                n = sum(len(c) for c in chunks)
                header = _replace_line(header, b"CompressedData = ", b"True\nCompressedDataSize = " + str(n).encode())
            payload = None if compress else data
            if suffix == ".mha":
                staged.append(_stream(tmp / path.name, [header, *(chunks or [])], payload, path, progress=prog, hasher=hasher))
            else:
                data_name = path.name[: -len(suffix)] + (".zraw" if compress else ".raw")
                header = _replace_line(header, b"ElementDataFile = ", data_name.encode())
                staged.append(_stream(tmp / data_name, chunks or [], payload, path.with_name(data_name), progress=prog))
                staged.append(_stream(tmp / path.name, [header], None, path))
        else:  # pragma: no cover - imageio checks the suffix first
            raise InputError(f"cannot write format '{suffix}'", path=path)
        publish(staged, path.parent)
    prog.update(f"writing {path.name}", 1.0)
    return path


class _Hashing:
    """A binary file that feeds what is written to it to a hash as well."""

    def __init__(self, f, hasher):
        self._f, self._hasher = f, hasher

    def write(self, data) -> int:
        self._hasher.update(data)
        return self._f.write(data)

    def flush(self) -> None:
        self._f.flush()


def _stream(
    staged: Path,
    heads: list[bytes],
    data: np.ndarray | None,
    target: Path,
    *,
    gzip: str = "",
    level: int = 1,
    progress=None,
    hasher=None,
) -> Path:
    """Write ``heads`` then ``data`` to ``staged``; OS errors name ``target``. ``hasher`` (a
    :mod:`hashlib` object) is fed every byte written, so the file's digest costs no second read.

    ``gzip``: ``""`` nothing compressed, ``"data"`` the data as one gzip stream after the raw
    heads (NRRD), ``"all"`` the whole file one gzip stream (``.nii.gz``).
    """
    try:
        with open_for_writing(staged, data.nbytes if data is not None else 0) as raw:  # large: past the page cache
            f = _Hashing(raw, hasher) if hasher is not None else raw
            compressor = _compressor(level, 31) if gzip else None
            for head in heads:
                write_chunks(f, compressor.compress(head) if gzip == "all" else head, target)
            if data is not None:
                write_chunks(f, data, target, compressor=compressor, progress=progress)
            elif compressor is not None:
                write_chunks(f, compressor.flush(), target)
    except OSError as exc:
        raise output_error(exc, target) from None
    return staged
