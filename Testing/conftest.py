"""Shared pytest fixtures: where the real DICOM corpus is, and its manifest."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CORPUS = Path(os.environ.get("MEDPREP_CORPUS", REPO.parent / "shared" / "corpus"))


def corpus_cases() -> list[dict]:
    """Rows of ../shared/corpus/MANIFEST.tsv (empty when the corpus is absent)."""
    manifest = CORPUS / "MANIFEST.tsv"
    if not manifest.is_file():
        return []
    with manifest.open(newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def corpus_case_dir(case: dict) -> Path:
    return CORPUS / case["path"]


@pytest.fixture(scope="session")
def corpus() -> Path:
    """The corpus folder; skips the test with a clear message when it is not there."""
    if not (CORPUS / "MANIFEST.tsv").is_file():
        pytest.skip(f"real DICOM corpus not found at {CORPUS} (set MEDPREP_CORPUS or place ../shared/corpus)")
    return CORPUS


# Test modules that parse or write DICOM with pydicom; they run a second time under
# pydicom 2.4.4 (Testing/run_pydicom24.sh), besides any test marked explicitly.
PYDICOM_MODULE_PREFIXES = ("test_dicom", "test_demo", "test_sampledata", "test_cli_convert", "test_cli_scan")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.path.name.startswith(PYDICOM_MODULE_PREFIXES):
            item.add_marker(pytest.mark.pydicom_dependent)
