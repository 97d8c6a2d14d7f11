"""Draw Resources/Screenshots/MedPrep-1.png, the extension's screenshot in the Extensions Index.

It shows what MedPrep makes, drawn by MedPrep itself: ``medprep demo``'s synthetic chest CT
cohort (DICOM, with a localizer, a dose report and a gantry-tilted series among it) exported to
nnU-Net v2, and the QC montages of three of the exported cases, one per row, as the dataset's
``qc/`` folder holds them (``MedPrepLib.export.qc.montage``: axial, coronal and sagittal slices
through the label's centroid, radiological convention, the labels — lungs, bone — outlined).

Run ``python Resources/Screenshots/draw_screenshot.py`` from a checkout with the ``qc`` extra
installed (Pillow, matplotlib) to regenerate it; no download, no Slicer.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
CASES = ("case_0001", "case_0003", "case_0005")
GAP = 16  # pixels of black between rows


def draw(path: Path = HERE / "MedPrep-1.png") -> Path:
    sys.path.insert(0, str(HERE.parents[1]))
    from PIL import Image

    from MedPrepLib.demo import run_demo

    with tempfile.TemporaryDirectory() as folder:
        report = run_demo(Path(folder) / "demo", workers=1)
        qc = report.files["dataset"] / "qc"
        rows = [Image.open(qc / f"{case}.png").convert("RGB") for case in CASES]
        width = max(r.width for r in rows)
        picture = Image.new("RGB", (width, sum(r.height for r in rows) + GAP * (len(rows) - 1)))
        top = 0
        for row in rows:
            picture.paste(row, ((width - row.width) // 2, top))
            top += row.height + GAP
        picture.save(path, optimize=True)
    return path


if __name__ == "__main__":
    print(draw())
