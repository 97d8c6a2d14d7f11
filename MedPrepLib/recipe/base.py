"""The contract every recipe step fulfils, its parameter declarations, and its helpers.

A step is a small immutable object built from its JSON parameters. ``apply`` takes the image
(and optionally its label map) and returns the new image, the new label and a *record*: a
JSON-friendly dict with everything needed to describe what was done and, for geometric steps,
to undo it (original grid, crop box, orientation...). Records are stored in provenance.

Geometric steps (``geometric = True``) must transform the label with label-safe interpolation
and implement :meth:`Step.invert_label`, mapping a label map from the step's output grid back
to its input grid (nearest neighbour). Intensity steps leave labels untouched.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..errors import RecipeError
from ..processing.blockwise import blockwise
from ..volume import Volume


def did_you_mean(word: Any, options) -> str:
    """`` (did you mean 'resample'?)`` for a near miss of one of ``options`` (case or a typo), else ``""``.

    >>> did_you_mean("Resample", ["resample", "reorient"])
    " (did you mean 'resample'?)"
    """
    import difflib

    if not isinstance(word, str):
        return ""
    lower = {o.lower(): o for o in options}
    found = difflib.get_close_matches(word.lower(), list(lower), n=1, cutoff=0.75)
    return f" (did you mean '{lower[found[0]]}'?)" if found else ""


class RunContext:
    """What a step may need besides its inputs: dataset statistics, a random seed, progress.

    ``statistics`` holds numbers computed over a training set by a statistics pass (for
    example nnU-Net's CT percentiles), keyed by op name; ``seed`` makes random crops
    reproducible; ``progress`` is a :class:`~MedPrepLib.progress.Progress`.

    While a recipe runs, :func:`~MedPrepLib.recipe.run.run_recipe` also sets
    ``step_number`` (1-based, as in error messages), ``where`` (``"step 3 (zscore)"``) and
    ``progress`` to the part of the run that step covers. ``masks`` maps names to mask volumes a
    caller provides (``{"op": "zscore", "mask": "brain"}``); they must be on the grid of the
    image at that step.
    """

    def __init__(
        self,
        statistics: dict[str, Any] | None = None,
        seed: int = 0,
        progress=None,
        *,
        masks: dict[str, Volume] | None = None,
    ):
        from ..progress import as_progress

        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise RecipeError(f"the seed must be a non-negative integer, got {seed!r}")
        self.statistics = statistics or {}
        self.seed = int(seed)
        self.progress = as_progress(progress)
        self.masks = dict(masks or {})
        self.step_number: int | None = None
        self.where = "recipe"
        # True when the current image array was made by an earlier step of this run (never the
        # caller's): a step producing the same dtype and shape may then write into it in place.
        self.scratch = False
        # Number of cases in a statistics pass (nnU-Net's sample-size rule), None otherwise.
        self.n_cases: int | None = None


REQUIRED: Any = object()
"""Default of a parameter that the recipe must give."""


@dataclass(frozen=True)
class Param:
    """One parameter of a step, declared once on the step class (:attr:`Step.parameters`).

    Everything else is derived from it: :meth:`Step.from_params` reads each parameter by its
    ``kind`` ("number", "integer", "true/false", "one of" ``choices``, "[x, y, z] numbers"...)
    within ``minimum`` / ``positive``, or through ``parse`` (``parse(value, where) -> value``,
    raising :func:`param_error`) for anything else; :meth:`Step.to_params` writes them back in
    this order; "not a parameter" errors list the declared names; ``medprep recipe --list`` and
    ``docs/recipes.md`` are written from here. ``unit`` says mm, voxels, HU... where it applies.
    """

    name: str
    kind: str
    default: Any = REQUIRED
    unit: str = ""
    doc: str = ""
    choices: tuple = ()
    attribute: str = ""
    """The step's attribute holding the value, when it is not ``name``."""
    minimum: float | None = None
    positive: bool = False
    parse: Any = None

    @property
    def required(self) -> bool:
        return self.default is REQUIRED


class Step:
    """Base class of recipe steps. Subclasses set ``op`` and ``parameters`` and implement the methods."""

    op: ClassVar[str] = ""
    geometric: ClassVar[bool] = False
    parameters: ClassVar[tuple[Param, ...]] = ()

    @classmethod
    def read(cls, params: dict[str, Any], where: str) -> Params:
        """A :class:`Params` reader of ``params`` checked against this step's declarations."""
        return Params(params, where, cls.parameters)

    @classmethod
    def from_params(cls, params: dict[str, Any], where: str) -> Step:
        """Validate the JSON parameters (without "op") and build the step.

        ``where`` names the place in the recipe, e.g. ``"step 3 (resample)"``; every
        :class:`RecipeError` message starts with it and names the faulty parameter. Each declared
        parameter is read by its declaration (:meth:`Params.value`), unknown ones are refused,
        then :meth:`validate` checks the rules between parameters. Steps whose parameters are
        alternatives of each other (resample, window) override this.
        """
        p = cls.read(params, where)
        values = {d.attribute or d.name: p.value(d) for d in cls.parameters}
        p.finish()
        step = cls(**values)
        step.validate(where)
        return step

    def validate(self, where: str) -> None:
        """Rules tying parameters together ('max' above 'min'...); raise :func:`param_error`."""

    def to_params(self) -> dict[str, Any]:
        """The JSON parameters, including "op"; ``from_params`` of this gives an equal step.

        Written from the declarations, in their order: every parameter whose value is not None
        (tuples as lists). Steps whose parameters are alternatives (resample, window) override it.
        """
        d: dict[str, Any] = {"op": self.op}
        for p in self.parameters:
            value = getattr(self, p.attribute or p.name)
            if value is not None:
                d[p.name] = list(value) if isinstance(value, tuple) else value
        return d

    def apply(self, image: Volume, label: Volume | None, ctx: RunContext) -> tuple[Volume, Volume | None, dict]:
        """Run the step; returns (image, label, record)."""
        raise NotImplementedError

    def invert_label(self, label: Volume, record: dict) -> Volume:
        """Map a label map from this step's output grid back onto its input grid."""
        if not self.geometric:
            return label
        raise NotImplementedError

    # -- the statistics pass (MedPrepLib.recipe.statistics): steps that need dataset numbers ---
    def needs_statistics(self) -> bool:
        """True when this step cannot run before dataset statistics are measured for it."""
        return False

    def collect_statistics(self, image: Volume, label: Volume | None, ctx: RunContext) -> Any:
        """What this step measures on one case, at its own input (only when it needs statistics)."""
        raise NotImplementedError(f"{self.op} measures no dataset statistics")

    def reduce_statistics(self, parts: list, ctx: RunContext) -> dict:
        """The dataset statistics from every case's :meth:`collect_statistics` (JSON-friendly)."""
        raise NotImplementedError(f"{self.op} measures no dataset statistics")


# -- helpers of the step contract: who owns the output array, what input a step accepts ---------


def output_array(image: Volume, ctx: RunContext | None, dtype=np.float32, shape=None) -> np.ndarray:
    """The array a step writes into: the image's own array when the recipe owns it, else new."""
    dtype = np.dtype(dtype)
    shape = image.shape if shape is None else tuple(shape)
    a = image.array
    if (
        ctx is not None
        and getattr(ctx, "scratch", False)
        and a.dtype == dtype
        and a.shape == shape
        and a.flags.writeable
        and a.flags.c_contiguous
    ):
        return a
    return np.empty(shape, dtype)


def check_finite(image: Volume, where: str) -> None:
    """Raise a RecipeError if a float image holds NaN or infinity (they poison every statistic)."""
    a = image.array
    if a.dtype.kind == "f" and not all(blockwise(lambda b: bool(np.isfinite(b).all()), a)):
        raise RecipeError(f"{where}: the image holds NaN or infinite voxels", hint="fix or mask them before this step")


def mask_name(*kinds: str):
    """A ``Param.parse`` for a ``"mask"`` parameter: one of ``kinds`` (``"all"``, ``"label"``...)
    or the name of a mask volume given to the run; any non-empty text."""
    listed = ", ".join(f'"{k}"' for k in kinds)

    def parse(value, where: str) -> str:
        if not isinstance(value, str) or not value:
            raise param_error(where, "mask", f"must be {listed} or a mask name; got {value!r}")
        return value

    return parse


def param_error(where: str, name: str, problem: str) -> RecipeError:
    """A RecipeError naming the step and the parameter: ``step 2 (window): 'width' must be > 0``."""
    return RecipeError(f"{where}: '{name}' {problem}")


# -- additions for parameter parsing and run state (the contract above is unchanged) -------------

_DECLARED = object()  # "use the declared default" (or REQUIRED without declarations)


class Params:
    """Typed reading of one step's JSON parameters, with errors naming step and parameter.

    With ``declared`` (the step's :class:`Param` list), a default not given in the call is the
    declared one, and reading an undeclared name is a programming error.

    >>> p = Params({"min": -1000, "max": 400}, "step 3 (clip_scale)")
    >>> p.number("min"), p.number("max"), p.number("scale", 1.0)
    (-1000.0, 400.0, 1.0)
    >>> p.finish()
    >>> Params({"presset": "lung"}, "step 2 (window)").finish()
    Traceback (most recent call last):
    ...
    MedPrepLib.errors.RecipeError: step 2 (window): 'presset' is not a parameter of this step (known: none)
    """

    def __init__(self, params: dict[str, Any], where: str, declared: tuple[Param, ...] | None = None):
        if not isinstance(params, dict):
            raise RecipeError(f"{where}: parameters must be a JSON object, got {type(params).__name__}")
        self.params = params
        self.where = where
        self.used: set[str] = set()
        self.declared = {d.name: d for d in declared} if declared is not None else None

    def has(self, name: str) -> bool:
        return name in self.params and self.params[name] is not None

    def value(self, d: Param) -> Any:
        """The value of the declared parameter ``d``: read by its kind and constraints, or
        through its ``parse`` (applied to the default too, so a step holds one form of it)."""
        if d.parse is not None:
            value = self.raw(d.name)
            return None if value is None else d.parse(value, self.where)
        if d.kind == "number":
            return self.number(d.name, minimum=d.minimum, positive=d.positive)
        if d.kind == "integer":
            return self.integer(d.name, minimum=None if d.minimum is None else int(d.minimum))
        if d.kind == "true/false":
            return self.boolean(d.name)
        if d.kind == "one of":
            return self.choice(d.name)
        listed = re.fullmatch(r"\[(.*)\] numbers", d.kind)
        if listed:
            value = self.numbers(d.name, len(listed.group(1).split(",")), positive=d.positive)
            return None if value is None else tuple(value)
        raise RuntimeError(f"{self.where}: parameter '{d.name}' of kind {d.kind!r} needs a parse function")

    def default(self, name: str) -> Any:
        """The declared default of ``name`` (REQUIRED when it has none)."""
        if self.declared is None:
            return REQUIRED
        if name not in self.declared:
            raise RuntimeError(f"{self.where}: the step reads parameter '{name}', which it does not declare")
        return self.declared[name].default

    def raw(self, name: str, default: Any = _DECLARED) -> Any:
        if default is _DECLARED:
            default = self.default(name)
        elif self.declared is not None:
            self.default(name)  # still a declared name
        self.used.add(name)
        if name not in self.params or self.params[name] is None:
            if default is REQUIRED:
                raise param_error(self.where, name, "is required")
            return default
        return self.params[name]

    def _given(self, name: str, default: Any) -> tuple[Any, Any]:
        """(value, resolved default); the value *is* the default when the recipe omits it."""
        if default is _DECLARED:
            default = self.default(name)
        return self.raw(name, default), default

    def number(
        self, name: str, default: Any = _DECLARED, *, minimum: float | None = None, positive: bool = False
    ) -> float:
        value, default = self._given(name, default)
        if value is default and default is not REQUIRED:
            return value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise param_error(self.where, name, f"must be a number, got {value!r}")
        value = float(value)
        if value != value or value in (float("inf"), float("-inf")):
            raise param_error(self.where, name, f"must be finite, got {value!r}")
        if positive and value <= 0:
            raise param_error(self.where, name, f"must be > 0, got {value:g}")
        if minimum is not None and value < minimum:
            raise param_error(self.where, name, f"must be >= {minimum:g}, got {value:g}")
        return value

    def integer(self, name: str, default: Any = _DECLARED, *, minimum: int | None = None) -> int:
        value, default = self._given(name, default)
        if value is default and default is not REQUIRED:
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise param_error(self.where, name, f"must be an integer, got {value!r}")
        if minimum is not None and value < minimum:
            raise param_error(self.where, name, f"must be >= {minimum}, got {value}")
        return value

    def boolean(self, name: str, default: Any = _DECLARED) -> bool:
        value, default = self._given(name, default)
        if not isinstance(value, bool):
            raise param_error(self.where, name, f"must be true or false, got {value!r}")
        return value

    def choice(self, name: str, options=None, default: Any = _DECLARED) -> str:
        value, default = self._given(name, default)
        if options is None:
            options = self.declared[name].choices if self.declared else ()
        if value is default and default is not REQUIRED:
            return value
        if value not in options:
            raise param_error(self.where, name, f"must be one of {', '.join(map(str, options))}; got {value!r}")
        return value

    def numbers(self, name: str, count: int, default: Any = _DECLARED, *, positive: bool = False) -> tuple:
        value, default = self._given(name, default)
        if value is default and default is not REQUIRED:
            return value
        if not isinstance(value, (list, tuple)) or len(value) != count:
            raise param_error(self.where, name, f"must be a list of {count} numbers, got {value!r}")
        out = []
        for v in value:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v:
                raise param_error(self.where, name, f"must be a list of {count} numbers, got {value!r}")
            if positive and v <= 0:
                raise param_error(self.where, name, f"values must be > 0, got {value!r}")
            out.append(float(v))
        return tuple(out)

    def finish(self) -> None:
        """Reject parameters this step does not know (a typo must not be silently ignored)."""
        unknown = sorted(set(self.params) - self.used - {"op"})
        if unknown:
            names = sorted(self.declared) if self.declared is not None else sorted(self.used)
            known = ", ".join(names) or "none"
            guess = did_you_mean(unknown[0], names).strip(" ()")
            guess = f"{guess} " if guess else ""
            raise param_error(self.where, unknown[0], f"is not a parameter of this step ({guess}known: {known})")


def parse_shape(value: Any, where: str, name: str = "shape") -> tuple[int, int, int]:
    """A JSON shape [x, y, z] of positive whole numbers of voxels (``64.0`` from a tool that writes
    every number as a float is 64); a :class:`RecipeError` naming step and parameter otherwise."""
    if isinstance(value, (list, tuple)) and len(value) == 3:
        out = []
        for v in value:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v or v in (float("inf"), float("-inf")):
                break
            if v < 1 or v != int(v):
                break
            out.append(int(v))
        else:
            return tuple(out)
    raise param_error(where, name, f"must be a list of 3 positive integers (x, y, z), got {value!r}")


MAX_OUTPUT_VOXELS = 1 << 31
"""Largest grid (voxels, all channels) a geometric step may create: 8 GB of float32. Beyond it
a typo in a spacing or shape (0.01 mm for 1 mm) would end in a MemoryError deep in numpy."""


def check_output_grid(where: str, name: str, size, n_channels: int = 1) -> None:
    """Refuse a step output of ``size`` (voxels, (x, y, z)) larger than :data:`MAX_OUTPUT_VOXELS`,
    naming the step and the parameter ``name`` that asked for it."""
    voxels = 1
    for n in size:
        voxels *= int(n)
    voxels *= max(int(n_channels), 1)
    if voxels > MAX_OUTPUT_VOXELS:
        shape = " x ".join(str(int(n)) for n in size)
        raise param_error(
            where,
            name,
            f"asks for a {shape} voxel grid (x, y, z){f' x {n_channels} channels' if n_channels > 1 else ''}, "
            f"{voxels:.3g} voxels, more than the limit of {MAX_OUTPUT_VOXELS:.3g}; check its value ((x, y, z); spacing in mm, shape in voxels)",
        )


def step_statistics(ctx: RunContext, op: str) -> dict[str, Any] | None:
    """The dataset statistics for the step now running (see :class:`RunContext`).

    Looked up first by step number (``statistics["steps"]["3"]``, as written by
    :func:`~MedPrepLib.recipe.statistics.compute_statistics`), then by op name
    (``statistics["ct_normalization"]``, convenient for hand-written files).
    """
    stats = ctx.statistics or {}
    number = getattr(ctx, "step_number", None)
    by_step = stats.get("steps") if isinstance(stats.get("steps"), dict) else {}
    if number is not None and str(number) in by_step:
        entry = by_step[str(number)]
        if isinstance(entry, dict) and entry.get("op", op) != op:
            raise RecipeError(
                f"{ctx.where}: the statistics given for step {number} are for '{entry.get('op')}', not '{op}'",
                hint="they were computed for another recipe; measure them for this one (medprep statistics --recipe)",
            )
        return entry
    value = stats.get(op)
    return value if isinstance(value, dict) else None
