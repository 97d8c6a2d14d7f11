"""The recipe reference, written from the step classes' own declarations (:class:`~.base.Param`).

``medprep recipe --list`` prints it as text, ``medprep recipe --markdown`` as the Markdown of
``docs/recipes.md``; a test keeps that file equal to what this module writes, so the
documentation cannot drift from the code.
"""

from __future__ import annotations

import inspect
import json
import re

from .base import Param, Step
from .schema import SCHEMA_VERSION
from .steps import STEP_TYPES
from .window import PRESETS

GROUPS = (
    ("Intensity", ("pad_to_air", "clip_scale", "window", "zscore", "ct_normalization", "zero_center", "n4", "cast")),
    ("Geometry", ("resample", "reorient", "crop_body", "crop_nonzero", "crop_label", "pad_crop")),
)
"""Sections of the reference; a step in none of them is listed under 'Other'."""


def _plain(text: str) -> str:
    """reST of a docstring as Markdown: ``x`` -> `x`, :func:`~a.b.c` -> `c`, no pointer to a
    module docstring the reader of the reference does not see."""
    text = re.sub(r":\w+:`~?([^`]*)`", lambda m: "`" + m.group(1).split(".")[-1] + "`", text)
    text = re.sub(r"\s*\(see (the )?module docstring[^)]*\)", "", text)
    return text.replace("``", "`")


def _summary(step: type[Step]) -> tuple[str, str]:
    """(first line, rest) of a step class's docstring, in Markdown."""
    doc = _plain(inspect.getdoc(step) or "")
    first, _, rest = doc.partition("\n")
    return first.strip(), rest.strip()


def _default(p: Param) -> str:
    if p.required:
        return "required"
    if p.default is None:
        return "none"
    return json.dumps(list(p.default) if isinstance(p.default, tuple) else p.default)


def _kind(p: Param) -> str:
    text = f"{p.kind} {', '.join(map(str, p.choices))}" if p.choices else p.kind
    if p.minimum is not None:
        text += f" ≥ {p.minimum:g}"
    if p.positive:
        text += " > 0"
    return text


def _ordered_ops() -> list[tuple[str, list[str]]]:
    placed = {op for _, ops in GROUPS for op in ops}
    sections = [(title, [op for op in ops if op in STEP_TYPES]) for title, ops in GROUPS]
    others = sorted(set(STEP_TYPES) - placed)
    if others:
        sections.append(("Other", others))
    return sections


def markdown() -> str:
    """The whole reference as Markdown (``docs/recipes.md``)."""
    lines = [
        "# Recipe reference",
        "",
        "<!-- Written by `medprep recipe --markdown` from the step classes; Testing/test_recipe_reference.py",
        "     keeps this file equal to it. Edit the steps' `parameters`, not this file. -->",
        "",
        f'A recipe is a JSON object `{{"version": {SCHEMA_VERSION}, "steps": [...]}}`; each step is an object with',
        'its `"op"` and the parameters below (omitted ones take their default). Spacings and shapes are',
        "(x, y, z) as in SimpleITK; physical coordinates are LPS millimetres; HU are Hounsfield units",
        "(CT after RescaleSlope/Intercept). Steps run in order; `medprep recipe --check R.json` validates",
        "a file, `medprep preprocess` runs it, and the provenance it writes lets `medprep restore` undo",
        "the geometric steps.",
        "",
    ]
    for title, ops in _ordered_ops():
        lines += [f"## {title}", ""]
        for op in ops:
            step = STEP_TYPES[op]
            first, rest = _summary(step)
            lines += [f"### `{op}`", "", first, ""]
            if rest:
                lines += [rest, ""]
            if step.parameters:
                lines += ["| parameter | type | default | unit | meaning |", "| --- | --- | --- | --- | --- |"]
                for p in step.parameters:
                    doc = p.doc.replace("|", "\\|")
                    lines.append(f"| `{p.name}` | {_kind(p)} | {_default(p)} | {p.unit or ''} | {doc} |")
            else:
                lines.append("No parameters.")
            lines.append("")
    lines += [
        "## Window presets",
        "",
        "For the `window` step's `preset` (level and width in HU).",
        "",
        "| preset | level | width |",
        "| --- | --- | --- |",
    ]
    lines += [f"| `{name}` | {level:g} | {width:g} |" for name, (level, width) in PRESETS.items()]
    return "\n".join(lines) + "\n"


def text() -> str:
    """A compact listing for the terminal: every op, its parameters with type, default and unit."""
    out = []
    for title, ops in _ordered_ops():
        out.append(f"{title}:")
        for op in ops:
            step = STEP_TYPES[op]
            out.append(f"  {op}: {_summary(step)[0]}")
            for p in step.parameters:
                unit = f" [{p.unit}]" if p.unit else ""
                out.append(f"      {p.name} ({_kind(p)}{unit}; default {_default(p)}): {p.doc}")
    out.append("Window presets (level / width, HU): " + ", ".join(f"{n} {lv:g}/{w:g}" for n, (lv, w) in PRESETS.items()))
    return "\n".join(out) + "\n"
