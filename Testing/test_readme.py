"""The README's Python example runs as written (on the demo's output)."""

from __future__ import annotations

import re
from pathlib import Path

from MedPrepLib.cli import main

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_python_example_runs(tmp_path, monkeypatch):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    library_example = next(b for b in blocks if "from MedPrepLib" in b)
    monkeypatch.chdir(tmp_path)
    assert main(["demo", "medprep-demo"]) == 0
    exec(compile(library_example, "README.md", "exec"), {})
    assert (tmp_path / "lung_1mm.nii.gz").is_file() and (tmp_path / "lung_1mm.provenance.json").is_file()
