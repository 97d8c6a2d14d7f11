"""``medprep demo [OUT]``: the main job on built-in data, start to finish, on any machine.

Generates a small synthetic CT cohort as DICOM with label files (no download), exports it to an
nnU-Net v2 dataset with QC as ``medprep export`` does, and ends with the path of the report.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import OutputExistsError
from .arguments import add_overwrite

HELP = "run the main job on built-in sample data: a synthetic CT cohort as DICOM, exported to nnU-Net v2 with QC"
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
    if "report" in report.files:
        print(f"QC report: {report.files['report'].resolve()}")
    return report.export.exit_code
