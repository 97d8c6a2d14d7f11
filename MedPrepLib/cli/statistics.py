"""``medprep statistics INPUT... -o stats.json [--recipe R.json] [--labels L...]``: the statistics pass.

Some steps need numbers measured over the whole training set before any case can be
preprocessed: ``ct_normalization`` (nnU-Net's foreground mean, std and 0.5 / 99.5 percentiles)
and ``zero_center`` with ``"mean": "dataset"``. This command measures them and writes the file
that ``medprep preprocess --statistics`` reads.

* With ``--recipe``: every statistic the recipe needs, each measured where its step will see
  the data (after the resampling or cropping before it), keyed by step number
  (:func:`~MedPrepLib.recipe.compute_statistics`).
* Without: nnU-Net's foreground intensity properties per channel
  (``foreground_intensity_properties_per_channel``, as in its ``dataset_fingerprint.json``),
  which any recipe's ``ct_normalization`` step accepts.

``--labels`` gives one label map per input, in the same order (foreground = label > 0).
"""

from __future__ import annotations

from pathlib import Path

from ..atomic import check_writable, refuse_overwriting_inputs
from ..errors import InputError, RecipeError
from ..imageio import read_image
from ..progress import as_progress
from ..recipe import Recipe, compute_statistics, label_on_image_grid, write_json
from .arguments import add_overwrite
from .preprocess import read_input

HELP = "measure the dataset statistics a recipe needs (nnU-Net CT normalisation, dataset mean)"
DESCRIPTION = (
    "The statistics pass over a training set; its output is what `medprep preprocess "
    "--statistics` reads."
)


def add_arguments(p) -> None:
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or DICOM files/folders, one per case")
    p.add_argument("-o", "--output", required=True, help="statistics JSON to write")
    p.add_argument("--recipe", help="recipe JSON: measure what its steps need (default: nnU-Net's foreground properties)")
    p.add_argument("--labels", nargs="+", metavar="LABEL", help="one label map per INPUT, same order (foreground = label > 0)")
    p.add_argument("--channels", type=int, default=1, help="without --recipe: channels of the images (default 1)")
    p.add_argument("--seed", type=int, help="without --recipe: seed of the foreground sampling (default 1234, as nnU-Net)")
    p.add_argument(
        "--samples-per-case",
        type=int,
        help="without --recipe: foreground voxels sampled per case (default nnU-Net's 10e7 / number of cases)",
    )
    add_overwrite(p)


def fingerprint_recipes(channels: int, seed: int | None = None, samples_per_case: int | None = None) -> list[Recipe]:
    """One single-step ``ct_normalization`` recipe per channel: measuring its statistics gives
    nnU-Net's foreground intensity properties of that channel."""
    options = {"seed": seed, "samples_per_case": samples_per_case}
    step = {k: v for k, v in options.items() if v is not None}
    return [
        Recipe.from_dict({"version": 1, "steps": [{"op": "ct_normalization", "channel": c, **step}]})
        for c in range(channels)
    ]


def run(args) -> int:
    output = Path(args.output)
    labels = args.labels or []
    if labels and len(labels) != len(args.inputs):
        raise InputError(f"{len(args.inputs)} input(s) but {len(labels)} label map(s): give one label per input")
    refuse_overwriting_inputs([output], [Path(p) for p in [*args.inputs, *labels, args.recipe] if p])
    check_writable(output, overwrite=args.overwrite)
    if args.channels < 1:
        raise InputError(f"--channels must be at least 1, got {args.channels}")
    progress = as_progress(args.progress)
    n = len(args.inputs)

    def cases():
        for k, path in enumerate(args.inputs):
            image = read_input(path, None, None)
            label = None
            if labels:
                label = read_image(labels[k])
                try:
                    label = label_on_image_grid(label, image)
                except RecipeError as exc:
                    raise InputError(exc.message, path=labels[k], hint=exc.hint) from None
            yield image, label

    if args.recipe:
        recipe = Recipe.load(args.recipe)
        statistics = compute_statistics(recipe, cases, n_cases=n, progress=progress)
        if not statistics:
            raise RecipeError(
                "no step of this recipe needs dataset statistics: there is nothing to measure",
                path=args.recipe,
                hint="run medprep preprocess without --statistics",
            )
        what = ", ".join(f"step {k} ({v['op']})" for k, v in statistics["steps"].items())
    else:
        if not labels:
            raise InputError("nnU-Net's foreground statistics need a label map per case (--labels)")
        per_channel = {}
        for c, recipe in enumerate(fingerprint_recipes(args.channels, args.seed, args.samples_per_case)):
            part = compute_statistics(recipe, cases, n_cases=n, progress=progress.sub(c / args.channels, (c + 1) / args.channels))
            per_channel[str(c)] = {k: v for k, v in part["steps"]["1"].items() if k != "op"}
        statistics = {
            "format": "medprep-statistics",
            "version": 1,
            "cases": n,
            "foreground_intensity_properties_per_channel": per_channel,
        }
        what = f"foreground intensity properties of {args.channels} channel(s)"
    write_json(statistics, output, overwrite=args.overwrite)
    print(f"wrote {output} ({what}, {n} case(s))")
    return 0
