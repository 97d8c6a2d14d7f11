"""N4 bias-field correction for MR (SimpleITK's N4BiasFieldCorrectionImageFilter).

The field is estimated on a copy shrunk by ``shrink_factor`` along each axis (the expensive
part scales with the voxel count), then evaluated as a smooth B-spline on the full-resolution
grid (``GetLogBiasFieldAsImage``) and divided out: ``y = x / exp(log_field)``, float32 in the
image's own (arbitrary MR) units.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import RecipeError, require
from ..volume import Volume
from .base import Param, Step, mask_name, param_error


def _iterations(value, where: str) -> tuple[int, ...]:
    if (
        not isinstance(value, list)
        or not value
        or not all(isinstance(i, int) and not isinstance(i, bool) and i > 0 for i in value)
    ):
        raise param_error(where, "iterations", f"must be a list of positive integers (one per level), got {value!r}")
    return tuple(value)



@dataclass(frozen=True)
class N4BiasCorrection(Step):
    """Correct a smooth multiplicative intensity bias (MR), keeping units; float32 output.

    Parameters: ``shrink_factor`` (default 4, voxels per axis of the estimation grid; lowered
    along an axis where it would leave fewer than 2 voxels, e.g. a 5-slice stack),
    ``iterations`` (per fitting level, default [50, 50, 50, 50]), ``convergence_threshold``
    (0.001), ``control_points`` (4 per axis at the coarsest level), ``mask``: ``"otsu"``
    (default: SimpleITK's Otsu threshold, the object brighter than the background), ``"all"``,
    ``"label"`` (label > 0) or the name of a mask given to the run. The filter runs on one
    thread so that a replay gives byte-identical output.
    """

    op = "n4"
    parameters = (
        Param("shrink_factor", "integer", 4, "voxels", "per axis of the estimation grid (lowered on thin stacks)", minimum=1),
        Param("iterations", "list of integers", [50, 50, 50, 50], "", "per fitting level", parse=_iterations),
        Param("convergence_threshold", "number", 0.001, "", "stop a level when the change is below it", minimum=0.0),
        Param("control_points", "integer", 4, "", "per axis at the coarsest level", minimum=4),
        Param("mask", "text", "otsu", "", '"otsu", "all", "label" or a mask name: where the bias is estimated', parse=mask_name("otsu", "all", "label")),
    )
    shrink_factor: int = 4
    iterations: tuple[int, ...] = (50, 50, 50, 50)
    convergence_threshold: float = 0.001
    control_points: int = 4
    mask: str = "otsu"



    def _mask(self, sitk, image_itk, image: Volume, label: Volume | None, ctx):
        if self.mask == "otsu":
            return sitk.OtsuThreshold(image_itk, 0, 1, 200)
        if self.mask == "all":
            m = np.ones(image.shape, np.uint8)
        elif self.mask == "label":
            if label is None:
                raise RecipeError(f"{ctx.where}: 'mask' is \"label\" but no label map was given")
            m = (label.array > 0).astype(np.uint8)
        elif self.mask in ctx.masks:
            m = (ctx.masks[self.mask].array > 0).astype(np.uint8)
        else:
            raise RecipeError(f"{ctx.where}: 'mask' names {self.mask!r}, which is not a mask given to the run")
        if m.shape != image.shape:
            raise RecipeError(f"{ctx.where}: the mask's shape {m.shape} differs from the image's {image.shape}")
        mask_itk = sitk.GetImageFromArray(m)
        mask_itk.CopyInformation(image_itk)
        return mask_itk

    def apply(self, image, label, ctx):
        sitk = require("SimpleITK", feature="N4 bias-field correction")
        if image.array.ndim != 3:
            raise RecipeError(f"{ctx.where}: N4 needs a single-channel image, got shape {image.shape}")
        work = Volume(image.array.astype(np.float32), image.geometry)
        image_itk = work.to_sitk()
        del work
        mask_itk = self._mask(sitk, image_itk, image, label, ctx)
        mask_voxels = int(np.count_nonzero(sitk.GetArrayViewFromImage(mask_itk)))
        if mask_voxels == 0:
            raise RecipeError(f"{ctx.where}: the N4 mask ({self.mask}) is empty")
        # an axis shrunk to a single voxel makes N4's B-spline fit fail ("Refusing to change
        # spacing"): keep at least 2 voxels along every axis of the estimation grid
        shrink = [min(self.shrink_factor, max(1, s // 2)) for s in image.geometry.size]
        small = sitk.Shrink(image_itk, shrink)
        small_mask = sitk.Shrink(mask_itk, shrink)
        corrector = sitk.N4BiasFieldCorrectionImageFilter()
        corrector.SetMaximumNumberOfIterations(list(self.iterations))
        corrector.SetConvergenceThreshold(self.convergence_threshold)
        corrector.SetNumberOfControlPoints([self.control_points] * 3)
        corrector.SetNumberOfThreads(1)  # summation order fixed: replays are byte-identical
        ctx.progress.update(f"{ctx.where}: estimating the bias field", 0.1)
        try:
            corrector.Execute(small, small_mask)
        except RuntimeError as exc:
            raise RecipeError(f"{ctx.where}: N4 failed: {str(exc).strip().splitlines()[-1]}") from exc
        log_field = corrector.GetLogBiasFieldAsImage(image_itk)
        out = np.exp(-sitk.GetArrayViewFromImage(log_field), dtype=np.float32)
        np.multiply(out, sitk.GetArrayViewFromImage(image_itk), out=out)
        record = {
            "shrink_factor": shrink,
            "mask": self.mask,
            "mask_voxels": mask_voxels,
            "iterations_per_level": corrector.GetElapsedIterations(),
            "final_convergence": float(corrector.GetCurrentConvergenceMeasurement()),
        }
        return image.with_array(out), label, record
