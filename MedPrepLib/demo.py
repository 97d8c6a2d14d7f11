"""The demonstration run behind ``medprep demo``: built-in phantom -> DICOM -> results.

Each stage is what a user would do on their own data; the report lists what was made and
where. The demo grows with the library (DICOM loading, preprocessing, export).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .sampledata import chest_ct_phantom, write_ct_series


@dataclass
class DemoReport:
    out: Path
    files: dict[str, Path] = field(default_factory=dict)
    lines: list[str] = field(default_factory=list)


def run_demo(out: str | Path, *, overwrite: bool = False, progress=None) -> DemoReport:
    """Run the demo into folder ``out``; returns what was written (paths) and a text report."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    report = DemoReport(out)
    phantom = chest_ct_phantom()
    dicom_dir = out / "dicom"
    paths = write_ct_series(phantom, dicom_dir)
    report.files["dicom"] = dicom_dir
    g = phantom.geometry
    report.lines.append(
        f"DICOM series: {len(paths)} CT slices of {g.size[0]}x{g.size[1]} at "
        f"{g.spacing[0]:g}x{g.spacing[1]:g}x{g.spacing[2]:g} mm in {dicom_dir}"
    )
    lo, hi = phantom.value_range()
    report.lines.append(f"Phantom HU range {lo:g} .. {hi:g} (air, lungs, soft tissue, contrast, bone)")
    return report
