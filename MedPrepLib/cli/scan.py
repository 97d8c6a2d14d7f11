"""``medprep scan DIR [--json] [--no-cache]``: the image stacks in a DICOM folder or Slicer database.

``--json`` prints the contract object ``{"series": [...], "skipped": [...], "label_sources": [...]}``
(see :meth:`MedPrepLib.dicom.scan.ScanResult.to_json_dict` and
:meth:`MedPrepLib.dicom.label_sources.LabelSource.to_dict`: each SEG or RTSTRUCT object with the
stack it labels, or the problem); without it, a table. ``DIR`` may also be
a Slicer DICOM database folder or its ``ctkDICOM.sql`` file. Stack ids are stable between runs
and are what ``medprep convert --series`` takes.
"""

from __future__ import annotations

import json
from collections import Counter

from ..dicom.label_sources import find_label_sources, relative
from ..sources import find_stacks

HELP = "list the image stacks (series) in a DICOM folder or a Slicer DICOM database"
DESCRIPTION = None


def add_arguments(p) -> None:
    p.add_argument("dir", metavar="DIR", help="DICOM folder (searched recursively), file, or Slicer database")
    p.add_argument("--json", action="store_true", help="print one JSON object (series and skipped files)")
    p.add_argument("--no-cache", action="store_true", help="do not use or update the header index")
    p.add_argument(
        "--cache-dir",
        metavar="PATH",
        help="folder (or .sqlite file) for the header index (default: $MEDPREP_CACHE or ~/.cache/medprep)",
    )
    p.add_argument("--workers", type=int, default=None, help="header-reading processes (default: automatic)")


def _fmt_spacing(spacing) -> str:
    return " x ".join("?" if v is None else f"{v:.4g}" for v in spacing)


def run(args) -> int:
    cache = False if args.no_cache else (args.cache_dir or True)
    progress = args.progress
    result = find_stacks(args.dir, cache=cache, workers=args.workers, progress=progress)
    data = result.to_json_dict()
    sources = find_label_sources(result.skipped, result.stacks)
    data["label_sources"] = [ls.to_dict() for ls in sources]
    if args.json:
        print(json.dumps(data))
        return 0
    series = data["series"]
    header = ("id", "modality", "files", "shape (x y z [t])", "spacing (mm)", "description")
    rows = [
        (
            s["id"],
            s["modality"],
            str(s["n_files"]),
            " x ".join(str(v) for v in s["shape"]),
            _fmt_spacing(s["spacing"]),
            s.get("description", ""),
        )
        for s in series
    ]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths)).rstrip())
    for r, s in zip(rows, series):
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip())
        for w in s["warnings"]:
            print(f"{'':<{widths[0]}}  warning: {w}")
    print(
        f"{len(series)} stack(s) in {result.n_files} file(s)"
        + (f", {result.n_cached} from the index" if result.n_cached else "")
    )
    for ls in sources:
        target = f"labels stack {ls.stack_id}" if ls.stack_id else "labels no stack here"
        what = f"{ls.kind} ({ls.n_segments} {'segments' if ls.kind == 'SEG' else 'ROIs'}"
        what += f", {ls.label!r})" if ls.label else ")"
        problem = f": {ls.problem}" if ls.problem else ""
        name = f" [{relative(ls.path, args.dir)}]" if args.verbose else ""
        print(f"label source: {what} {target}{problem}{name}")
    if data["skipped"]:
        counts = Counter(s["reason"] for s in data["skipped"])
        print("skipped: " + ", ".join(f"{n} {reason}" for reason, n in sorted(counts.items())) + " (details: --json)")
    return 0
