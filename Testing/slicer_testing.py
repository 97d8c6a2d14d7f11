"""What the tests of the Slicer side share: the slicer-core wheel (or a skip), the module's packages
on ``sys.path``, and files loaded into a scene the way the application loads them.

``slicer = slicer_testing.require()`` at the top of a test module skips the whole module, with a
message saying what to install, when the real slicer-core wheel is not there; after it the
module's ``MedPrepCore`` and the application stand-ins (``Testing/Slicer``) import.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def require():
    """The ``slicer`` module of the slicer-core wheel, with MedPrep/ and Testing/Slicer importable."""
    slicer = pytest.importorskip("slicer", reason="needs the slicer-core wheel (pip install 'medprep[slicer]')")
    if not hasattr(slicer, "vtkMRMLScene"):
        pytest.skip("the 'slicer' module found is not slicer-core (no vtkMRMLScene)", allow_module_level=True)
    for folder in (REPO / "MedPrep", REPO / "Testing" / "Slicer"):
        if str(folder) not in sys.path:
            sys.path.insert(0, str(folder))
    return slicer


def load_with_slicer(scene, path: Path, labelmap: bool = False):
    """Load an image file into a new volume (or label map) node as the application does: through
    Slicer's own archetype storage node (ITK), which stays attached (the node knows its file)."""
    node = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode" if labelmap else "vtkMRMLScalarVolumeNode", Path(path).name)
    storage = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage.SetFileName(str(path))
    assert storage.ReadData(node) == 1, f"Slicer could not read {path}"
    node.SetAndObserveStorageNodeID(storage.GetID())
    return node
