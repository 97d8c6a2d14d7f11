"""``medprep convert INPUT OUTPUT [--series ID] [--geometry-policy resample|reject] [--overwrite]``.

INPUT is a DICOM folder, a DICOM file or any image file MedPrep reads; OUTPUT is one file in a
format MedPrep writes (:data:`OUTPUT_SUFFIXES`). Values are written faithfully (stored x slope + intercept, padding not
masked). A 4D stack becomes a 4D NIfTI (x, y, z, t) or a vector image in NRRD/MHA. Errors
leave no OUTPUT behind (writes go to a temporary name in the same folder, then rename).
"""

from __future__ import annotations

import logging
import os
import warnings
from contextlib import contextmanager
from pathlib import Path

from ..errors import InputError
from ..imageio import ONE_FILE_WRITE_SUFFIXES, check_image_output, image_suffix
from ..progress import as_progress
from .arguments import add_input_output, add_overwrite, add_series

OUTPUT_SUFFIXES = ONE_FILE_WRITE_SUFFIXES
"""What convert writes: MedPrep's writable formats (``imageio.WRITE_SUFFIXES``) that are one file.

A detached ``.nhdr`` / ``.mhd`` header is refused: it would put a second file, its data file,
beside the OUTPUT the user named, which convert neither names nor reports.
"""


def _spoken(suffixes) -> str:
    """``.a, .b or .c``"""
    return ", ".join(suffixes[:-1]) + " or " + suffixes[-1]


HELP = "convert a DICOM series (folder or file) or an image file to NIfTI / NRRD / MHA"
DESCRIPTION = (
    "Load one image stack with exact geometry and write it. A folder with several "
    "stacks needs --series (the error lists the ids; `medprep scan DIR` shows them too)."
)


def add_arguments(p) -> None:
    input_help = "DICOM folder, DICOM file, or image file (.nii, .nii.gz, .nrrd, .mha, ...)"
    add_input_output(p, input_help, "output image: " + _spoken(OUTPUT_SUFFIXES))
    add_series(p, "stack id (from `medprep scan`) or SeriesInstanceUID to convert")
    p.add_argument(
        "--geometry-policy",
        choices=("resample", "reject"),
        default="resample",
        help="tilted or unevenly spaced stacks: resample onto a regular grid (default) or refuse",
    )
    add_overwrite(p)


def _output_suffix(path: str) -> str:
    suffix = image_suffix(path)
    if suffix not in OUTPUT_SUFFIXES:
        raise InputError("unsupported output format", path=path, hint="name the output " + _spoken(OUTPUT_SUFFIXES))
    return suffix


@contextmanager
def _held_log():
    """Hold MedPrep's log records and silence library warnings while loading, so that a failure
    prints only its one-line error; the held records are replayed by the caller on success."""
    held: list[logging.LogRecord] = []

    class _Hold(logging.Handler):
        def emit(self, record):
            held.append(record)

    logger = logging.getLogger("MedPrepLib")
    # every record the logger lets through (warnings; with --verbose also the debug records that
    # name the files inside the stack) is held, and replayed in order on success
    handler, propagate = _Hold(logging.NOTSET), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield held
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


def run(args) -> int:
    from ..imageio import write_image
    from ..sources import load_path

    output = Path(args.output)
    _output_suffix(args.output)  # refuses unsupported formats before any work
    check_image_output(output, overwrite=args.overwrite)
    if not os.path.exists(args.input):
        raise InputError("no such file or folder", path=args.input)
    progress = as_progress(args.progress)
    with _held_log() as held:
        volume = load_path(args.input, args.series, geometry_policy=args.geometry_policy, progress=progress.sub(0, 0.6))
        write_image(volume, output, overwrite=args.overwrite, progress=progress.sub(0.6, 1.0))
    for record in held:
        logging.getLogger(record.name).handle(record)
    g = volume.geometry
    shape = " x ".join(str(s) for s in g.size) + (f" x {volume.array.shape[3]}" if volume.array.ndim == 4 else "")
    print(f"wrote {output} ({shape}, spacing {', '.join(f'{s:.4g}' for s in g.spacing)} mm, {volume.dtype})")
    return 0
