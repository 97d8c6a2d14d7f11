"""Siemens mosaic: many slices tiled into one 2D DICOM image, and how to undo it.

A mosaic file stores ``n`` slices of ``r x c`` pixels as a grid of ``m x m`` tiles
(``m = ceil(sqrt(n))``) in one ``(m*r) x (m*c)`` image, row-major, unused tiles blank.
Its ImagePositionPatient is that of the *whole* mosaic's first pixel, as if the mosaic were
one large slice; the first tile's true position is found by moving half the difference in
size back along the row and column directions (the correction used by dcm2niix and nibabel).
Slices follow the slice normal, whose sign comes from the CSA header's ``SliceNormalVector``
(the cross product of the ImageOrientationPatient rows gives only the axis).

All positions are LPS mm; pixel spacing is DICOM's (row spacing, column spacing).
"""

from __future__ import annotations

import math
import struct

import numpy as np

from .stack import FrameGeometry

_CSA_MAX_ITEMS = 1000


def parse_csa(data: bytes) -> dict[str, list[str]]:
    """Parse a Siemens CSA header (SV10 "CSA2" or the older "CSA1") into name -> string items.

    Returns an empty dict for anything that does not look like a CSA header.
    """
    if not data or len(data) < 16:
        return {}
    out: dict[str, list[str]] = {}
    try:
        if data[:4] == b"SV10":
            ptr, kind = 8, 2
        else:
            ptr, kind = 0, 1
        n_tags = struct.unpack_from("<I", data, ptr)[0]
        ptr += 8
        if not 0 < n_tags <= _CSA_MAX_ITEMS:
            return {}
        tag0_items = 0
        for tag_no in range(n_tags):
            name, vm, _vr, _dt, n_items, _x = struct.unpack_from("<64si4s3i", data, ptr)
            ptr += 84
            if tag_no == 1:
                tag0_items = n_items
            if not 0 <= n_items <= _CSA_MAX_ITEMS:
                return out
            name = name.split(b"\0", 1)[0].decode("latin-1")
            n_values = n_items if vm == 0 else vm
            items: list[str] = []
            for item_no in range(n_items):
                x0, x1, _x2, _x3 = struct.unpack_from("<4i", data, ptr)
                ptr += 16
                item_len = x1 if kind == 2 else x0 - tag0_items
                if item_len < 0 or ptr + item_len > len(data):
                    break
                if item_no < n_values:
                    text = data[ptr : ptr + item_len].split(b"\0", 1)[0].decode("latin-1").strip()
                    if text:
                        items.append(text)
                ptr += item_len + (-item_len % 4)
            out[name] = items
    except struct.error:
        return out
    return out


def _csa_floats(csa: dict[str, list[str]], name: str) -> list[float] | None:
    try:
        values = [float(v) for v in csa.get(name, [])]
    except ValueError:
        return None
    return values or None


def _private(ds, group: int, creator: str, offset: int):
    """Value of a private element by its creator (None when absent)."""
    for block in range(0x10, 0x100):
        c = ds.get((group, block))
        if c is None:
            continue
        if str(c.value).strip().upper() == creator:
            elem = ds.get((group, (block << 8) | offset))
            return None if elem is None else elem.value
    return None


def csa_image_header(ds) -> dict[str, list[str]]:
    """The CSA image header (0029,xx10) of a Siemens dataset, parsed (empty when absent)."""
    value = _private(ds, 0x0029, "SIEMENS CSA HEADER", 0x10)
    if isinstance(value, (bytes, bytearray)):
        return parse_csa(bytes(value))
    return {}


def is_mosaic(ds) -> bool:
    """True for a Siemens mosaic image (ImageType contains MOSAIC)."""
    image_type = [str(v).upper() for v in (ds.get("ImageType") or [])]
    return "MOSAIC" in image_type


def number_of_tiles(ds, csa: dict[str, list[str]] | None = None) -> int | None:
    """NumberOfImagesInMosaic from (0019,xx0A) or the CSA image header (None when unknown)."""
    value = _private(ds, 0x0019, "SIEMENS MR HEADER", 0x0A)
    if value is not None:
        try:
            return int(value if not isinstance(value, (bytes, bytearray)) else struct.unpack("<H", value[:2])[0])
        except (TypeError, ValueError, struct.error):
            pass
    csa = csa if csa is not None else csa_image_header(ds)
    values = _csa_floats(csa, "NumberOfImagesInMosaic")
    return int(values[0]) if values else None


def tile_grid(n_tiles: int) -> int:
    """Tiles per row (and column) of a mosaic holding ``n_tiles`` slices."""
    return int(math.ceil(math.sqrt(n_tiles)))


def mosaic_frames(ds) -> tuple[FrameGeometry, ...] | None:
    """Geometry of each slice of a mosaic, or None when the mosaic cannot be described.

    Slice ``k`` sits at ``p0 + k * dz * n`` where ``p0`` is the corrected first-tile position,
    ``n`` the signed slice normal and ``dz`` SpacingBetweenSlices (else SliceThickness), mm.
    """
    csa = csa_image_header(ds)
    n = number_of_tiles(ds, csa)
    ipp = ds.get("ImagePositionPatient")
    iop = ds.get("ImageOrientationPatient")
    ps = ds.get("PixelSpacing")
    if not n or ipp is None or iop is None or ps is None or len(ipp) != 3 or len(iop) != 6:
        return None
    rows, cols = int(ds.Rows), int(ds.Columns)
    m = tile_grid(n)
    if rows % m or cols % m:
        return None
    row_dir = np.array([float(v) for v in iop[:3]])
    col_dir = np.array([float(v) for v in iop[3:]])
    row_spacing, col_spacing = float(ps[0]), float(ps[1])
    tile_rows, tile_cols = rows // m, cols // m
    p0 = (
        np.array([float(v) for v in ipp])
        + row_dir * col_spacing * (cols - tile_cols) / 2.0
        + col_dir * row_spacing * (rows - tile_rows) / 2.0
    )
    normal = np.cross(row_dir, col_dir)
    normal /= np.linalg.norm(normal)
    csa_normal = _csa_floats(csa, "SliceNormalVector")
    if csa_normal and len(csa_normal) == 3 and float(np.dot(csa_normal, normal)) < 0:
        normal = -normal
    dz = ds.get("SpacingBetweenSlices") or ds.get("SliceThickness")
    if dz is None or float(dz) <= 0:
        return None
    dz = float(dz)
    orientation = tuple(float(v) for v in iop)
    return tuple(
        FrameGeometry(
            position=tuple(float(v) for v in p0 + k * dz * normal),
            orientation=orientation,
            pixel_spacing=(row_spacing, col_spacing),
            frame_index=k,
        )
        for k in range(n)
    )


def demosaic(image: np.ndarray, n_tiles: int) -> np.ndarray:
    """Cut a 2D mosaic image (rows, cols) into its slices, shape (n_tiles, tile_rows, tile_cols)."""
    m = tile_grid(n_tiles)
    rows, cols = image.shape
    tr, tc = rows // m, cols // m
    tiles = image.reshape(m, tr, m, tc).transpose(0, 2, 1, 3).reshape(m * m, tr, tc)
    return tiles[:n_tiles]
