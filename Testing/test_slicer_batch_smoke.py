"""Testing/Slicer/batch_smoke.py does what it says, run as Slicer would run it.

The script is meant for ``Slicer --no-main-window --python-script``; here it runs in a fresh
Python process on the slicer-core wheel, with the application-only parts stood in
(Testing/Slicer/application_stand_ins.py), from a working directory outside the checkout so
that it must find MedPrep the way it would in Slicer. It must exit 0 when all is well and
non-zero when a check fails.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "Testing" / "Slicer" / "batch_smoke.py"

pytestmark = pytest.mark.slicer

BOOTSTRAP = """
import runpy, sys
sys.path.insert(0, {stand_ins!r})
import application_stand_ins
scene = application_stand_ins.install({tmp!r})
if {broken!r}:  # Slicer reading files wrongly must make the script fail
    load = application_stand_ins.loadVolume(scene)
    def flipped(path, properties=None):
        node = load(path)
        import slicer
        slicer.util.arrayFromVolume(node)[:] = slicer.util.arrayFromVolume(node)[::-1].copy()
        return node
    import slicer
    slicer.util.loadVolume = flipped
sys.argv = [{script!r}]
runpy.run_path({script!r}, run_name="__main__")
print("the script returned without calling slicer.util.exit")
sys.exit(3)
"""


def run_script(tmp_path: Path, broken: bool) -> subprocess.CompletedProcess:
    pytest.importorskip("slicer", reason="needs the slicer-core wheel (pip install 'medprep[slicer]')")
    pytest.importorskip("MedPrepLib.imageio", reason="MedPrepLib.imageio is not there yet")
    code = BOOTSTRAP.format(stand_ins=str(SCRIPT.parent), tmp=str(tmp_path), broken=broken, script=str(SCRIPT))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=300)


def test_batch_smoke_script_passes_and_exits_zero(tmp_path):
    result = run_script(tmp_path, broken=False)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    assert "MedPrep batch smoke test passed" in result.stdout
    assert str(REPO / "MedPrep" / "MedPrep.py") in result.stdout  # found through the checkout


def test_batch_smoke_script_exits_non_zero_when_a_check_fails(tmp_path):
    result = run_script(tmp_path, broken=True)
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-3000:]
    assert "Slicer reads other voxels" in result.stderr
    assert "passed" not in result.stdout
