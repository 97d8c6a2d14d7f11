"""Per-case QC montages: axial, coronal and sagittal slices through the label, as one PNG.

The three slices go through one point, the **crosshair** (:func:`crosshair`): the centroid of the
label's non-zero voxels, or the centre of the field of view when there is no label or it is
empty. The centroid of a label that is not convex can lie outside it; the slices still go through
it, so every panel shows where the label's mass is.

Display convention (radiological, the same for every input orientation): the volume is viewed
through its closest LPS-ordered axes (permuted and flipped, never resampled: an oblique volume is
shown in its own slice planes), and

* axial: patient **right on the image left**, anterior at the top (viewed from the feet);
* coronal: patient right on the image left, superior at the top (viewed from the front);
* sagittal: **anterior on the image left**, superior at the top (viewed from the patient's left).

The panels are in physical proportions: one millimetre is the same number of pixels along every
axis of every panel (the longest field of view, in mm, spans ``size`` pixels), so anisotropic
voxels do not squash the anatomy. Letters in the margins (R/L, A/P, S/I) name the edges.

Intensities are windowed for the modality: ``CT`` at a soft-tissue window (:data:`CT_WINDOW`,
W400/L40 HU); any other modality from the 1st to the 99th percentile of the finite voxels (of a
regular sample of at most about a million voxels). A multi-channel volume shows its first
channel. The label is drawn as a one-pixel outline per label value, each value in its own colour
(:func:`label_colour`; the colours are never grey, so outline pixels are told from the image).

The PNG bytes depend only on the input voxels, geometry, ``modality`` and ``size`` (and the
Pillow version): no time stamp or text chunk is written. Needs Pillow (the ``qc`` extra).

>>> import numpy as np
>>> from MedPrepLib.volume import Volume
>>> ct = Volume(np.full((8, 16, 16), 40, np.int16), spacing=(1.0, 1.0, 2.0))
>>> crosshair(ct)
(7.5, 7.5, 7.0)
>>> [p.shape for p in panels(ct, modality="CT", size=32)]
[(32, 32, 3), (32, 32, 3), (32, 32, 3)]
>>> montage(ct, None, modality="CT", size=32)[:8] == b"\\x89PNG\\r\\n\\x1a\\n"
True
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from ..atomic import atomic_write_bytes
from ..errors import ArgumentError, require
from ..processing.reorient import orientation_transform
from ..volume import Volume

CT_WINDOW = (40.0, 400.0)
"""(level, width) in HU of the CT display window: soft tissue, -160 to 240 HU."""
PERCENTILES = (1.0, 99.0)
"""The display range of other modalities, in percentiles of the voxel values."""
DEFAULT_SIZE = 256
"""Pixels spanned by the longest field of view (mm) of the volume."""
MARGIN = 14
"""Pixels of black margin around each panel, where the orientation letters are."""
PALETTE = (
    (230, 25, 75),  # red
    (60, 180, 75),  # green
    (0, 130, 200),  # blue
    (255, 225, 25),  # yellow
    (245, 130, 48),  # orange
    (145, 30, 180),  # purple
    (70, 240, 240),  # cyan
    (240, 50, 230),  # magenta
    (210, 245, 60),  # lime
    (0, 128, 128),  # teal
)
"""Outline colours of label values 1, 2, 3 ... (then again from the start)."""
_LETTER_GREY = (200, 200, 200)
_SAMPLE_VOXELS = 1_000_000
# Panel edge letters (left, right, top, bottom), see the module docstring.
_LETTERS = {"axial": ("R", "L", "A", "P"), "coronal": ("R", "L", "S", "I"), "sagittal": ("A", "P", "S", "I")}


def label_colour(value: int) -> tuple[int, int, int]:
    """The RGB outline colour of label value ``value`` (>= 1).

    >>> label_colour(1), label_colour(11)
    ((230, 25, 75), (230, 25, 75))
    """
    if value < 1:
        raise ArgumentError(f"label value {value} has no outline colour: background (0) is not drawn")
    return PALETTE[(int(value) - 1) % len(PALETTE)]


def _lps_view(volume: Volume) -> tuple[np.ndarray, tuple[float, float, float]]:
    """The first channel as a (z, y, x) view whose index axes point to L, P, S (closest axes),
    with its (x, y, z) spacing in mm. A view: nothing is copied."""
    array = volume.array if volume.array.ndim == 3 else volume.array[..., 0]
    perm, flips = orientation_transform(volume.direction, "LPS")
    view = np.transpose(array, [2 - perm[2 - k] for k in range(3)])
    flip_axes = tuple(2 - n for n in range(3) if flips[n])
    if flip_axes:
        view = np.flip(view, flip_axes)
    return view, tuple(volume.spacing[a] for a in perm)


def _check_label(image: Volume, label: Volume | None) -> None:
    if label is not None and not label.geometry.isclose(image.geometry):
        raise ArgumentError(
            f"the label's grid {label.geometry!r} is not the image's {image.geometry!r}",
            hint="resample the label onto the image grid first",
        )


def _centroid_index(image: Volume, label: Volume | None) -> np.ndarray:
    """The crosshair as a continuous (i, j, k) index of ``image``'s own grid."""
    size = np.array(image.geometry.size, dtype=np.float64)
    if label is not None:
        array = label.array if label.array.ndim == 3 else label.array[..., 0]
        mask = array != 0
        total = np.count_nonzero(mask)
        if total:
            # per-axis profiles (one pass each over the mask) instead of np.nonzero's index arrays
            profiles = (mask.sum(axis=(0, 1)), mask.sum(axis=(0, 2)), mask.sum(axis=(1, 2)))  # x, y, z
            return np.array([np.dot(np.arange(len(p)), p) / total for p in profiles])
    return (size - 1) / 2


