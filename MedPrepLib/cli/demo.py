"""``medprep demo [OUT]``: the main job on built-in data, start to finish, on any machine.

Generates the synthetic chest CT phantom as a DICOM series (no download), then runs what a
user runs on their own data and prints where each result is.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import OutputExistsError
from .arguments import add_overwrite

HELP = "run the main job on built-in sample data (a synthetic chest CT)"
DESCRIPTION = None


def add_arguments(p) -> None:
    p.add_argument("out", nargs="?", default="medprep-demo", help="output folder (default: ./medprep-demo)")
    add_overwrite(p, "replace the contents of an existing demo folder")


def run(args) -> int:
    from ..demo import run_demo

    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise OutputExistsError("demo folder exists and is not empty", path=out, hint="pass --overwrite or another folder")
    report = run_demo(out, overwrite=args.overwrite, progress=args.progress)
    for line in report.lines:
        print(line)
    print(f"Demo results are in: {out.resolve()}")
    return 0
