"""``medprep restore PRED OUTPUT --provenance FILE | --dataset DIR --case ID``: a prediction back onto the original grid.

PRED is a label map predicted on an image written by ``medprep preprocess`` (FILE is that run's
provenance JSON) or by ``medprep export`` (DIR is the dataset folder, ID the case; its
provenance is in the dataset's ``medprep.json``). The geometric steps (crop/pad, reorientation, resampling) are undone in reverse
order with nearest neighbour, so OUTPUT lies on the original image's grid. OUTPUT is never
overwritten without ``--overwrite``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..atomic import refuse_overwriting_inputs
from ..errors import ArgumentError, RecipeError
from ..export.state import DATASET_RECORD, case_provenance
from ..imageio import check_image_output, read_image, write_image
from ..jsonfiles import read_json
from ..recipe.invert import check_provenance, restore_label
from .arguments import add_input_output, add_overwrite

HELP = "map a label map predicted in preprocessed space back onto the original image grid"
DESCRIPTION = (
    "Undo the geometric steps of a preprocessing run (crop/pad, reorientation, resampling) "
    "on a predicted label map, using the provenance JSON that medprep preprocess wrote."
)


def add_arguments(p) -> None:
    pred_help = "predicted label map on the preprocessed grid (.nii.gz, .nrrd, .mha, ...)"
    add_input_output(p, pred_help, "where to write the label map on the original grid", input_name="pred")
    p.add_argument("--provenance", help="provenance JSON written by medprep preprocess")
    p.add_argument("--dataset", help="a dataset folder written by medprep export (with --case)")
    p.add_argument("--case", help="the case id of PRED in --dataset (e.g. case_0007)")
    add_overwrite(p)


def read_provenance(path: str | Path) -> dict:
    return read_json(path, what="provenance file")


def _label_summary(array: np.ndarray) -> str:
    """", labels 1, 2" for an integer label map (", no label voxels" when empty), else ""."""
    if array.dtype.kind not in "iub" or array.size == 0:
        return ""
    flat = array.ravel()
    lo, hi = int(flat.min()), int(flat.max())
    if lo >= 0 and hi < 1 << 16:
        values = [int(v) for v in np.flatnonzero(np.bincount(flat.astype(np.int64, copy=False), minlength=1)) if v]
    else:
        values = [int(v) for v in np.unique(flat) if v != 0]
    return f", labels {', '.join(map(str, values))}" if values else ", no label voxels"


def run(args) -> int:
    output = Path(args.output)
    if (args.provenance is None) == (args.dataset is None) or (args.dataset is None) != (args.case is None):
        raise ArgumentError(
            "give either --provenance FILE, or --dataset DIR with --case ID",
            hint="--provenance for medprep preprocess outputs, --dataset/--case for medprep export datasets",
        )
    source = Path(args.provenance) if args.provenance else Path(args.dataset) / DATASET_RECORD
    refuse_overwriting_inputs([output], [Path(args.pred), source])
    check_image_output(output, overwrite=args.overwrite)
    if args.dataset is not None:
        provenance = case_provenance(args.dataset, args.case)
    else:
        provenance = read_provenance(args.provenance)
    try:
        check_provenance(provenance)
    except RecipeError as exc:
        raise RecipeError(exc.message, path=source, hint=exc.hint) from None
    pred = read_image(args.pred)
    try:
        restored = restore_label(pred, provenance, progress=args.progress)
    except RecipeError as exc:
        about_provenance = exc.message.startswith("provenance step")
        raise RecipeError(exc.message, path=source if about_provenance else exc.path or args.pred, hint=exc.hint) from None
    write_image(restored, output, overwrite=args.overwrite)
    g = restored.geometry
    labels = _label_summary(restored.array)
    print(
        f"wrote {output} ({' x '.join(map(str, g.size))}, spacing {', '.join(f'{s:.4g}' for s in g.spacing)} mm, "
        f"{restored.dtype}{labels}): the original image's grid"
    )
    return 0
