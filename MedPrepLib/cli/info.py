"""``medprep info PATH [--json]``: what an image file holds — shape, grid, orientation, values."""

from __future__ import annotations

import json

import numpy as np

from ..imageio import read_image


def add_parser(sub) -> None:
    p = sub.add_parser("info", help="show shape, spacing, origin, direction, orientation and value range of an image")
    p.add_argument("path", help="image file (.nii, .nii.gz, .nrrd, .mha, .mhd, .hdr, .mnc)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    p.add_argument("--allow-nonfinite", action="store_true", help="accept NaN/Inf voxels instead of failing")
    p.set_defaults(func=run)


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
    volume = read_image(args.path, allow_nonfinite=args.allow_nonfinite)
    info = describe(volume)
    if args.json:
        print(json.dumps(info))
        return 0
    d = np.array(info["direction"]).reshape(3, 3)
    rows = [
        ("file", args.path),
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
