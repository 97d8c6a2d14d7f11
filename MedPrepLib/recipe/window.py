"""Display windows (level/width) as a normalisation: presets, the series' own window, stacks.

The formula (a plain linear window, **not** DICOM PS3.3 C.11.2.1.2's, whose ``-0.5`` and
``W - 1`` terms describe display pixel values rather than a continuous mapping)::

    lo = L - W / 2
    y  = clip((x - lo) * (1 / W), 0, 1)              # "output": "float32" (default)
    y8 = rint(clip((x - lo) * (255 / W), 0, 255))    # "output": "uint8", ties to even

with ``x`` in the image's units (HU for CT), ``L`` the level (centre) and ``W`` the width, so
``[L - W/2, L + W/2]`` maps onto ``[0, 1]`` (or [0, 255]). Arithmetic is float32 with
``lo`` and the scale rounded to float32 once.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import RecipeError
from ..processing.blockwise import as_float32, blockwise, scratch_buffer
from .base import REQUIRED, Param, Params, Step, check_finite, output_array, param_error

PRESETS: dict[str, tuple[float, float]] = {
    # name: (level, width) in HU
    "lung": (-600.0, 1500.0),
    "mediastinum": (50.0, 350.0),
    "abdomen": (40.0, 400.0),
    "liver": (30.0, 150.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
    "subdural": (75.0, 215.0),
}
"""CT window presets, (level, width) in HU."""


def _parse_window(value, where: str, name: str) -> dict:
    """One window given as a preset name or a {"level", "width"} object."""
    if isinstance(value, str):
        if value not in PRESETS:
            raise param_error(where, name, f"names an unknown preset {value!r} (known: {', '.join(PRESETS)})")
        level, width = PRESETS[value]
        return {"preset": value, "level": level, "width": width}
    if isinstance(value, dict):
        p = Params(value, f"{where}, '{name}'")
        if p.has("preset"):
            w = _parse_window(p.raw("preset"), where, name)
        else:
            w = {"level": p.number("level"), "width": p.number("width", positive=True)}
        p.finish()
        return w
    raise param_error(where, name, f'must hold preset names or {{"level", "width"}} objects, got {value!r}')


@dataclass(frozen=True)
class Window(Step):
    """Window an image (HU for CT) onto [0, 1] float32 or [0, 255] uint8 (see module docstring).

    Give exactly one of: ``"preset"`` (``lung``, ``mediastinum``, ``abdomen``, ``liver``,
    ``bone``, ``brain``, ``subdural``); ``"level"`` + ``"width"``; ``"from_series": true`` (the
    series' WindowCenter/WindowWidth from ``metadata["window_center"]``/``["window_width"]``,
    entry ``"window_index"`` when it holds several); or ``"presets"``/``"windows"`` (or a list
    given as ``"preset"``), a list of presets or ``{"level", "width"}`` objects stacked as
    channels, output (z, y, x, c).
    """

    op = "window"
    parameters = (
        Param("preset", "preset name, or a list of them", None, "", "a CT window preset (below); a list stacks them as channels"),
        Param("level", "number", None, "HU", "window centre, with 'width'"),
        Param("width", "number", None, "HU", "window width (> 0), with 'level'"),
        Param("from_series", "true/false", None, "", "the series' own WindowCenter / WindowWidth"),
        Param("window_index", "integer", 0, "", "with 'from_series': which of the series' windows"),
        Param("presets", "list of presets or {level, width}", None, "", "several windows stacked as channels (z, y, x, c)"),
        Param("windows", "list of presets or {level, width}", None, "", "the same as 'presets'"),
        Param("output", "one of", "float32", "", "[0, 1] float32 or [0, 255] uint8", ("float32", "uint8")),
    )
    windows: tuple = ()  # tuple of dicts {"preset"?, "level", "width"}; empty with from_series
    from_series: bool = False
    window_index: int = 0
    output: str = "float32"
    stacked: bool = False

    @classmethod
    def from_params(cls, params, where):
        p = cls.read(params, where)
        given = [k for k in ("preset", "level", "from_series", "presets", "windows") if p.has(k)]
        if p.has("width") and "level" not in given:
            raise param_error(where, "level", "is required with 'width'")
        if len(given) != 1:
            raise RecipeError(
                f"{where}: give exactly one of 'preset', 'level'+'width', 'from_series', 'presets' "
                f"or 'windows' (got {', '.join(given) or 'none'})"
            )
        kind = given[0]
        from_series, stacked, window_index = False, False, 0
        if kind == "preset" and isinstance(p.params["preset"], list):
            kind = "preset_list"  # "preset": ["lung", "bone"] reads as the stacked form
        if kind == "preset":
            windows = (_parse_window(p.raw("preset"), where, "preset"),)
        elif kind == "level":
            windows = ({"level": p.number("level"), "width": p.number("width", REQUIRED, positive=True)},)
        elif kind == "from_series":
            from_series = p.boolean("from_series", REQUIRED)
            if not from_series:
                raise param_error(where, "from_series", "must be true when given")
            window_index = p.integer("window_index", minimum=0)
            windows = ()
        else:
            name = "preset" if kind == "preset_list" else kind
            items = p.raw(name)
            if not isinstance(items, list) or not items:
                raise param_error(where, name, "must be a non-empty list")
            windows = tuple(_parse_window(v, where, name) for v in items)
            stacked = True
        output = p.choice("output")
        p.finish()
        return cls(windows=windows, from_series=from_series, window_index=window_index, output=output, stacked=stacked)

    def to_params(self):
        d: dict = {"op": self.op}
        if self.from_series:
            d["from_series"] = True
            d["window_index"] = self.window_index
        elif self.stacked:
            d["windows"] = [
                w["preset"] if "preset" in w else {"level": w["level"], "width": w["width"]} for w in self.windows
            ]
        elif "preset" in self.windows[0]:
            d["preset"] = self.windows[0]["preset"]
        else:
            d["level"], d["width"] = self.windows[0]["level"], self.windows[0]["width"]
        d["output"] = self.output
        return d

    def _series_window(self, image, where) -> dict:
        centers = image.metadata.get("window_center")
        widths = image.metadata.get("window_width")
        centers = [centers] if isinstance(centers, (int, float)) else list(centers or [])
        widths = [widths] if isinstance(widths, (int, float)) else list(widths or [])
        if len(centers) <= self.window_index or len(widths) <= self.window_index:
            raise RecipeError(
                f"{where}: the series has no WindowCenter/WindowWidth entry {self.window_index} "
                f"(it has {min(len(centers), len(widths))})",
                hint="use a 'preset' or 'level'/'width' instead",
            )
        level, width = float(centers[self.window_index]), float(widths[self.window_index])
        if width <= 0:
            raise RecipeError(f"{where}: the series' WindowWidth is {width:g}, not a usable window")
        return {"level": level, "width": width, "source": "series"}

    def apply(self, image, label, ctx):
        check_finite(image, ctx.where)
        windows = (self._series_window(image, ctx.where),) if self.from_series else self.windows
        dtype = np.uint8 if self.output == "uint8" else np.float32
        a = image.array
        if self.stacked:
            if a.ndim != 3:
                raise RecipeError(f"{ctx.where}: stacked windows need a single-channel image, got shape {a.shape}")
            out = np.empty((*a.shape, len(windows)), dtype)
            for c, w in enumerate(windows):
                _window_into(a, out[..., c], w["level"], w["width"], self.output)
        else:
            out = output_array(image, ctx, dtype)
            _window_into(a, out, windows[0]["level"], windows[0]["width"], self.output)
        record = {"windows": [dict(w) for w in windows], "output": self.output, "formula": "clip((x-(L-W/2))/W,0,1)"}
        return image.with_array(out), label, record


def _window_into(src: np.ndarray, dst: np.ndarray, level: float, width: float, output: str) -> None:
    lo = np.float32(level - width / 2.0)
    top = 255.0 if output == "uint8" else 1.0
    scale = np.float32(top / width)
    one = np.float32(top)

    if output == "uint8":

        def fn(s, d):
            work = scratch_buffer(s.size, np.float32).reshape(s.shape)
            as_float32(s, work)
            np.subtract(work, lo, out=work)
            np.multiply(work, scale, out=work)
            np.clip(work, np.float32(0), one, out=work)
            np.rint(work, out=work)
            np.copyto(d, work, casting="unsafe")

    else:

        def fn(s, d):
            as_float32(s, d)
            np.subtract(d, lo, out=d)
            np.multiply(d, scale, out=d)
            np.clip(d, np.float32(0), one, out=d)

    blockwise(fn, src, dst)
