"""``medprep label OBJECT --image SERIES OUTPUT``: a segmentation object as a label map on its image.

OBJECT is a DICOM SEG, an RTSTRUCT or a Slicer ``.seg.nrrd``; SERIES the image it belongs to (a
DICOM folder or file, or an image file), loaded exactly as ``medprep convert`` loads it, and
OUTPUT the label map on that grid. Beside OUTPUT goes ``<stem>.labels.json``: the label table
(name -> value), and for every label the source segments (numbers and names) and voxel counts,
the structures left out, the overlaps found. ``--per-segment DIR`` also writes one mask per
segment (``segment_<number>.nii.gz``) and ``DIR/segments.json`` (``[{"number", "name", "file",
"voxels"}]``). Names come from the object (anatomy); nothing else of its header is written.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ..atomic import check_writable, make_folder, refuse_overwriting_inputs
from ..errors import InputError
from ..imageio import check_image_output, path_beside, write_image
from ..jsonfiles import write_json
from ..volume import Volume
from .arguments import add_overwrite, add_series

HELP = "turn a DICOM SEG, RTSTRUCT or Slicer .seg.nrrd into a label map on its image's grid"
DESCRIPTION = (
    "Place the structures of a segmentation object (DICOM SEG, RTSTRUCT, Slicer .seg.nrrd) on the grid "
    "MedPrep loads the image onto, and write them as one label map valued by a label table, with a "
    ".labels.json sidecar."
)


def add_arguments(p) -> None:
    from ..segmentation.label_table import OVERLAP_POLICIES, UNMATCHED_POLICIES

    p.add_argument("object", help="DICOM SEG, RTSTRUCT or .seg.nrrd file")
    p.add_argument("--image", required=True, help="the image the object belongs to: DICOM folder/file or image file")
    p.add_argument("output", help="label map to write (.nii.gz, .nrrd, .mha, ...)")
    p.add_argument("--label-map", help="label map JSON: names (and patterns) -> values; default: names in alphabetical order -> 1, 2, ...")
    p.add_argument("--overlap", choices=OVERLAP_POLICIES, help="overlapping structures: refuse (default), a declared priority, or nnU-Net regions")
    p.add_argument("--unmatched", choices=UNMATCHED_POLICIES, help="structures the label map does not name: ignore (default) or refuse")
    p.add_argument("--per-segment", metavar="DIR", help="also write one mask per segment into DIR, with DIR/segments.json")
    add_series(p, "DICOM stack of --image when it holds several (stack id or SeriesInstanceUID)")
    p.add_argument("--geometry-policy", choices=("resample", "reject"), default="resample",
                   help="a tilted or gapped series: resample it (default) or refuse; the label follows")  # fmt: skip
    add_overwrite(p, "replace OUTPUT (and the sidecar, and the per-segment files) if they exist")


def sidecar_path(output: str | Path) -> Path:
    """``out/liver.nii.gz`` -> ``out/liver.labels.json``."""
    return path_beside(output, ".labels.json")


def run(args) -> int:
    from ..segmentation.label_table import SegmentLabelTable, read_segment_label_map, segmentation_to_label
    from ..segmentation.objects import read_on_series

    output = check_image_output(args.output, overwrite=args.overwrite)
    sidecar = sidecar_path(output)
    check_writable(sidecar, overwrite=args.overwrite)
    refuse_overwriting_inputs([output, sidecar], [Path(args.object), Path(args.image)])
    if not Path(args.image).exists():
        raise InputError("the image does not exist", path=args.image)
    per_segment = Path(args.per_segment) if args.per_segment else None
    if per_segment is not None:  # an existing folder may be reused; its segments.json is not replaced without --overwrite
        check_writable(per_segment / "segments.json" if per_segment.is_dir() else per_segment, overwrite=args.overwrite)
    _, seg = read_on_series(args.object, args.image, series=args.series, geometry_policy=args.geometry_policy)
    table = read_segment_label_map(args.label_map) if args.label_map else SegmentLabelTable.from_names(seg.names())
    label, report = segmentation_to_label(seg, table, overlap=args.overlap, unmatched=args.unmatched)
    warnings = [*seg.warnings, *(w for s in seg.segments for w in s.warnings), *report.warnings]
    if per_segment is not None:
        make_folder(per_segment)
        entries = []
        for segment in seg.segments:
            name = f"segment_{segment.number}.nii.gz"
            mask = Volume(segment.full(seg.geometry.shape).astype("uint8"), seg.geometry, metadata={"is_label": True})
            write_image(mask, per_segment / name, overwrite=args.overwrite)
            entries.append({"number": segment.number, "name": segment.name, "file": name, "voxels": segment.voxels})
        write_json(entries, per_segment / "segments.json", overwrite=args.overwrite)
    write_image(label, output, overwrite=args.overwrite)
    content = {
        "kind": seg.kind,
        "table": dict(table.table.labels),
        **report.to_dict(),
        "warnings": list(dict.fromkeys(warnings)),
    }
    if args.overlap == "regions" or table.overlap == "regions":
        content["nnunet_labels"] = table.nnunet_labels(overlap="regions")
    write_json(content, sidecar, overwrite=args.overwrite)
    g = label.geometry
    found = ", ".join(f"{n} {e['value']} ({e['written']} voxels)" for n, e in report.labels.items() if e["written"])
    print(f"wrote {output} ({' x '.join(map(str, g.size))}, {seg.kind}: {found or 'no labelled voxels'}) and {sidecar.name}")
    for w in content["warnings"]:
        print(f"medprep: warning: {w}", file=sys.stderr)
    if report.unmatched:
        print("left out (not in the label map): " + ", ".join(json.dumps(e["name"]) for e in report.unmatched))
    return 0
