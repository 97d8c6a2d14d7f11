"""``medprep preprocess INPUT OUTPUT --recipe R.json``: run a recipe on one image (and label).

INPUT is an image file (NIfTI, NRRD, MetaImage...) or a DICOM file/folder (``--series`` picks
one series). OUTPUT's ending chooses its format. Beside it goes the provenance JSON
(``OUTPUT`` minus its ending plus ``.provenance.json`` unless ``--provenance``), which
``medprep restore`` uses to map predictions back. Nothing is overwritten without
``--overwrite``; the outputs are checked before any work starts.
"""

from __future__ import annotations

from pathlib import Path

from ..atomic import check_writable, refuse_overwriting_inputs
from ..errors import InputError, RecipeError
from ..imageio import check_image_output, is_image_file, path_beside, read_image, write_image
from ..progress import as_progress
from ..recipe import Recipe, label_on_image_grid, load_statistics, run_recipe, write_json
from .arguments import add_input_output, add_overwrite, add_series

HELP = "apply a preprocessing recipe (JSON) to an image and optionally its label map"
DESCRIPTION = (
    "Run a preprocessing recipe on one image (and its label map) and record provenance "
    "for medprep restore."
)


def add_arguments(p) -> None:
    add_input_output(p, "image file or DICOM file/folder", "output image file (.nii.gz, .nrrd, .mha, ...)")
    p.add_argument("--recipe", required=True, help="recipe JSON file")
    p.add_argument("--label", help="label map on the input image's grid")
    p.add_argument("--label-output", help="where to write the preprocessed label map (needs --label)")
    add_series(p, "DICOM series to use when INPUT holds several (SeriesInstanceUID or stack id)")
    p.add_argument("--provenance", help="provenance JSON path (default: beside OUTPUT, .provenance.json)")
    p.add_argument("--statistics", help="dataset statistics JSON (statistics pass, or an nnU-Net fingerprint)")
    p.add_argument("--seed", type=int, default=0, help="seed for random steps, a non-negative integer (default 0)")
    add_overwrite(p, "replace existing output files")


def default_provenance_path(output: str | Path) -> Path:
    """``out/ct.nii.gz`` -> ``out/ct.provenance.json``."""
    return path_beside(output, ".provenance.json")


def read_input(path: str | Path, series: str | None = None, progress=None):
    """The command's input volume (:func:`MedPrepLib.sources.load_path`), or "input not found"."""
    from ..sources import load_path

    if not Path(path).exists():
        raise InputError("input not found", path=path)
    if series is not None and Path(path).is_file() and is_image_file(path):
        raise InputError("--series applies to DICOM input only", path=path)
    return load_path(path, series=series, progress=progress)


def run(args) -> int:
    recipe = Recipe.load(args.recipe)
    if args.label_output and not args.label:
        raise InputError("--label-output needs --label")
    if args.label and not args.label_output:
        raise InputError(
            "--label is given without --label-output: the preprocessed label map would be computed and thrown away",
            path=args.label,
            hint="add --label-output FILE",
        )
    outputs = [Path(args.output), Path(args.provenance) if args.provenance else default_provenance_path(args.output)]
    if args.label_output:
        outputs.append(Path(args.label_output))
    if len({o.resolve() for o in outputs}) != len(outputs):
        raise InputError("output, label output and provenance must be different files")
    inputs = [args.input, args.label, args.recipe, args.statistics]
    refuse_overwriting_inputs(outputs, [Path(i) for i in inputs if i])
    for image_output in (outputs[0], *outputs[2:]):
        check_image_output(image_output, overwrite=args.overwrite)
    if not outputs[1].parent.is_dir():
        raise InputError("provenance folder does not exist", path=outputs[1].parent)
    check_writable(outputs[1], overwrite=args.overwrite)
    statistics = load_statistics(args.statistics) if args.statistics else None

    progress = as_progress(args.progress)
    image = read_input(args.input, args.series, progress.sub(0.0, 0.3))
    label = read_image(args.label) if args.label else None
    if label is not None:
        try:
            label = label_on_image_grid(label, image)
        except RecipeError as exc:
            raise InputError(exc.message, path=args.label, hint=exc.hint) from None

    result = run_recipe(recipe, image, label, statistics=statistics, seed=args.seed, progress=progress.sub(0.3, 0.9))
    write_image(result.image, outputs[0], overwrite=args.overwrite, progress=progress.sub(0.9, 0.98))
    if args.label_output:
        write_image(result.label, outputs[2], overwrite=args.overwrite, progress=progress.sub(0.98, 1.0))
    write_json(result.provenance, outputs[1], overwrite=args.overwrite)
    shape = " x ".join(map(str, result.image.geometry.size))
    channels = f" x {result.image.n_channels} channels" if result.image.n_channels > 1 else ""
    spacing = ", ".join(f"{s:.4g}" for s in result.image.spacing)
    print(
        f"wrote {outputs[0]} ({shape}{channels}, spacing {spacing} mm, {result.image.dtype}); provenance {outputs[1]}"
    )
    if args.label_output:
        print(f"wrote {outputs[2]} (label, {result.label.dtype})")
    return 0