def crosshair(image: Volume, label: Volume | None = None) -> tuple[float, float, float]:
    """The point (LPS mm, (x, y, z)) the three slices go through: the centroid of ``label``'s
    non-zero voxels, or the centre of ``image``'s field of view without a (non-empty) label."""
    _check_label(image, label)
    point = image.geometry.index_to_physical(_centroid_index(image, label))
    return tuple(round(float(c), 6) for c in point)


def _sample(array: np.ndarray) -> np.ndarray:
    """A regular sample of at most about :data:`_SAMPLE_VOXELS` finite values of a 3D array."""
    step = max(1, int(np.ceil((array.size / _SAMPLE_VOXELS) ** (1 / 3))))
    sample = np.asarray(array[::step, ::step, ::step], dtype=np.float64).ravel()
    return sample[np.isfinite(sample)]


def display_window(image: Volume, *, modality: str) -> tuple[float, float]:
    """The (low, high) values shown black and white: :data:`CT_WINDOW` for ``CT``, else the
    :data:`PERCENTILES` of the first channel's finite voxels (high > low always).

    >>> display_window(Volume(np.zeros((2, 2, 2))), modality="CT")
    (-160.0, 240.0)
    """
    if modality.strip().upper() == "CT":
        level, width = CT_WINDOW
        return level - width / 2, level + width / 2
    values = percentiles(image, PERCENTILES)
    if values is None:
        return 0.0, 1.0
    low, high = values
    return (low, high) if high > low else (low, low + 1.0)


def percentiles(image: Volume, q: tuple[float, ...]) -> tuple[float, ...] | None:
    """The percentiles ``q`` (0-100) of the first channel's finite voxels, from a regular sample
    of at most about a million of them (every n-th voxel along each axis); ``None`` when no voxel
    is finite.

    >>> percentiles(Volume(np.arange(64.0).reshape(4, 4, 4)), (0, 50, 100))
    (0.0, 31.5, 63.0)
    """
    array = image.array if image.array.ndim == 3 else image.array[..., 0]
    sample = _sample(array)
    if sample.size == 0:
        return None
    return tuple(float(v) for v in np.percentile(sample, q))


def _grey(plane: np.ndarray, low: float, high: float) -> np.ndarray:
    scaled = (np.asarray(plane, dtype=np.float64) - low) * (255.0 / (high - low))
    return np.clip(np.nan_to_num(scaled, nan=0.0), 0, 255).round().astype(np.uint8)


def _nearest(plane: np.ndarray, height: int, width: int) -> np.ndarray:
    """``plane`` resized to (height, width) by nearest neighbour (pixel centres aligned), as int64."""
    rows = ((np.arange(height) + 0.5) * plane.shape[0] / height).astype(np.intp)
    cols = ((np.arange(width) + 0.5) * plane.shape[1] / width).astype(np.intp)
    return np.asarray(plane[rows][:, cols], dtype=np.int64)


def _outline(labels: np.ndarray) -> np.ndarray:
    """Pixels of a non-zero label value with a 4-neighbour of another value (panel edges repeat)."""
    padded = np.pad(labels, 1, mode="edge")
    centre = padded[1:-1, 1:-1]
    edge = (
        (padded[:-2, 1:-1] != centre)
        | (padded[2:, 1:-1] != centre)
        | (padded[1:-1, :-2] != centre)
        | (padded[1:-1, 2:] != centre)
    )
    return edge & (centre != 0)


