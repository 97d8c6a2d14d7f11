"""DICOM into a real MRML scene (slicer-core): folder and Slicer database, geometry exact, no PHI."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

slicer = pytest.importorskip("slicer", reason="needs the slicer-core wheel (pip install 'medprep[slicer]')")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "MedPrep"))

from MedPrepCore import DicomImport, VolumeNodes  # noqa: E402
from test_dicom_slicerdb import PATIENT_NAME, build_database  # noqa: E402

from MedPrepLib.errors import SeriesSelectionError  # noqa: E402
from MedPrepLib.sampledata import chest_ct_phantom, write_ct_series  # noqa: E402
from MedPrepLib.sources import load_path  # noqa: E402


def test_folder_stack_becomes_a_node_with_the_loaders_geometry(tmp_path):
    phantom = chest_ct_phantom(shape_zyx=(5, 32, 32), spacing_xyz=(2.0, 2.0, 3.0))
    write_ct_series(phantom, tmp_path / "dicom")
    scene = slicer.vtkMRMLScene()
    node = DicomImport.loadStackNode(scene, tmp_path / "dicom")
    back = VolumeNodes.volumeFromNode(node)
    expected = load_path(tmp_path / "dicom")
    np.testing.assert_array_equal(back.array, expected.array)
    assert back.geometry == expected.geometry
    assert node.GetName().startswith("Chest phantom axial [s")
    provenance = json.loads(node.GetAttribute(DicomImport.PROVENANCE_ATTRIBUTE))
    assert provenance["modality"] == "CT" and "MEDPREP" not in json.dumps(provenance)


def test_slicer_database_needs_a_stack_id_when_it_holds_several(tmp_path):
    build_database(tmp_path / "db", "0.7.0", absolute=False, n_series=2)
    scene = slicer.vtkMRMLScene()
    found = DicomImport.findStacks(tmp_path / "db")
    assert len(found.stacks) == 2
    with pytest.raises(SeriesSelectionError, match="choose one"):
        DicomImport.loadStackNode(scene, tmp_path / "db")
    node = DicomImport.loadStackNode(scene, tmp_path / "db", found.stacks[1].id)
    assert PATIENT_NAME not in node.GetName()
    assert VolumeNodes.volumeFromNode(node).shape[0] == len(found.stacks[1].headers)
