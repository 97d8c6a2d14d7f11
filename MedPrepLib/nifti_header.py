"""Reading the two NIfTI-1 spatial transforms (qform and sform) straight from the header.

ITK (and so SimpleITK) silently picks one of the two when a file carries both; when they
disagree, the other is lost without a word. MedPrep reads both from the 348-byte header and
reports the disagreement, so a user can see that two tools may place the same file in two
different places.

Both affines map a voxel index (i, j, k) to **RAS** mm, as the NIfTI standard defines.
"""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class NiftiTransforms:
    """The spatial transforms a NIfTI-1 header declares (RAS, index (i, j, k) to mm)."""

    qform_code: int
    sform_code: int
    qform: np.ndarray | None  # 4x4, None when qform_code == 0
    sform: np.ndarray | None  # 4x4, None when sform_code == 0

    def disagreement(self) -> tuple[float, float] | None:
        """(largest rotation/zoom difference, largest translation difference in mm), or None
        when the file does not carry both transforms."""
        if self.qform is None or self.sform is None:
            return None
        d = np.abs(self.qform - self.sform)
        return float(d[:3, :3].max()), float(d[:3, 3].max())

    def disagree(self, *, atol_matrix: float = 1e-4, atol_mm: float = 1e-3) -> bool:
        d = self.disagreement()
        return d is not None and (d[0] > atol_matrix or d[1] > atol_mm)


def _quaternion_affine(b, c, d, qx, qy, qz, pixdim) -> np.ndarray:
    """The qform affine as the NIfTI-1 standard (and nibabel) computes it."""
    a2 = 1.0 - (b * b + c * c + d * d)
    a = np.sqrt(a2) if a2 > 1e-7 else 0.0
    r = np.array(
        [
            [a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
            [2 * (b * c + a * d), a * a + c * c - b * b - d * d, 2 * (c * d - a * b)],
            [2 * (b * d - a * c), 2 * (c * d + a * b), a * a + d * d - c * c - b * b],
        ]
    )
    qfac = -1.0 if pixdim[0] < 0 else 1.0
    zooms = np.array([pixdim[1], pixdim[2], pixdim[3] * qfac])
    zooms[zooms == 0] = 1.0
    aff = np.eye(4)
    aff[:3, :3] = r * zooms
    aff[:3, 3] = (qx, qy, qz)
    return aff


def read_nifti_transforms(path: str | Path) -> NiftiTransforms | None:
    """Both transforms of a .nii / .nii.gz file, or None when it is not a NIfTI-1 file."""
    path = Path(path)
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            raw = f.read(348)
    except OSError:
        return None
    if len(raw) < 348:
        return None
    for endian in ("<", ">"):
        if struct.unpack(endian + "i", raw[:4])[0] == 348:
            break
    else:
        return None
    if raw[344:347] not in (b"n+1", b"ni1"):
        return None  # Analyze 7.5: no qform/sform
    pixdim = struct.unpack(endian + "8f", raw[76:108])
    qform_code, sform_code = struct.unpack(endian + "hh", raw[252:256])
    b, c, d, qx, qy, qz = struct.unpack(endian + "6f", raw[256:280])
    srow = np.array(struct.unpack(endian + "12f", raw[280:328]), dtype=np.float64).reshape(3, 4)
    qform = _quaternion_affine(b, c, d, qx, qy, qz, pixdim) if qform_code > 0 else None
    sform = None
    if sform_code > 0:
        sform = np.eye(4)
        sform[:3] = srow
    return NiftiTransforms(int(qform_code), int(sform_code), qform, sform)


_FLOAT_DATATYPES = {16: "f4", 64: "f8", 32: "c8", 1792: "c16"}


def _float_data_layout(raw: bytes):
    """(endian, dtype, dims, vox_offset, scl_slope, scl_inter) of a one-file float NIfTI, else None."""
    if len(raw) < 348 or raw[344:347] != b"n+1":
        return None  # not NIfTI-1, or a two-file pair (ITK keeps NaN there)
    endian = "<" if struct.unpack("<i", raw[:4])[0] == 348 else ">"
    (datatype,) = struct.unpack(endian + "h", raw[70:72])
    if datatype not in _FLOAT_DATATYPES:
        return None
    dims = struct.unpack(endian + "8h", raw[40:56])
    ndim = min(max(int(dims[0]), 1), 7)
    shape = tuple(max(int(d), 1) for d in dims[1 : 1 + ndim])
    (vox_offset,) = struct.unpack(endian + "f", raw[108:112])
    slope, inter = struct.unpack(endian + "ff", raw[112:120])
    return np.dtype(endian + _FLOAT_DATATYPES[datatype]), shape, int(vox_offset), slope, inter


def count_nonfinite_voxels(path: str | Path) -> int:
    """Number of NaN/Inf voxels stored in a one-file floating-point NIfTI-1 (0 for integers).

    ITK's NIfTI reader replaces NaN by 0 without a word, so this reads the stored values
    themselves (streaming, for .nii.gz) instead of trusting the decoded image.
    """
    path = Path(path)
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as f:
        layout = _float_data_layout(f.read(352))
        if layout is None:
            return 0
        dtype, shape, offset, _, _ = layout
        f.seek(offset)
        bad, remaining, chunk = 0, int(np.prod(shape)), 1 << 22
        while remaining > 0:
            buf = f.read(min(chunk, remaining) * dtype.itemsize)
            if not buf:
                break
            values = np.frombuffer(buf[: len(buf) - len(buf) % dtype.itemsize], dtype=dtype)
            bad += values.size - int(np.count_nonzero(np.isfinite(values)))
            remaining -= values.size
        return bad


def read_float_nifti_values(path: str | Path) -> np.ndarray | None:
    """The stored values of a one-file float NIfTI, scaled, as a (..., z, y, x) array — with
    NaN and Inf kept (ITK turns NaN into 0). None for other files."""
    path = Path(path)
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    with opener(path, "rb") as f:
        layout = _float_data_layout(f.read(352))
        if layout is None:
            return None
        dtype, shape, offset, slope, inter = layout
        f.seek(offset)
        values = np.frombuffer(f.read(int(np.prod(shape)) * dtype.itemsize), dtype=dtype).astype(dtype.newbyteorder("="))
    values = values.reshape(shape[::-1])  # NIfTI is x-fastest: reversed shape is (.., z, y, x)
    if slope not in (0.0, 1.0) or inter != 0.0:
        values = values * (slope if slope != 0 else 1.0) + inter
    return values
