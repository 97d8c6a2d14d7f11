"""Draw Resources/Icons/MedPrep.png: a stack of three CT-like slices, 128 x 128 RGBA.

Run ``python Resources/Icons/draw_icon.py`` to regenerate the icon. Needs only numpy; the PNG
is written by a minimal encoder (zlib-compressed scanlines, filter 0) so no imaging package
is required.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

SIZE = 128
SUPERSAMPLE = 4
ACCENT = np.array([0.16, 0.47, 0.86])  # blue slice edges


def _slice_texture(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Grey values (0..1) of a stylised axial CT slice at slice coordinates u, v in [0, 1]."""
    grey = np.full(u.shape, 0.06)
    body = ((u - 0.5) / 0.44) ** 2 + ((v - 0.5) / 0.36) ** 2
    grey[body < 1] = 0.5
    grey[(body < 1) & (body > 0.86)] = 0.62  # subcutaneous rim
    for centre, tilt in ((0.31, 1.0), (0.69, -1.0)):  # lungs, slightly tilted, nearly touching
        du, dv = u - centre, v - 0.46
        a, b = du * 0.97 + tilt * dv * 0.24, -tilt * du * 0.24 + dv * 0.97
        grey[(a / 0.15) ** 2 + (b / 0.24) ** 2 < 1] = 0.1
    grey[((u - 0.55) / 0.11) ** 2 + ((v - 0.55) / 0.1) ** 2 < 1] = 0.68  # heart
    grey[((u - 0.5) / 0.055) ** 2 + ((v - 0.79) / 0.05) ** 2 < 1] = 0.98  # vertebra
    grey[((u - 0.5) / 0.035) ** 2 + ((v - 0.3) / 0.03) ** 2 < 1] = 0.9  # sternum
    return grey


def draw(size: int = SIZE) -> np.ndarray:
    """The icon as a (size, size, 4) uint8 RGBA array."""
    n = size * SUPERSAMPLE
    y, x = (np.indices((n, n)) + 0.5) / SUPERSAMPLE  # pixel centres in output pixels
    rgba = np.zeros((n, n, 4))
    e1 = np.array([74.0, 16.0])  # slice edge along u, in pixels (x, y)
    e2 = np.array([-26.0, 34.0])  # slice edge along v
    inverse = np.linalg.inv(np.column_stack([e1, e2]))
    for number in range(3):  # back (top) to front (bottom), 20 pixels apart
        corner = np.array([40.0, 19.0 + 20.0 * number])
        rel = np.stack([x - corner[0], y - corner[1]], axis=-1) @ inverse.T
        u, v = rel[..., 0], rel[..., 1]
        inside = (u >= 0) & (u <= 1) & (v >= 0) & (v <= 1)
        edge = inside & ((u < 0.035) | (u > 0.965) | (v < 0.05) | (v > 0.95))
        grey = _slice_texture(u, v)
        fade = 0.55 + 0.225 * number  # back slices dimmer
        colour = np.repeat((grey * fade)[..., None], 3, axis=-1)
        colour[edge] = ACCENT
        rgba[inside, :3] = colour[inside]
        rgba[inside, 3] = 1.0
    small = rgba.reshape(size, SUPERSAMPLE, size, SUPERSAMPLE, 4).mean(axis=(1, 3))
    # colours were painted premultiplied by coverage through the mean; undo it for PNG
    alpha = small[..., 3:4]
    small[..., :3] = np.where(alpha > 0, small[..., :3] / np.maximum(alpha, 1e-6), 0)
    return np.clip(np.round(small * 255), 0, 255).astype(np.uint8)


def png_bytes(rgba: np.ndarray) -> bytes:
    """Encode an (h, w, 4) uint8 array as a PNG (8-bit RGBA, no interlace)."""
    height, width, _ = rgba.shape

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    scanlines = b"".join(b"\x00" + rgba[row].tobytes() for row in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(scanlines, 9))
        + chunk(b"IEND", b"")
    )


if __name__ == "__main__":
    target = Path(__file__).with_name("MedPrep.png")
    target.write_bytes(png_bytes(draw()))
    print(f"wrote {target}")
