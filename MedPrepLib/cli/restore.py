"""``medprep restore PRED OUTPUT --provenance FILE``: a prediction back onto the original grid.

PRED is a label map predicted on an image written by ``medprep preprocess``; FILE is that run's
provenance JSON. The geometric steps (crop/pad, reorientation, resampling) are undone in reverse
order with nearest neighbour, so OUTPUT lies on the original image's grid. OUTPUT is never
overwritten without ``--overwrite``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..atomic import refuse_overwriting_inputs
from ..errors import RecipeError
from ..imageio import check_image_output, read_image, write_image
from ..jsonfiles import read_json
from ..recipe.invert import check_provenance, restore_label

log = logging.getLogger(__name__)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "restore",
        help="map a label map predicted in preprocessed space back onto the original image grid",
        description="Undo the geometric steps of a preprocessing run (crop/pad, reorientation, resampling) "
        "on a predicted label map, using the provenance JSON that medprep preprocess wrote.",
    )
    p.add_argument("pred", help="predicted label map on the preprocessed grid (.nii.gz, .nrrd, .mha, ...)")
    p.add_argument("output", help="where to write the label map on the original grid")
    p.add_argument("--provenance", required=True, help="provenance JSON written by medprep preprocess")
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    p.set_defaults(func=run)


def read_provenance(path: str | Path) -> dict:
    return read_json(path, what="provenance file")


def run(args) -> int:
    output = Path(args.output)
    refuse_overwriting_inputs([output], [Path(args.pred), Path(args.provenance)])
    check_image_output(output, overwrite=args.overwrite)
    provenance = read_provenance(args.provenance)
    try:
        check_provenance(provenance)
    except RecipeError as exc:
        raise RecipeError(exc.message, path=args.provenance, hint=exc.hint) from None
    pred = read_image(args.pred)
    try:
        restored = restore_label(pred, provenance, progress=args.progress)
    except RecipeError as exc:
        about_provenance = exc.message.startswith("provenance step")
        raise RecipeError(
            exc.message, path=args.provenance if about_provenance else exc.path or args.pred, hint=exc.hint
        ) from None
    write_image(restored, output, overwrite=args.overwrite)
    log.info("wrote %s", output)
    return 0
