"""Recipe outputs pinned by their sha256: a refactor of the engine or the steps (issue 8) must
leave every voxel, every label and every provenance byte as it was.

The cases run the built-in chest CT phantom (oblique, so every geometric path is taken) through
recipes covering each step and each interpolation. ``Testing/pinned_recipe_outputs.json`` holds
the hashes; they were made with the code *before* the refactor. If a dependency update (numpy,
scipy, SimpleITK) moves the last bit of a float, check that the difference is that and nothing
more, then re-pin: ``python Testing/test_recipe_pinned_outputs.py --write``.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

PINS = Path(__file__).with_name("pinned_recipe_outputs.json")

RECIPES = {
    "ct_chain": [
        {"op": "pad_to_air"},
        {"op": "resample", "spacing": [1.5, 1.5, 2.0], "interpolation": "linear"},
        {"op": "reorient", "to": "RAS"},
        {"op": "crop_body", "threshold_hu": -500, "margin_mm": 10},
        {"op": "window", "preset": "lung"},
    ],
    "bspline_label_linear": [
        {"op": "resample", "spacing": [1.1, 0.9, 1.7], "interpolation": "bspline", "label_interpolation": "label_linear"},
        {"op": "clip_scale", "min": -1000, "max": 400, "out": [-1, 1]},
    ],
    "nearest_shape_anisotropic": [
        {"op": "resample", "shape": [40, 36, 30], "interpolation": "nearest", "anisotropic_axis_interpolation": "nearest"},
        {"op": "pad_crop", "shape": [48, 30, 32], "mode": "random"},
        {"op": "cast", "dtype": "int16", "clip": True},
    ],
    "normalisations": [
        {"op": "ct_normalization", "mean": 20.5, "std": 180.0, "percentile_00_5": -950, "percentile_99_5": 900},
        {"op": "zero_center", "mean": 0.25},
        {"op": "crop_label", "margin_mm": 3},
    ],
    "zscore_masks_windows": [
        {"op": "zscore", "mask": "label", "fill_outside": 0},
        {"op": "crop_nonzero", "margin_mm": 2},
        {"op": "reorient", "to": "LAS"},
    ],
    "stacked_windows_uint8": [{"op": "window", "presets": ["lung", "bone", {"level": 40, "width": 400}], "output": "uint8"}],
    "n4_small": [
        {"op": "resample", "spacing": [4.0, 4.0, 4.0]},
        {"op": "n4", "shrink_factor": 2, "iterations": [5, 5], "mask": "all"},
    ],
}


def _case():
    from MedPrepLib.demo import threshold_labels
    from MedPrepLib.sampledata import chest_ct_phantom
    from MedPrepLib.volume import Volume

    ct = chest_ct_phantom()
    label = threshold_labels(ct)
    a, b = np.radians(20.0), np.radians(-12.0)  # oblique: rotated about z, then about x
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    geometry = ct.geometry.replace(direction=rx @ rz)
    return Volume(ct.array, geometry, metadata=dict(ct.metadata)), Volume(label.array, geometry)


def _digest(name: str, steps: list) -> dict:
    from MedPrepLib.recipe import Recipe, run_recipe

    ct, label = _case()
    result = run_recipe(Recipe.from_dict({"version": 1, "steps": steps}), ct, label, seed=7)
    provenance = dict(result.provenance)
    provenance.pop("software", None)

    def h(a: np.ndarray) -> str:
        return hashlib.sha256(str(a.dtype).encode() + str(a.shape).encode() + np.ascontiguousarray(a).tobytes()).hexdigest()

    return {
        "image": h(result.image.array),
        "label": h(result.label.array),
        "geometry": hashlib.sha256(json.dumps(result.image.geometry.to_dict(), sort_keys=True).encode()).hexdigest(),
        "provenance": hashlib.sha256(json.dumps(provenance, sort_keys=True).encode()).hexdigest(),
    }


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_output_is_byte_identical_to_its_pin(name):
    pins = json.loads(PINS.read_text())
    assert _digest(name, RECIPES[name]) == pins[name]


if __name__ == "__main__":  # pragma: no cover - re-pinning, see the module docstring
    if "--write" in sys.argv:
        PINS.write_text(json.dumps({n: _digest(n, s) for n, s in sorted(RECIPES.items())}, indent=1) + "\n")
        print(f"wrote {PINS}")
