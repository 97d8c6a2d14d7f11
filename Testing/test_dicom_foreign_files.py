"""Unseen real files: every DICOM test file that pydicom and nibabel ship is either loaded
correctly or refused with a MedPrep error — never a crash, never a silent wrong volume.

These files come with the installed packages (nothing is copied into this repository). They
cover transfer syntaxes, colour and palette images, RT objects, SR, SEG, truncated and
preamble-less files, and odd headers that the corpus does not have.
"""

from __future__ import annotations

import glob
import os

import numpy as np
import pydicom
import pytest

from MedPrepLib.errors import MedPrepError
from MedPrepLib.sources import load_path


def _shipped_files() -> list[str]:
    roots = []
    for module in ("pydicom", "nibabel"):
        try:
            roots.append(os.path.dirname(__import__(module).__file__))
        except ImportError:
            pass
    files = []
    for root in roots:
        files += glob.glob(os.path.join(root, "**", "*.dcm"), recursive=True)
    return sorted(files)


FILES = _shipped_files()


@pytest.mark.skipif(not FILES, reason="no DICOM test files shipped with the installed pydicom/nibabel")
@pytest.mark.parametrize("path", FILES, ids=[os.path.basename(os.path.dirname(f)) + "/" + os.path.basename(f) for f in FILES])
def test_loaded_or_refused_with_a_reason(path):
    try:
        volume = load_path(path)
    except MedPrepError as exc:
        # the message names the file (or, for a DICOMDIR standing for its folder, the folder)
        assert os.path.basename(path) in str(exc) or os.path.dirname(path) in str(exc)
        return
    ds = pydicom.dcmread(path)
    assert volume.array.shape[:3] == (1, ds.Rows, ds.Columns) or volume.array.shape[0] > 1
    if volume.array.shape[0] == 1:  # a single slice: the values are pydicom's Modality LUT output
        expected = ds.pixel_array.astype(np.float64) * float(getattr(ds, "RescaleSlope", 1) or 1) + float(
            getattr(ds, "RescaleIntercept", 0) or 0
        )
        np.testing.assert_allclose(volume.array[0], expected, rtol=0, atol=1e-3)
        row, col = (float(v) for v in ds.PixelSpacing)
        np.testing.assert_allclose(volume.spacing[:2], (col, row), rtol=1e-6)
        np.testing.assert_allclose(volume.origin, [float(v) for v in ds.ImagePositionPatient], atol=1e-4)