def panels(image: Volume, label: Volume | None = None, *, modality: str, size: int = DEFAULT_SIZE) -> list[np.ndarray]:
    """The axial, coronal and sagittal panels as RGB ``(height, width, 3)`` uint8 arrays.

    Orientation, proportions, windowing and outlines as in the module docstring; ``size`` is the
    number of pixels the longest field of view spans. ``label`` must be on ``image``'s grid.
    """
    Image = require("PIL.Image", feature="QC montages", package="Pillow")
    if isinstance(size, bool) or not isinstance(size, int) or size < 8:
        raise ArgumentError(f"montage size {size!r} is not a whole number of pixels >= 8")
    _check_label(image, label)
    view, (sx, sy, sz) = _lps_view(image)
    labels = None if label is None else _lps_view(label)[0]
    low, high = display_window(image, modality=modality)
    nz, ny, nx = view.shape
    mm_per_pixel = max(nx * sx, ny * sy, nz * sz) / size
    i, j, k = (int(round(c)) for c in _lps_index(image, _centroid_index(image, label)))

    def cut(array: np.ndarray) -> list[np.ndarray]:  # rows top -> bottom, columns left -> right
        return [array[k, :, :], array[::-1, j, :], array[::-1, :, i]]

    extents = [(ny * sy, nx * sx), (nz * sz, nx * sx), (nz * sz, ny * sy)]  # (height, width) mm
    out = []
    for n, plane in enumerate(cut(view)):
        h, w = (max(1, int(round(e / mm_per_pixel))) for e in extents[n])
        grey = Image.fromarray(_grey(plane, low, high)).resize((w, h), Image.Resampling.BILINEAR)
        rgb = np.array(grey.convert("RGB"))
        if labels is not None:
            lab = _nearest(cut(labels)[n], h, w)
            edge = _outline(lab)
            for value in np.unique(lab[edge]):
                rgb[edge & (lab == value)] = label_colour(int(value))
        out.append(rgb)
    return out


def _lps_index(image: Volume, index: np.ndarray) -> np.ndarray:
    """A continuous (i, j, k) index of ``image``'s grid in the index of its LPS view."""
    perm, flips = orientation_transform(image.direction, "LPS")
    size = image.geometry.size
    return np.array([size[a] - 1 - index[a] if f else index[a] for a, f in zip(perm, flips)])


def montage(image: Volume, label: Volume | None = None, *, modality: str, size: int = DEFAULT_SIZE) -> bytes:
    """The three :func:`panels` side by side (axial, coronal, sagittal) with orientation letters
    in black margins, as PNG bytes (RGB, no metadata chunks: the same input gives the same bytes)."""
    Image = require("PIL.Image", feature="QC montages", package="Pillow")
    ImageDraw = require("PIL.ImageDraw", feature="QC montages", package="Pillow")
    ImageFont = require("PIL.ImageFont", feature="QC montages", package="Pillow")
    parts = panels(image, label, modality=modality, size=size)
    width = sum(p.shape[1] for p in parts) + 2 * MARGIN * len(parts)
    height = max(p.shape[0] for p in parts) + 2 * MARGIN
    canvas = Image.new("RGB", (width, height), (0, 0, 0))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    x = MARGIN
    for name, part in zip(_LETTERS, parts):
        h, w = part.shape[:2]
        canvas.paste(Image.fromarray(part), (x, MARGIN))
        left, right, top, bottom = _LETTERS[name]
        mid_x, mid_y = x + w / 2, MARGIN + h / 2
        for letter, (cx, cy) in ((left, (x - MARGIN / 2, mid_y)), (right, (x + w + MARGIN / 2, mid_y)),
                                 (top, (mid_x, MARGIN / 2)), (bottom, (mid_x, MARGIN + h + MARGIN / 2))):  # fmt: skip
            # centred by its box (bitmap fonts, Pillow's fallback without FreeType, take no anchor)
            x0, y0, x1, y1 = draw.textbbox((0, 0), letter, font=font)
            draw.text((round(cx - (x0 + x1) / 2), round(cy - (y0 + y1) / 2)), letter, fill=_LETTER_GREY, font=font)
        x += w + 2 * MARGIN
    buffer = io.BytesIO()
    canvas.save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue()


def write_montage(
    path: str | os.PathLike,
    image: Volume,
    label: Volume | None = None,
    *,
    modality: str,
    size: int = DEFAULT_SIZE,
    overwrite: bool = False,
) -> Path:
    """Write :func:`montage` to ``path`` (a ``.png``) through a staging folder and a rename."""
    return atomic_write_bytes(path, montage(image, label, modality=modality, size=size), overwrite=overwrite)
