"""Recipe steps that cut or extend the grid without interpolation: crop_body, crop_nonzero,
crop_label and pad_crop.

Every step here chooses a *box* on the input's voxel grid — ``start`` (the input index, (x, y, z),
of the output's first voxel; negative where padding is added) and ``size`` (voxels, (x, y, z)) —
and copies the overlap. The output origin is the physical position (LPS mm) of input index
``start``, spacing and direction are unchanged, so every kept voxel keeps its physical position.
Labels are cut with the same box and padded with 0; labelled voxels that fall outside the box are
counted per label in the record (``label_voxels_cut``) and logged as a warning, since undoing puts
the label back into an input-sized grid of zeros — exact inside the box only.

* ``crop_body``: ``threshold_hu`` (default -500 HU) and ``margin_mm`` (default 10 mm). The body is
  the largest 6-connected component of voxels above the threshold (so the table and air are
  dropped); the box is its bounding box grown by ``margin_mm`` on each side (``ceil(margin /
  spacing)`` voxels per axis), clipped to the image. Needs an image in HU (put it before
  windowing or normalisation); multi-channel images use channel 0.
* ``crop_nonzero``: bounding box of voxels != 0 in any channel, plus ``margin_mm`` (default 0).
* ``crop_label``: bounding box of label voxels != 0, plus ``margin_mm`` (default 0); needs a label.
* ``pad_crop``: a fixed ``shape`` [x, y, z] in voxels: each axis is cropped or padded, centred
  (``"mode": "center"``, default; an odd difference leaves the extra voxel at the high end) or at
  a random offset (``"mode": "random"``, drawn from the run's seed). ``pad_value``: a number, or
  "auto" (default): -1000 (air) for a CT still in HU (modality CT and minimum <= -1000), otherwise
  the image minimum — per channel for a multi-channel image (each stacked window its own).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ..errors import RecipeError
from ..geometry import Geometry
from ..volume import Volume
from .base import Param, RunContext, Step

log = logging.getLogger(__name__)


def box_geometry(geometry: Geometry, start, size) -> Geometry:
    """The grid of the box ``start``/``size`` (input voxel index / voxels, (x, y, z))."""
    origin = geometry.index_to_physical(np.asarray(start, float))
    return geometry.replace(size=tuple(int(s) for s in size), origin=tuple(origin))


def cut_box(array: np.ndarray, start, size, pad_value) -> np.ndarray:
    """The (z, y, x[, c]) block of ``array`` at ``start``/``size`` ((x, y, z)), padded with ``pad_value``."""
    start = np.asarray(start, int)
    size = np.asarray(size, int)
    n = np.array(array.shape[:3][::-1])
    lo = np.maximum(start, 0)
    hi = np.minimum(start + size, n)
    src = tuple(slice(lo[a], hi[a]) for a in (2, 1, 0))
    if np.all(lo == start) and np.all(hi == start + size):
        return np.ascontiguousarray(array[src])
    out = np.full(tuple(size[::-1]) + array.shape[3:], pad_value, dtype=array.dtype)
    if np.all(hi > lo):
        dst = tuple(slice(lo[a] - start[a], hi[a] - start[a]) for a in (2, 1, 0))
        out[dst] = array[src]
    return out


def uncut_box(array: np.ndarray, start, input_size, fill=0) -> np.ndarray:
    """Inverse of :func:`cut_box`: place the box back into a ``fill`` array of ``input_size`` (x, y, z)."""
    return cut_box(array, -np.asarray(start, int), input_size, fill)


def labels_cut_off(before: np.ndarray, after: np.ndarray) -> dict[str, int]:
    """Voxels of each nonzero label value that a crop left outside its box ({value: count})."""
    values, n_before = np.unique(before[before != 0], return_counts=True)
    if values.size == 0:
        return {}
    n_after = dict(zip(*np.unique(after[after != 0], return_counts=True)))
    lost = {str(int(v)): int(n - n_after.get(v, 0)) for v, n in zip(values, n_before)}
    return {v: n for v, n in lost.items() if n > 0}


class BoxStep(Step):
    """Shared apply/invert of the box steps; subclasses implement :meth:`box`."""

    geometric = True

    def box(self, image: Volume, label: Volume | None, ctx: RunContext, where: str) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def pad_value(self, image: Volume) -> float | list[float]:
        """The value of added voxels: a number, or one per channel (a list) for (z, y, x, c)."""
        return 0

    def apply(self, image: Volume, label: Volume | None, ctx: RunContext) -> tuple[Volume, Volume | None, dict]:
        where = getattr(ctx, "where", f"step ({self.op})")
        start, size = self.box(image, label, ctx, where)
        start = [int(v) for v in start]
        size = [int(v) for v in size]
        padding = any(s < 0 for s in start) or any(s + n > m for s, n, m in zip(start, size, image.geometry.size))
        pad = self.pad_value(image) if padding else None
        geometry = box_geometry(image.geometry, start, size)
        out_image = Volume(
            cut_box(image.array, start, size, pad if pad is not None else 0), geometry, metadata=image.metadata
        )
        out_label = None
        record = {
            "input_geometry": image.geometry.to_dict(),
            "output_geometry": geometry.to_dict(),
            "box": {"start": start, "size": size},
            "pad_value": pad,
        }
        if label is not None:
            out_label = Volume(cut_box(label.array, start, size, 0), geometry, metadata=label.metadata)
            cut = labels_cut_off(label.array, out_label.array)
            if cut:
                record["label_voxels_cut"] = cut
                detail = ", ".join(f"label {v}: {n} voxels" for v, n in cut.items())
                log.warning("%s: the box cuts off labelled voxels (%s); they cannot be restored", where, detail)
        return out_image, out_label, record

    def invert_label(self, label: Volume, record: dict) -> Volume:
        """The label put back at its place in a zero label map on the recorded input grid."""
        source = Geometry.from_dict(record["input_geometry"])
        array = uncut_box(label.array, record["box"]["start"], source.size, 0)
        return Volume(array, source, metadata=label.metadata)


def bounding_box(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """(lo, hi) inclusive voxel indices, (x, y, z), of the True voxels of a (z, y, x) mask."""
    lo, hi = [], []
    for axis in (2, 1, 0):  # x, y, z
        others = tuple(a for a in range(3) if a != axis)
        hit = np.flatnonzero(mask.any(axis=others))
        if hit.size == 0:
            return None
        lo.append(hit[0])
        hi.append(hit[-1])
    return np.array(lo), np.array(hi)


def grow_box(lo, hi, geometry: Geometry, margin_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """Grow an inclusive box by ``margin_mm`` on each side and clip it to the grid."""
    margin = np.ceil(margin_mm / np.array(geometry.spacing) - 1e-9).astype(int)
    lo = np.maximum(lo - margin, 0)
    hi = np.minimum(hi + margin, np.array(geometry.size) - 1)
    return lo, hi - lo + 1


@dataclass(frozen=True)
class MarginBoxStep(BoxStep):
    """A box step whose only parameter is ``margin_mm`` (default 0 mm)."""

    margin_mm: float = 0.0
    parameters = (Param("margin_mm", "number", 0.0, "mm", "kept around the box", minimum=0.0),)

    def mask(self, image: Volume, label: Volume | None, where: str) -> tuple[np.ndarray, str]:
        """(boolean (z, y, x) mask to crop to, what to say when it is empty)."""
        raise NotImplementedError

    def box(self, image, label, ctx, where):
        mask, empty = self.mask(image, label, where)
        found = bounding_box(mask)
        if found is None:
            raise RecipeError(f"{where}: {empty}")
        return grow_box(*found, image.geometry, self.margin_mm)
