"""The contract every recipe step fulfils, and the registry of steps by ``op`` name.

A step is a small immutable object built from its JSON parameters. ``apply`` takes the image
(and optionally its label map) and returns the new image, the new label and a *record*: a
JSON-friendly dict with everything needed to describe what was done and, for geometric steps,
to undo it (original grid, crop box, orientation...). Records are stored in provenance.

Geometric steps (``geometric = True``) must transform the label with label-safe interpolation
and implement :meth:`Step.invert_label`, mapping a label map from the step's output grid back
to its input grid (nearest neighbour). Intensity steps leave labels untouched.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ..errors import RecipeError
from ..volume import Volume

STEP_TYPES: dict[str, type[Step]] = {}


def register(cls: type[Step]) -> type[Step]:
    """Class decorator adding a step type to :data:`STEP_TYPES` under its ``op`` name."""
    if cls.op in STEP_TYPES:
        raise ValueError(f"step op '{cls.op}' registered twice")
    STEP_TYPES[cls.op] = cls
    return cls


class RunContext:
    """What a step may need besides its inputs: dataset statistics, a random seed, progress.

    ``statistics`` holds numbers computed over a training set by a statistics pass (for
    example nnU-Net's CT percentiles), keyed by op name; ``seed`` makes random crops
    reproducible; ``progress`` is a :class:`~MedPrepLib.progress.Progress`.
    """

    def __init__(self, statistics: dict[str, Any] | None = None, seed: int = 0, progress=None):
        from ..progress import as_progress

        self.statistics = statistics or {}
        self.seed = seed
        self.progress = as_progress(progress)


class Step:
    """Base class of recipe steps. Subclasses set ``op`` and implement the methods."""

    op: ClassVar[str] = ""
    geometric: ClassVar[bool] = False

    @classmethod
    def from_params(cls, params: dict[str, Any], where: str) -> Step:
        """Validate the JSON parameters (without "op") and build the step.

        ``where`` names the place in the recipe, e.g. ``"step 3 (resample)"``; every
        :class:`RecipeError` message starts with it and names the faulty parameter.
        """
        raise NotImplementedError

    def to_params(self) -> dict[str, Any]:
        """The JSON parameters, including "op"; ``from_params`` of this gives an equal step."""
        raise NotImplementedError

    def apply(self, image: Volume, label: Volume | None, ctx: RunContext) -> tuple[Volume, Volume | None, dict]:
        """Run the step; returns (image, label, record)."""
        raise NotImplementedError

    def invert_label(self, label: Volume, record: dict) -> Volume:
        """Map a label map from this step's output grid back onto its input grid."""
        if not self.geometric:
            return label
        raise NotImplementedError


def param_error(where: str, name: str, problem: str) -> RecipeError:
    """A RecipeError naming the step and the parameter: ``step 2 (window): 'width' must be > 0``."""
    return RecipeError(f"{where}: '{name}' {problem}")
