"""``medprep info PATH [--json] [--series ID]``: what an image holds — shape, grid, orientation, values.

PATH is an image file, or DICOM: a file, a folder or a Slicer DICOM database. One DICOM stack
(or the one ``--series`` names) is loaded as ``convert`` would load it and described like an
image file, plus its modality, stack id and loading warnings; a folder of several stacks gets
a header-only summary of each (the ``medprep scan --json`` series entries).
"""

from __future__ import annotations

import json
import os

import numpy as np

from ..errors import InputError
from ..imageio import is_image_file, read_image
from .arguments import add_series

HELP = "show shape, spacing, origin, direction, orientation and value range of an image"
DESCRIPTION = None


def add_arguments(p) -> None:
    p.add_argument("path", help="image file (.nii, .nii.gz, .nrrd, .mha, .mhd, .hdr, .mnc), DICOM file or folder")
    add_series(p, "DICOM stack id (from medprep scan) or SeriesInstanceUID, when PATH holds several")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--allow-nonfinite", action="store_true", help="accept NaN/Inf voxels instead of failing")


def describe(volume) -> dict:
    """JSON-friendly description of a volume. Geometry lists are (x, y, z), mm, LPS."""
    lo, hi = volume.value_range()
    g = volume.geometry
    return {
        "shape_zyx": list(volume.shape[:3]),
        "size_xyz": list(g.size),
        "channels": volume.n_channels,
        "dtype": str(volume.dtype),
        "spacing": list(g.spacing),
        "origin": list(g.origin),
        "direction": g.direction.ravel().tolist(),
        "orientation": g.orientation,
        "oblique": g.is_oblique(),
        "min": lo,
        "max": hi,
        "warnings": list(volume.metadata.get("warnings", [])),
    }


def run(args) -> int:
    path = args.path
    if not os.path.exists(path):
        raise InputError("no such file or folder", path=path)
    if os.path.isfile(path) and is_image_file(path):
        if args.series:
            raise InputError("--series applies to DICOM input only", path=path)
        volume = read_image(path, allow_nonfinite=args.allow_nonfinite)
        return _print(describe(volume), path, args.json)
    from ..dicom.load import load_stack
    from ..dicom.scan import stack_summary
    from ..sources import choose_stack, find_stacks

    result = find_stacks(path)
    if len(result.stacks) > 1 and args.series is None:
        summaries = [stack_summary(s) for s in result.stacks]
        if args.json:
            print(json.dumps({"stacks": summaries}))
            return 0
        print(f"{path}: {len(summaries)} image stacks (describe one with --series ID)")
        for s in summaries:
            shape = " x ".join(str(v) for v in s["shape"])
            spacing = " x ".join("?" if v is None else f"{v:.4g}" for v in s["spacing"])
            print(f"  {s['id']}  {s['modality'] or '?'}  {shape}  {spacing} mm  {s.get('description', '')}".rstrip())
        return 0
    stack = choose_stack(result.stacks, result.skipped, args.series, path)
    volume = load_stack(stack, progress=args.progress, where=path)
    info = describe(volume)
    meta = volume.metadata
    info.update(
        stack_id=stack.id,
        modality=stack.modality,
        series_description=stack.series_description,
        n_files=len(stack.headers),
        n_timepoints=stack.n_timepoints,
    )
    if meta.get("regularized"):
        info["regularized"] = True
    return _print(info, path, args.json)


def _print(info: dict, path: str, as_json: bool) -> int:
    if as_json:
        print(json.dumps(info))
        return 0
    d = np.array(info["direction"]).reshape(3, 3)
    rows = [("file" if "stack_id" not in info else "input", path)]
    if "stack_id" in info:
        rows += [
            ("stack", f"{info['stack_id']} ({info['modality'] or '?'}, {info['n_files']} files"
             + (f", {info['n_timepoints']} time points" if info["n_timepoints"] > 1 else "") + ")"),
        ]
        if info.get("series_description"):
            rows.append(("description", info["series_description"]))
    rows += [
        ("size (x, y, z)", " x ".join(map(str, info["size_xyz"])) + (f" x {info['channels']} channels" if info["channels"] > 1 else "")),
        ("dtype", info["dtype"]),
        ("spacing (mm)", ", ".join(f"{s:.6g}" for s in info["spacing"])),
        ("origin (mm, LPS)", ", ".join(f"{o:.6g}" for o in info["origin"])),
        ("direction (LPS)", " | ".join(", ".join(f"{v:.4f}" for v in row) for row in d)),
        ("orientation", info["orientation"] + (" (oblique)" if info["oblique"] else "")),
        ("value range", f"{info['min']:.6g} .. {info['max']:.6g}"),
    ]
    rows += [("warning", w) for w in info["warnings"]]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        print(f"{key:<{width}}  {value}")
    return 0
