"""Recipe step ``resample``: onto a spacing, a shape or a reference grid, image and label.

Parameters (JSON; (x, y, z) order like SimpleITK):

* exactly one of ``"spacing": [sx, sy, sz]`` (mm), ``"shape": [nx, ny, nz]`` (voxels) or
  ``"reference"`` — a path to an image whose grid is used (only its header is read; relative to
  the recipe file's folder when the recipe is loaded from a file), or a
  geometry dict (``Geometry.to_dict()``: size, spacing, origin (LPS mm), direction);
* ``"interpolation"``: "linear" (default), "bspline" (cubic B-spline) or "nearest";
* ``"label_interpolation"``: "nearest" (default) or "label_linear" (per-label linear: one-hot,
  trilinear, argmax, as nnU-Net does for segmentations);
* ``"anisotropic_axis_interpolation"``: "linear" (default) or "nearest" — used along the index
  axes whose input spacing exceeds ``"anisotropy_threshold"`` (default 3) times the smallest, for
  images and labels, as nnU-Net treats the low-resolution axis separately;
* ``"fill_value"``: for reference grids that reach farther than half a voxel outside the image
  (default: the image minimum; labels get 0).

The grid rule — exact target spacing, field of view centred on the input's, size rounded half up,
direction kept (oblique stays oblique) — is documented in :mod:`MedPrepLib.processing.resample`. The image
becomes float32 (nearest keeps its dtype); the label keeps its dtype. A label value present
before but absent after resampling is an error naming it (a structure too small for the new
spacing), never a silent loss.

The record holds the input and output grids; undoing resamples the label back onto the input
grid with nearest neighbour.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import RecipeError
from ..geometry import Geometry
from ..processing.resample import (
    ANISOTROPIC_AXIS_INTERPOLATIONS,
    IMAGE_INTERPOLATIONS,
    LABEL_INTERPOLATIONS,
    anisotropic_axes,
    grid_for_shape,
    grid_for_spacing,
    label_values,
    resample,
)
from ..volume import Volume
from .base import Param, RunContext, Step, check_output_grid, did_you_mean, param_error, parse_shape


def _read_reference(path: str, where: str) -> Geometry:
    import os

    import SimpleITK as sitk

    if not os.path.isfile(path):
        raise RecipeError(
            f"{where}: the 'reference' image does not exist",
            path=os.path.abspath(path),
            hint="a relative path in a recipe file is read from the recipe's folder",
        )

    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except RuntimeError:
        raise RecipeError(f"{where}: cannot read the reference image's header", path=path) from None
    if reader.GetDimension() != 3:
        raise RecipeError(f"{where}: the reference image is {reader.GetDimension()}D, not 3D", path=path)
    return Geometry(
        size=reader.GetSize(),
        spacing=reader.GetSpacing(),
        origin=reader.GetOrigin(),
        direction=np.array(reader.GetDirection()).reshape(3, 3),
    )


@dataclass(frozen=True)
class Resample(Step):
    """Resample image and label onto a new grid (see the module docstring for parameters)."""

    op = "resample"
    parameters = (
        Param("spacing", "[x, y, z] numbers", None, "mm", "the target spacing (one of spacing, shape, reference)"),
        Param("shape", "[x, y, z] integers", None, "voxels", "the target size, same field of view"),
        Param("reference", "image path or grid", None, "", "an image whose grid is used (its header only), or Geometry.to_dict()"),
        Param("interpolation", "one of", "linear", "", "image interpolation", IMAGE_INTERPOLATIONS),
        Param("label_interpolation", "one of", "nearest", "", "label interpolation (label_linear: one-hot, linear, argmax)", LABEL_INTERPOLATIONS),
        Param("anisotropic_axis_interpolation", "one of", "linear", "",
              "along axes coarser than anisotropy_threshold x the finest (nnU-Net)", ANISOTROPIC_AXIS_INTERPOLATIONS),
        Param("anisotropy_threshold", "number", 3.0, "ratio", "an axis this many times coarser than the finest is anisotropic"),
        Param("fill_value", "number", None, "image units", "outside the image on a reference grid (default: the image minimum)"),
    )
    geometric = True

    spacing: tuple[float, float, float] | None = None
    shape: tuple[int, int, int] | None = None
    reference: Any = None
    interpolation: str = "linear"
    label_interpolation: str = "nearest"
    anisotropic_axis_interpolation: str = "linear"
    anisotropy_threshold: float = 3.0
    fill_value: float | None = None

    @classmethod
    def from_params(cls, params: dict[str, Any], where: str) -> Resample:
        p = cls.read(params, where)
        given = [k for k in ("spacing", "shape", "reference") if p.has(k)]
        if not given:
            for key in params:  # "spacings", "size": a near miss deserves its name in the message
                guess = did_you_mean(key, ["spacing", "shape", "reference"])
                if guess:
                    raise param_error(where, key, f"is not a parameter of this step{guess}")
        if len(given) != 1:
            what = "none" if not given else " and ".join(f"'{g}'" for g in given)
            raise RecipeError(f"{where}: give exactly one of 'spacing', 'shape' or 'reference' (got {what})")
        spacing = p.numbers("spacing", 3, positive=True)
        shape = p.raw("shape")
        if shape is not None:
            shape = parse_shape(shape, where)
        reference = p.raw("reference")
        if reference is not None:
            if isinstance(reference, dict):
                try:
                    Geometry.from_dict(reference)
                except Exception as exc:  # noqa: BLE001 - any malformed dict
                    raise param_error(where, "reference", f"is not a valid grid ({exc})") from None
            elif not isinstance(reference, str) or not reference:
                raise param_error(where, "reference", f"must be an image path or a grid dict, got {reference!r}")
        step = cls(
            spacing=spacing,
            shape=shape,
            reference=reference,
            interpolation=p.choice("interpolation"),
            label_interpolation=p.choice("label_interpolation"),
            anisotropic_axis_interpolation=p.choice("anisotropic_axis_interpolation"),
            anisotropy_threshold=p.number("anisotropy_threshold", minimum=1.0),
            fill_value=p.number("fill_value"),
        )
        p.finish()
        return step

    def to_params(self) -> dict[str, Any]:
        d: dict[str, Any] = {"op": self.op}
        if self.spacing is not None:
            d["spacing"] = list(self.spacing)
        elif self.shape is not None:
            d["shape"] = list(self.shape)
        else:
            d["reference"] = self.reference
        d.update(
            interpolation=self.interpolation,
            label_interpolation=self.label_interpolation,
            anisotropic_axis_interpolation=self.anisotropic_axis_interpolation,
            anisotropy_threshold=self.anisotropy_threshold,
        )
        if self.fill_value is not None:
            d["fill_value"] = self.fill_value
        return d

    def target_grid(self, geometry: Geometry, where: str = "resample") -> Geometry:
        """The output grid for an input grid (LPS mm, (x, y, z))."""
        if self.spacing is not None:
            return grid_for_spacing(geometry, self.spacing)
        if self.shape is not None:
            return grid_for_shape(geometry, self.shape)
        if isinstance(self.reference, dict):
            return Geometry.from_dict(self.reference)
        return _read_reference(self.reference, where)

    def apply(self, image: Volume, label: Volume | None, ctx: RunContext) -> tuple[Volume, Volume | None, dict]:
        where = getattr(ctx, "where", f"step ({self.op})")
        target = self.target_grid(image.geometry, where)
        given = "spacing" if self.spacing is not None else "shape" if self.shape is not None else "reference"
        check_output_grid(where, given, target.size, image.n_channels)
        options = dict(
            anisotropic_axis_interpolation=self.anisotropic_axis_interpolation,
            anisotropy_threshold=self.anisotropy_threshold,
        )
        progress = ctx.progress
        out_image = resample(
            image,
            target,
            interpolation=self.interpolation,
            fill_value=self.fill_value,
            progress=progress.sub(0.0, 0.7 if label is not None else 1.0),
            **options,
        )
        out_label = None
        if label is not None:
            out_label = resample_label(label, target, self.label_interpolation, where, **options)
        record = {
            "input_geometry": image.geometry.to_dict(),
            "output_geometry": target.to_dict(),
            "interpolation": self.interpolation,
            "label_interpolation": self.label_interpolation if label is not None else None,
            "anisotropic_axes": anisotropic_axes(image.spacing, self.anisotropy_threshold),
        }
        return out_image, out_label, record

    def invert_label(self, label: Volume, record: dict) -> Volume:
        """The label resampled back onto the recorded input grid (nearest neighbour)."""
        source = Geometry.from_dict(record["input_geometry"])
        out = resample(label, source, interpolation="nearest", fill_value=0)
        return Volume(out.array, source, metadata=label.metadata)


def resample_label(
    label: Volume,
    target: Geometry,
    interpolation: str = "nearest",
    where: str = "resample",
    **options,
) -> Volume:
    """Resample a label map (integer values) and refuse to lose a label value.

    Raises :class:`RecipeError` naming the labels that vanished and their voxel counts.
    """
    if label.array.ndim != 3:
        raise RecipeError(f"{where}: a label map must be a scalar (z, y, x) volume, got shape {label.shape}")
    if label.dtype.kind == "f":
        a = label.array
        if not np.array_equal(a, np.round(a)):
            raise RecipeError(f"{where}: the label map holds non-integer values", hint="labels must be integers")
        wide = a.size and (a.min() < np.iinfo(np.int32).min or a.max() > np.iinfo(np.int32).max)
        label = label.with_array(a.astype(np.int64 if wide else np.int32))
    before = label_values(label.array)
    out = resample(label, target, interpolation=interpolation, fill_value=0, **options)
    lost = _missing_labels(before, out.array)
    if lost:
        counts = {v: int(np.count_nonzero(label.array == v)) for v in lost[:5]}
        detail = ", ".join(f"{v} ({n} voxels)" for v, n in counts.items())
        more = f" and {len(lost) - 5} more" if len(lost) > 5 else ""
        other = "'nearest'" if interpolation == "label_linear" else "'label_linear'"
        raise RecipeError(
            f"{where}: label value(s) {detail}{more} vanished when resampling the label map to "
            f"{target.spacing} mm with '{interpolation}'",
            hint=f"use a finer spacing, label_interpolation {other}, or remove these tiny structures first",
        )
    return out


def _missing_labels(values: np.ndarray, array: np.ndarray) -> list[int]:
    """The ``values`` that do not occur in ``array``.

    A coarse subsample finds the common labels at once; only the others are searched in full,
    block by block, stopping at the first hit.
    """
    seen = set(label_values(array[::4, ::4, ::4]).tolist())
    missing = [int(v) for v in values if int(v) not in seen]
    if not missing:
        return []
    flat = array.reshape(-1)
    step = 1 << 22
    lost = []
    for v in missing:
        if not any(np.any(flat[s : s + step] == v) for s in range(0, flat.size, step)):
            lost.append(v)
    return lost
