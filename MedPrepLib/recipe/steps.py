"""The built-in recipe steps, by ``op`` name: the one place a step is registered.

A step of an extension registers itself with :func:`register` (its ``op`` must be new).
"""

from __future__ import annotations

from .base import Step
from .cast import Cast
from .clip_scale import ClipScale
from .crop_body import CropBody
from .crop_label import CropLabel
from .crop_nonzero import CropNonzero
from .ct_normalization import CTNormalization
from .n4 import N4BiasCorrection
from .pad_crop import PadCrop
from .pad_to_air import PadToAir
from .reorient import Reorient
from .resample import Resample
from .window import Window
from .zero_center import ZeroCenter
from .zscore import ZScore

BUILT_IN: tuple[type[Step], ...] = (
    PadToAir,
    ClipScale,
    Window,
    ZScore,
    CTNormalization,
    ZeroCenter,
    N4BiasCorrection,
    Cast,
    Resample,
    Reorient,
    CropBody,
    CropNonzero,
    CropLabel,
    PadCrop,
)

STEP_TYPES: dict[str, type[Step]] = {cls.op: cls for cls in BUILT_IN}
"""Every step type by its ``op``: what a recipe's ``"op"`` may name."""


def register(cls: type[Step]) -> type[Step]:
    """Add a step type (of an extension) under its ``op`` name; usable as a class decorator."""
    if cls.op in STEP_TYPES:
        raise ValueError(f"step op '{cls.op}' registered twice")
    STEP_TYPES[cls.op] = cls
    return cls
