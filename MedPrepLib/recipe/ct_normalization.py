"""The ``ct_normalization`` recipe step: NnU-Net's CT normalisation: clip to the dataset's foreground [0.5, 99.5] percentiles

See the class docstring for units and the record; parameters: ``docs/recipes.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import RecipeError
from ..processing.blockwise import as_float32, blockwise
from ..volume import Volume
from .base import Param, RunContext, Step, check_finite, output_array, param_error, step_statistics

_CT_STATISTICS = {
    "mean": "foreground mean (default: from the dataset statistics)",
    "std": "foreground standard deviation",
    "percentile_00_5": "foreground 0.5th percentile: lower clip",
    "percentile_99_5": "foreground 99.5th percentile: upper clip",
}
"""The four numbers of the normalisation (HU), with their docs: parameters, statistics and record keys."""
_CT_KEYS = tuple(_CT_STATISTICS)


@dataclass(frozen=True)
class CTNormalization(Step):
    """nnU-Net's CT normalisation: clip to the dataset's foreground [0.5, 99.5] percentiles
    (HU), then ``(x - mean) / max(std, 1e-8)`` with the dataset's foreground mean and std.

    The arithmetic is nnunetv2's ``CTNormalization.run`` exactly (float32 clip, subtract,
    divide), so outputs are bit-identical to nnU-Net given the same four numbers. Those come,
    in order, from the step's own ``mean``/``std``/``percentile_00_5``/``percentile_99_5``
    parameters, from the run's statistics (the statistics pass, see
    :mod:`~MedPrepLib.recipe.statistics`), or from an nnU-Net ``dataset_fingerprint.json``
    given as statistics (``foreground_intensity_properties_per_channel[channel]``).

    The statistics pass samples the foreground as nnU-Net's fingerprint extractor does: per
    case, voxels with label > 0 inside the bounding box of the image's nonzero voxels, float32,
    ``samples_per_case`` drawn with replacement by ``np.random.RandomState(seed)`` (seed 1234,
    restarted for each case); ``samples_per_case`` defaults to nnU-Net's ``int(10e7 //
    number_of_cases)``. Mean, std (ddof=0) and the linear-interpolation percentiles are then
    taken over the concatenated samples.
    """

    op = "ct_normalization"
    parameters = (
        *(Param(name, "number", None, "HU", doc) for name, doc in _CT_STATISTICS.items()),
        Param("samples_per_case", "integer", None, "voxels", "statistics pass: foreground voxels sampled per case (default 10e7 / cases)", minimum=1),
        Param("seed", "integer", 1234, "", "statistics pass: seed of the sampling (nnU-Net's)", minimum=0),
        Param("channel", "integer", 0, "", "statistics pass: the channel measured", minimum=0),
    )

    def validate(self, where):
        given = {k: getattr(self, k) for k in _CT_KEYS}
        present = [k for k, v in given.items() if v is not None]
        if present and len(present) != len(_CT_KEYS):
            missing = [k for k in _CT_KEYS if k not in present][0]
            raise param_error(where, missing, "is required when any of mean/std/percentile_00_5/percentile_99_5 is given")
        if present and given["percentile_99_5"] < given["percentile_00_5"]:
            raise param_error(where, "percentile_99_5", "must not be below 'percentile_00_5'")
    mean: float | None = None
    std: float | None = None
    percentile_00_5: float | None = None
    percentile_99_5: float | None = None
    samples_per_case: int | None = None
    seed: int = 1234
    channel: int = 0



    # -- statistics pass ------------------------------------------------------------------
    def needs_statistics(self) -> bool:
        return self.mean is None

    def collect_statistics(self, image: Volume, label: Volume | None, ctx: RunContext):
        """A float32 sample of this case's foreground voxels (nnU-Net's way, see class doc)."""
        if label is None:
            raise RecipeError(
                f"{ctx.where}: the statistics pass needs a label map for every case (foreground = label > 0)"
            )
        n_samples = self.samples_per_case
        if n_samples is None:
            n_cases = getattr(ctx, "n_cases", None)
            if not n_cases:
                raise RecipeError(
                    f"{ctx.where}: 'samples_per_case' is not set and the number of cases is unknown",
                    hint="pass the cases as a list, give n_cases, or set 'samples_per_case'",
                )
            n_samples = int(10e7 // n_cases)
        return foreground_sample(image.array, label.array, n_samples, seed=self.seed, channel=self.channel)

    def reduce_statistics(self, parts: list, ctx: RunContext) -> dict:
        samples = np.concatenate(parts)  # as nnU-Net: an empty case ([]) promotes to float64
        if samples.size == 0:
            raise RecipeError(f"{ctx.where}: no case has foreground voxels (label > 0) to compute statistics from")
        p005, median, p995 = np.percentile(samples, np.array((0.5, 50.0, 99.5)))
        return {
            "op": self.op,
            "mean": float(np.mean(samples)),
            "median": float(median),
            "std": float(np.std(samples)),
            "min": float(np.min(samples)),
            "max": float(np.max(samples)),
            "percentile_99_5": float(p995),
            "percentile_00_5": float(p005),
            "samples": int(samples.size),
            "seed": self.seed,
        }

    # -- run ------------------------------------------------------------------------------
    def _properties(self, ctx: RunContext, channel: int, *, multichannel: bool = False) -> dict:
        """The four numbers for ``channel``; a multi-channel image needs an nnU-Net fingerprint
        (one set per channel), since the step's own numbers and the statistics pass give one set."""
        if self.mean is not None or step_statistics(ctx, self.op) is not None:
            if multichannel:
                raise RecipeError(
                    f"{ctx.where}: a multi-channel image needs foreground statistics per channel; "
                    "the recipe's numbers and the statistics pass give one set",
                    hint="give an nnU-Net dataset_fingerprint.json as statistics, or normalise a single-channel image",
                )
        if self.mean is not None:
            return {k: getattr(self, k) for k in _CT_KEYS} | {"source": "recipe"}
        stats = step_statistics(ctx, self.op)
        source = "statistics"
        if stats is None:
            per_channel = (ctx.statistics or {}).get("foreground_intensity_properties_per_channel") or {}
            stats = per_channel.get(str(channel)) or per_channel.get(channel)
            source = "nnU-Net fingerprint"
        if not stats or any(k not in stats for k in _CT_KEYS):
            raise RecipeError(
                f"{ctx.where}: needs the dataset's foreground statistics (mean, std, percentile_00_5, "
                f"percentile_99_5){f' for channel {channel}' if multichannel else ''}",
                hint="measure them over the training set (medprep statistics IMAGES --labels LABELS -o stats.json, "
                "or compute_statistics), then give that file as statistics (medprep preprocess --statistics stats.json), "
                "or give the four numbers in the step",
            )
        return {k: float(stats[k]) for k in _CT_KEYS} | {"source": source}

    @staticmethod
    def _normalize(src: np.ndarray, dst: np.ndarray, props: dict) -> None:
        lower, upper = np.float32(props["percentile_00_5"]), np.float32(props["percentile_99_5"])
        mean = np.float32(props["mean"])
        divisor = np.float32(max(props["std"], 1e-8))

        def fn(s, d):
            as_float32(s, d)
            np.clip(d, lower, upper, out=d)
            np.subtract(d, mean, out=d)
            np.divide(d, divisor, out=d)

        blockwise(fn, src, dst)

    def apply(self, image, label, ctx):
        check_finite(image, ctx.where)
        out = output_array(image, ctx)
        if image.array.ndim == 3:
            props = self._properties(ctx, self.channel)
            self._normalize(image.array, out, props)
            return image.with_array(out), label, props
        per_channel = {}
        for c in range(image.n_channels):  # nnU-Net: each channel with its own fingerprint numbers
            per_channel[str(c)] = self._properties(ctx, c, multichannel=True)
            self._normalize(image.array[..., c], out[..., c], per_channel[str(c)])
        return image.with_array(out), label, {"per_channel": per_channel}


