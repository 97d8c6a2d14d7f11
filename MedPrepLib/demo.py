"""The demonstration run behind ``medprep demo``: built-in phantom -> DICOM -> dataset-ready files.

Each stage is what a user does on their own data, through the same public API:

1. write the synthetic chest CT phantom as a DICOM series (``dicom/``);
2. scan the folder (:func:`~MedPrepLib.dicom.scan.scan`) and load the one stack found, in HU
   with exact geometry (:func:`~MedPrepLib.dicom.load.load_stack`) -> ``ct.nii.gz``;
3. make a reference label map by thresholds (lungs 1, bone 2) -> ``label.nii.gz``;
4. run the demo recipe (padding to air, 1.5 mm resampling, RAS, crop to the body, CT window
   to [0, 1]) on image and label -> ``ct_preprocessed.nii.gz``, ``label_preprocessed.nii.gz``,
   with ``recipe.json`` and ``provenance.json`` beside them;
5. map the preprocessed label back onto the original grid (``label_restored.nii.gz``), as a
   prediction would be, and report the Dice overlap per label with the original.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .atomic import make_folder
from .progress import as_progress
from .sampledata import chest_ct_phantom, write_ct_series
from .volume import Volume

DEMO_RECIPE = {
    "version": 1,
    "name": "medprep-demo-chest-ct",
    "steps": [
        {"op": "pad_to_air"},
        {"op": "resample", "spacing": [1.5, 1.5, 1.5], "interpolation": "linear"},
        {"op": "reorient", "to": "RAS"},
        {"op": "crop_body", "threshold_hu": -500, "margin_mm": 10},
        {"op": "clip_scale", "min": -1000, "max": 400},
    ],
}

LABELS = {1: "lungs", 2: "bone"}


@dataclass
class DemoReport:
    """What the demo wrote (name -> path) and a human-readable account of it."""

    out: Path
    files: dict[str, Path] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)
    dice: dict[str, float] = field(default_factory=dict)


def threshold_labels(ct: Volume) -> Volume:
    """A reference label map from HU thresholds: 1 = lungs (-950..-600 HU inside the body),
    2 = bone (>= 300 HU). Same grid as ``ct``; uint8."""
    from scipy import ndimage

    hu = ct.array
    body = ndimage.binary_fill_holes(hu > -500, structure=np.ones((1, 3, 3), bool))
    labels = np.zeros(hu.shape, np.uint8)
    labels[body & (hu > -950) & (hu < -600)] = 1
    labels[hu >= 300] = 2
    return Volume(labels, ct.geometry)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap 2|A∩B| / (|A| + |B|) of two boolean masks (1.0 when both are empty)."""
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


def run_demo(out: str | Path, *, overwrite: bool = False, progress=None) -> DemoReport:
    """Run the demo into folder ``out``; returns what was written and a text report."""
    from .dicom.load import load_stack
    from .dicom.scan import scan
    from .imageio import write_image
    from .recipe import Recipe, run_recipe, write_json
    from .recipe.invert import restore_label

    prog = as_progress(progress)
    out = Path(out)
    make_folder(out)
    report = DemoReport(out)
    files = report.files

    prog.update("writing the DICOM phantom", 0.0)
    phantom = chest_ct_phantom()
    files["dicom"] = out / "dicom"
    paths = write_ct_series(phantom, files["dicom"], overwrite=overwrite)

    found = scan(files["dicom"], cache=False, progress=prog.sub(0.1, 0.2))
    stack = found.stacks[0]
    ct = load_stack(stack, progress=prog.sub(0.2, 0.4))
    g = ct.geometry
    report.lines.append(
        f"DICOM: {len(paths)} files -> {len(found.stacks)} stack ({stack.id}, {stack.modality}), "
        f"{len(found.skipped)} skipped"
    )
    report.lines.append(
        f"Loaded {g.size[0]}x{g.size[1]}x{g.size[2]} voxels at {g.spacing[0]:g}x{g.spacing[1]:g}x{g.spacing[2]:g} mm, "
        f"{g.orientation}, {ct.dtype}, HU {ct.value_range()[0]:g} .. {ct.value_range()[1]:g} "
        f"(-3024 = PixelPaddingValue outside the reconstruction circle)"
    )
    files["ct"] = write_image(ct, out / "ct.nii.gz", overwrite=overwrite)
    label = threshold_labels(ct)
    files["label"] = write_image(label, out / "label.nii.gz", overwrite=overwrite)

    recipe = Recipe.from_dict(DEMO_RECIPE)
    files["recipe"] = recipe.save(out / "recipe.json", overwrite=overwrite)
    result = run_recipe(recipe, ct, label, progress=prog.sub(0.45, 0.85))
    files["ct_preprocessed"] = write_image(result.image, out / "ct_preprocessed.nii.gz", overwrite=overwrite)
    files["label_preprocessed"] = write_image(result.label, out / "label_preprocessed.nii.gz", overwrite=overwrite)
    files["provenance"] = write_json(result.provenance, out / "provenance.json", overwrite=overwrite)
    pg = result.image.geometry
    report.lines.append(
        f"Preprocessed ({len(recipe.steps)} steps: {', '.join(s.op for s in recipe.steps)}): "
        f"{pg.size[0]}x{pg.size[1]}x{pg.size[2]} at {pg.spacing[0]:g} mm, {pg.orientation}, "
        f"values {result.image.value_range()[0]:g} .. {result.image.value_range()[1]:g}"
    )

    restored = restore_label(result.label, result.provenance, progress=prog.sub(0.85, 0.95))
    files["label_restored"] = write_image(restored, out / "label_restored.nii.gz", overwrite=overwrite)
    for value, name in LABELS.items():
        report.dice[name] = dice(restored.array == value, label.array == value)
    report.lines.append(
        "Label restored onto the original grid, Dice vs original: "
        + ", ".join(f"{name} {d:.3f}" for name, d in report.dice.items())
    )
    report.lines.append("Files: " + ", ".join(p.name for k, p in files.items()))
    prog.update("demo done", 1.0)
    return report