def nonzero_bbox(a: np.ndarray) -> tuple[slice, slice, slice]:
    """(z, y, x) slices of the bounding box of voxels != 0 in any channel (nnU-Net's crop).

    Filling holes, as nnU-Net does, never changes a bounding box, so it is skipped.
    """

    def fn(block):
        m = block != 0
        if m.ndim == 4:
            m = m.any(axis=3)
        return m.any(axis=(1, 2)), m.any(axis=(0, 2)), m.any(axis=(0, 1))

    parts = _slab_parts(fn, a)
    z = np.concatenate([p[0] for p in parts])
    y = np.logical_or.reduce([p[1] for p in parts])
    x = np.logical_or.reduce([p[2] for p in parts])
    if not z.any():
        return slice(0, 0), slice(0, 0), slice(0, 0)
    box = []
    for axis in (z, y, x):
        idx = np.flatnonzero(axis)
        box.append(slice(int(idx[0]), int(idx[-1]) + 1))
    return tuple(box)


def _slab_parts(fn, a: np.ndarray) -> list:
    step = max(1, (1 << 20) // (int(np.prod(a.shape[1:])) or 1))
    return [fn(a[z : z + step]) for z in range(0, a.shape[0], step)]


def foreground_sample(image: np.ndarray, label: np.ndarray, n_samples: int, *, seed: int = 1234, channel: int = 0):
    """nnU-Net's per-case foreground intensity sample (``collect_foreground_intensities``).

    ``image`` (z, y, x[, c]) in its own units, ``label`` (z, y, x). Returns a float32 array of
    ``n_samples`` values, or ``[]`` when the case has no foreground inside the nonzero box.
    """
    if label.shape[:3] != image.shape[:3]:
        raise RecipeError(f"label shape {label.shape} does not match image shape {image.shape[:3]} (z, y, x)")
    box = nonzero_bbox(image)
    fg = label[box] > 0
    values = image[box] if image.ndim == 3 else image[box][..., channel]
    pixels = values[fg].astype(np.float32)
    if pixels.dtype.kind == "f" and np.isnan(pixels).any():
        raise RecipeError("the image holds NaN voxels in the foreground; statistics would be meaningless")
    rs = np.random.RandomState(seed)
    if len(pixels) == 0:
        return []
    for _ in range(channel):  # nnU-Net draws channel by channel from one generator
        rs.choice(pixels, n_samples, replace=True)
    return rs.choice(pixels, n_samples, replace=True)
