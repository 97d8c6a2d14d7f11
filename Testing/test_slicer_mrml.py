"""The Qt-free MRML glue (MedPrep/MedPrepCore) against the real slicer-core wheel.

Real ``vtkMRMLScene``, volume nodes and Slicer's own ``vtkMRMLVolumeArchetypeStorageNode``
(ITK-based file IO as in the application): a volume survives volume -> node -> volume exactly,
the node's IJKToRAS is MedPrepLib's ``Geometry.ijk_to_ras()``, and files written by Slicer read
back in MedPrepLib with the same grid and voxels, and the other way round.
"""

from __future__ import annotations

import doctest
import json
import sys
from pathlib import Path

import numpy as np
import pytest

slicer = pytest.importorskip(
    "slicer", reason="needs the slicer-core wheel (pip install 'medprep[slicer]') for real MRML classes"
)
if not hasattr(slicer, "vtkMRMLScene"):
    pytest.skip("the 'slicer' module found is not slicer-core (no vtkMRMLScene)", allow_module_level=True)

import vtk  # noqa: E402  (after the skip: vtk comes with slicer-core)

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "MedPrep"))

from MedPrepCore import Processing, SampleVolumes, VolumeNodes  # noqa: E402

from MedPrepLib.errors import CancelledError, InputError, InvalidImageError, MedPrepError, RecipeError  # noqa: E402
from MedPrepLib.geometry import Geometry  # noqa: E402
from MedPrepLib.volume import Volume  # noqa: E402

pytestmark = pytest.mark.slicer


@pytest.fixture
def scene():
    """A fresh MRML scene with Slicer's default colour tables (label maps need them)."""
    s = slicer.vtkMRMLScene()
    colorLogic = slicer.vtkMRMLColorLogic()
    colorLogic.SetMRMLScene(s)
    yield s
    colorLogic.SetMRMLScene(None)
    s.Clear(1)


def matrixToArray(m) -> np.ndarray:
    return np.array([[m.GetElement(r, c) for c in range(4)] for r in range(4)])


def nodeArray(node) -> np.ndarray:
    from vtkmodules.util.numpy_support import vtk_to_numpy

    image = node.GetImageData()
    scalars = image.GetPointData().GetScalars()
    shape = image.GetDimensions()[::-1]
    if scalars.GetNumberOfComponents() > 1:
        shape += (scalars.GetNumberOfComponents(),)
    return vtk_to_numpy(scalars).reshape(shape)


def assertSameVolume(a: Volume, b: Volume):
    assert a.array.dtype == b.array.dtype
    assert a.array.shape == b.array.shape
    np.testing.assert_array_equal(a.array, b.array)
    assert a.geometry == b.geometry, f"{a.geometry!r} != {b.geometry!r}"  # exact, not approximate


# --- volume -> node -> volume ------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.int16, np.float32, np.uint16, np.int32, np.float64])
def test_round_trip_is_identical_for_oblique_anisotropic_volume(scene, dtype):
    volume = SampleVolumes.obliqueVolume(dtype)
    assert volume.geometry.is_oblique() and len(set(volume.spacing)) == 3
    node = VolumeNodes.nodeFromVolume(scene, volume, "oblique")
    assert node.IsA("vtkMRMLScalarVolumeNode") and not node.IsA("vtkMRMLLabelMapVolumeNode")
    assert node.GetDisplayNode() is not None
    back = VolumeNodes.volumeFromNode(node)
    assertSameVolume(volume, back)
    # the copy does not alias the node's buffer
    back.array[0, 0, 0] += 1
    assert nodeArray(node)[0, 0, 0] == volume.array[0, 0, 0]


def test_node_ijk_to_ras_is_geometry_ijk_to_ras(scene):
    volume = SampleVolumes.obliqueVolume()
    node = VolumeNodes.nodeFromVolume(scene, volume, "oblique")
    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    np.testing.assert_allclose(matrixToArray(m), volume.geometry.ijk_to_ras(), rtol=0, atol=1e-12)
    # voxel (i, j, k) = (6, 0, 4): Slicer's RAS point is MedPrep's LPS point with x, y negated
    lps = volume.geometry.index_to_physical([6, 0, 4])
    ras = matrixToArray(m) @ np.array([6, 0, 4, 1.0])
    np.testing.assert_allclose(ras[:3], [-lps[0], -lps[1], lps[2]], atol=1e-9)
    # and the voxel there is the one the (z, y, x) array holds at [4, 0, 6]
    assert nodeArray(node)[4, 0, 6] == volume.array[4, 0, 6] == 6 + 0 + 400 - 300


def test_node_made_by_slicer_reads_with_lps_geometry(scene):
    """A node whose grid is set the Slicer way (IJKToRAS matrix) gives the matching LPS grid."""
    node = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "from Slicer")
    ijkToRAS = np.array([[-0.5, 0, 0, 10.0], [0, 0, 3.0, -20.0], [0, 0.8, 0, 30.0], [0, 0, 0, 1]])
    m = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            m.SetElement(r, c, ijkToRAS[r, c])
    node.SetIJKToRASMatrix(m)
    image = vtk.vtkImageData()
    image.SetDimensions(4, 3, 2)
    image.AllocateScalars(vtk.VTK_SHORT, 1)
    node.SetAndObserveImageData(image)
    nodeArray(node)[:] = np.arange(24, dtype=np.int16).reshape(2, 3, 4)

    volume = VolumeNodes.volumeFromNode(node)
    np.testing.assert_allclose(volume.spacing, (0.5, 0.8, 3.0))
    np.testing.assert_allclose(volume.origin, (-10.0, 20.0, 30.0))  # RAS (10, -20, 30) in LPS
    # I runs along RAS -x (towards Left), J along +z (Superior), K along +y (Anterior)
    np.testing.assert_allclose(volume.direction, [[1, 0, 0], [0, 0, -1], [0, 1, 0]], atol=1e-12)
    assert volume.geometry.orientation == "LSA"
    np.testing.assert_array_equal(volume.array, np.arange(24).reshape(2, 3, 4))
    np.testing.assert_allclose(volume.geometry.ijk_to_ras(), ijkToRAS, atol=1e-12)


def test_label_map_round_trip(scene):
    labels = SampleVolumes.obliqueLabelMap()
    node = VolumeNodes.nodeFromVolume(scene, labels, "labels", labelmap=True)
    assert node.IsA("vtkMRMLLabelMapVolumeNode")
    assert node.GetDisplayNode().IsA("vtkMRMLLabelMapVolumeDisplayNode")
    assertSameVolume(labels, VolumeNodes.volumeFromNode(node))


def test_label_map_refuses_float_and_multichannel(scene):
    with pytest.raises(InvalidImageError, match="integers"):
        VolumeNodes.nodeFromVolume(scene, SampleVolumes.obliqueVolume(np.float32), "x", labelmap=True)
    multi = Volume(np.zeros((2, 3, 4, 2), np.uint8))
    with pytest.raises(InvalidImageError, match="one channel"):
        VolumeNodes.nodeFromVolume(scene, multi, "x", labelmap=True)


def test_multichannel_volume_becomes_vector_volume_and_back(scene):
    base = SampleVolumes.obliqueVolume(np.uint16)
    rgb = np.stack([base.array, base.array * 2, base.array + 7], axis=-1)
    volume = Volume(rgb, base.geometry)
    node = VolumeNodes.nodeFromVolume(scene, volume, "vector")
    assert node.IsA("vtkMRMLVectorVolumeNode")
    assert node.GetImageData().GetNumberOfScalarComponents() == 3
    assertSameVolume(volume, VolumeNodes.volumeFromNode(node))


def test_bool_voxels_become_uint8(scene):
    mask = Volume(np.eye(4, dtype=bool)[None].repeat(3, axis=0), spacing=(1, 2, 3))
    back = VolumeNodes.volumeFromNode(VolumeNodes.nodeFromVolume(scene, mask, "mask", labelmap=True))
    assert back.array.dtype == np.uint8
    np.testing.assert_array_equal(back.array, mask.array)


def test_existing_node_is_updated_in_place(scene):
    node = VolumeNodes.nodeFromVolume(scene, SampleVolumes.obliqueVolume(np.int16), "first")
    displayNode = node.GetDisplayNode()
    other = SampleVolumes.obliqueVolume(np.float32, size=(3, 4, 5))
    same = VolumeNodes.nodeFromVolume(scene, other, None, node=node)
    assert same is node and node.GetName() == "first" and node.GetDisplayNode() is displayNode
    assertSameVolume(other, VolumeNodes.volumeFromNode(node))
    with pytest.raises(MedPrepError, match="needs a vtkMRMLLabelMapVolumeNode"):
        VolumeNodes.nodeFromVolume(scene, SampleVolumes.obliqueLabelMap(), "l", node=node, labelmap=True)
    with pytest.raises(MedPrepError, match="does not belong to the given scene"):
        VolumeNodes.nodeFromVolume(slicer.vtkMRMLScene(), other, None, node=node)


def test_new_node_names_are_unique(scene):
    a = VolumeNodes.nodeFromVolume(scene, SampleVolumes.obliqueVolume(), "CT")
    b = VolumeNodes.nodeFromVolume(scene, SampleVolumes.obliqueVolume(), "CT")
    assert a.GetName() == "CT" and b.GetName() != "CT"


def test_image_extent_not_starting_at_zero_moves_the_origin(scene):
    volume = SampleVolumes.obliqueVolume()
    node = VolumeNodes.nodeFromVolume(scene, volume, "cropped")
    image = node.GetImageData()
    shifted = vtk.vtkImageData()
    shifted.DeepCopy(image)
    shifted.SetExtent(2, 8, 1, 6, 3, 7)  # same dimensions, first voxel at IJK (2, 1, 3)
    node.SetAndObserveImageData(shifted)
    back = VolumeNodes.volumeFromNode(node)
    np.testing.assert_array_equal(back.array, volume.array)
    np.testing.assert_allclose(back.origin, volume.geometry.index_to_physical([2, 1, 3]), atol=1e-9)


# --- parent transforms -------------------------------------------------------------------


def _underLinearTransform(scene, node, matrixRAS: np.ndarray):
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode", "shift")
    m = vtk.vtkMatrix4x4()
    for r in range(4):
        for c in range(4):
            m.SetElement(r, c, matrixRAS[r, c])
    transform.SetMatrixTransformToParent(m)
    node.SetAndObserveTransformNodeID(transform.GetID())
    return transform


def test_transformed_node_is_refused_by_default(scene):
    node = VolumeNodes.nodeFromVolume(scene, SampleVolumes.obliqueVolume(), "moved")
    _underLinearTransform(scene, node, np.eye(4) + np.array([[0, 0, 0, 5.0], [0] * 4, [0] * 4, [0] * 4]))
    with pytest.raises(InputError, match="is under transform 'shift'.*harden"):
        VolumeNodes.volumeFromNode(node)


def test_harden_policy_folds_a_linear_transform_into_the_grid(scene):
    volume = SampleVolumes.obliqueVolume()
    node = VolumeNodes.nodeFromVolume(scene, volume, "moved")
    rotation = np.eye(4)
    rotation[:3, :3] = SampleVolumes.rotationMatrix(0, 0, 30)
    rotation[:3, 3] = (5.0, -2.0, 7.0)  # RAS mm
    _underLinearTransform(scene, node, rotation)
    hardened = VolumeNodes.volumeFromNode(node, transformPolicy="harden")
    np.testing.assert_array_equal(hardened.array, volume.array)
    np.testing.assert_allclose(hardened.geometry.ijk_to_ras(), rotation @ volume.geometry.ijk_to_ras(), atol=1e-9)
    # the node itself is untouched
    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    np.testing.assert_allclose(matrixToArray(m), volume.geometry.ijk_to_ras(), atol=1e-12)


def test_harden_policy_refuses_shear(scene):
    node = VolumeNodes.nodeFromVolume(scene, SampleVolumes.obliqueVolume(), "sheared")
    shear = np.eye(4)
    shear[0, 1] = 0.5
    _underLinearTransform(scene, node, shear)
    with pytest.raises(InvalidImageError, match="sheared"):
        VolumeNodes.volumeFromNode(node, transformPolicy="harden")


def test_harden_policy_refuses_nonlinear_transform(scene):
    node = VolumeNodes.nodeFromVolume(scene, SampleVolumes.obliqueVolume(), "warped")
    grid = scene.AddNewNodeByClass("vtkMRMLGridTransformNode", "warp")
    node.SetAndObserveTransformNodeID(grid.GetID())
    with pytest.raises(InputError, match="non-linear"):
        VolumeNodes.volumeFromNode(node, transformPolicy="harden")


def test_bad_inputs_raise_medprep_errors(scene):
    with pytest.raises(InputError, match="no input volume"):
        VolumeNodes.volumeFromNode(None)
    empty = scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty")
    with pytest.raises(InvalidImageError, match="'empty'.*has no voxels"):
        VolumeNodes.volumeFromNode(empty)
    model = scene.AddNewNodeByClass("vtkMRMLModelNode", "surface")
    with pytest.raises(InputError, match="not a volume"):
        VolumeNodes.volumeFromNode(model)
    tensor = scene.AddNewNodeByClass("vtkMRMLDiffusionTensorVolumeNode", "dti")
    with pytest.raises(InputError, match="diffusion"):
        VolumeNodes.volumeFromNode(tensor)
    node = VolumeNodes.nodeFromVolume(scene, SampleVolumes.obliqueVolume(), "ok")
    with pytest.raises(MedPrepError, match="transform policy"):
        VolumeNodes.volumeFromNode(node, transformPolicy="ignore")
    with pytest.raises(InvalidImageError, match="complex"):
        VolumeNodes.nodeFromVolume(scene, Volume(np.zeros((2, 2, 2), np.complex64)), "c")


# --- files: Slicer's storage node <-> MedPrepLib ---------------------------------------------


def _readImage(path: Path) -> Volume:
    try:
        from MedPrepLib.imageio import read_image
    except ImportError:  # imageio not there yet: SimpleITK is what it wraps
        import SimpleITK as sitk

        return Volume.from_sitk(sitk.ReadImage(str(path)), copy=True)
    return read_image(path)


def _writeImage(volume: Volume, path: Path) -> None:
    try:
        from MedPrepLib.imageio import write_image
    except ImportError:
        import SimpleITK as sitk

        sitk.WriteImage(volume.to_sitk(), str(path), True)
        return
    write_image(volume, path)


# NIfTI stores spacing, origin and the quaternion in float32: compare to float32 precision there.
FORMATS = [(".nrrd", 1e-9, 1e-12), (".nii.gz", 1e-4, 1e-6), (".mha", 1e-9, 1e-12)]


@pytest.mark.parametrize("suffix,atol_mm,atol_dir", FORMATS)
@pytest.mark.parametrize("kind", ["int16", "float32", "labelmap"])
def test_file_written_by_slicer_storage_node_reads_in_medpreplib(scene, tmp_path, suffix, atol_mm, atol_dir, kind):
    volume = SampleVolumes.obliqueLabelMap() if kind == "labelmap" else SampleVolumes.obliqueVolume(np.dtype(kind))
    node = VolumeNodes.nodeFromVolume(scene, volume, "out", labelmap=kind == "labelmap")
    storage = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    path = tmp_path / f"slicer{suffix}"
    storage.SetFileName(str(path))
    assert storage.WriteData(node) == 1, f"Slicer could not write {path.name}"

    back = _readImage(path)
    assert back.array.dtype == volume.array.dtype
    np.testing.assert_array_equal(back.array, volume.array)
    assert back.geometry.isclose(volume.geometry, atol_mm=atol_mm, atol_dir=atol_dir), (back.geometry, volume.geometry)


@pytest.mark.parametrize("suffix,atol_mm,atol_dir", FORMATS)
@pytest.mark.parametrize("kind", ["int16", "float32", "labelmap"])
def test_file_written_by_medpreplib_reads_in_slicer_storage_node(scene, tmp_path, suffix, atol_mm, atol_dir, kind):
    volume = SampleVolumes.obliqueLabelMap() if kind == "labelmap" else SampleVolumes.obliqueVolume(np.dtype(kind))
    path = tmp_path / f"medprep{suffix}"
    _writeImage(volume, path)

    nodeClass = "vtkMRMLLabelMapVolumeNode" if kind == "labelmap" else "vtkMRMLScalarVolumeNode"
    node = scene.AddNewNodeByClass(nodeClass, "read")
    storage = scene.AddNewNodeByClass("vtkMRMLVolumeArchetypeStorageNode")
    storage.SetFileName(str(path))
    assert storage.ReadData(node) == 1, f"Slicer could not read {path.name}"

    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    np.testing.assert_allclose(matrixToArray(m), volume.geometry.ijk_to_ras(), rtol=0, atol=atol_mm)
    np.testing.assert_array_equal(nodeArray(node), volume.array)
    back = VolumeNodes.volumeFromNode(node)
    assert back.array.dtype == volume.array.dtype
    assert back.geometry.isclose(volume.geometry, atol_mm=atol_mm, atol_dir=atol_dir)


# --- the module's processing, without GUI --------------------------------------------------


CLIP_SCALE = {"version": 1, "steps": [{"op": "clip_scale", "min": -1000, "max": 400}]}


def test_process_without_recipe_gives_an_identical_new_node(scene):
    volume = SampleVolumes.obliqueVolume(np.int16)
    inputNode = VolumeNodes.nodeFromVolume(scene, volume, "CT")
    seen = []
    outputNode = Processing.processVolumeNode(inputNode, progressCallback=lambda label, f: seen.append(f))
    assert outputNode is not inputNode and outputNode.GetScene() is scene
    assert outputNode.GetName() == "CT MedPrep"
    assertSameVolume(volume, VolumeNodes.volumeFromNode(outputNode))
    assert outputNode.GetAttribute(Processing.PROVENANCE_ATTRIBUTE) is None
    assert seen[0] == 0.0 and seen[-1] == 1.0 and seen == sorted(seen)
    # an unset path field of the panel ("." or "") means no recipe too
    assertSameVolume(volume, VolumeNodes.volumeFromNode(Processing.processVolumeNode(inputNode, Path("."))))


def test_process_runs_a_recipe_and_records_its_provenance(scene, tmp_path):
    volume = SampleVolumes.obliqueVolume(np.int16)
    inputNode = VolumeNodes.nodeFromVolume(scene, volume, "CT")
    recipeFile = tmp_path / "recipe.json"
    recipeFile.write_text(json.dumps(CLIP_SCALE))
    for recipe in (CLIP_SCALE, recipeFile, str(recipeFile)):
        out = VolumeNodes.volumeFromNode(Processing.processVolumeNode(inputNode, recipe, outputName="scaled"))
        expected = np.clip((volume.array.astype(np.float64) + 1000) / 1400, 0, 1)
        np.testing.assert_allclose(out.array, expected, rtol=0, atol=1e-6)
        assert out.geometry == volume.geometry
    node = scene.GetFirstNodeByName("scaled")
    provenance = json.loads(node.GetAttribute(Processing.PROVENANCE_ATTRIBUTE))
    assert [step["op"] for step in provenance["steps"]] == ["clip_scale"]
    assert Geometry.from_dict(provenance["input"]["image"]["geometry"]) == volume.geometry


def test_process_with_a_geometric_recipe_keeps_every_voxel_at_its_physical_place(scene):
    volume = SampleVolumes.obliqueVolume(np.int16)
    inputNode = VolumeNodes.nodeFromVolume(scene, volume, "CT")
    recipe = {"version": 1, "steps": [{"op": "reorient", "to": "RAS"}]}
    out = VolumeNodes.volumeFromNode(Processing.processVolumeNode(inputNode, recipe))
    assert out.geometry.orientation == "RAS" and volume.geometry.orientation != "RAS"
    k, j, i = np.indices(volume.shape).reshape(3, -1)
    points = volume.geometry.index_to_physical(np.stack([i, j, k], axis=-1))
    index = out.geometry.physical_to_index(points)
    np.testing.assert_allclose(index, np.round(index), atol=1e-6)  # reorienting never resamples
    x, y, z = np.round(index).astype(int).T
    np.testing.assert_array_equal(out.array[z, y, x], volume.array[k, j, i])


def test_process_refuses_a_recipe_on_a_label_map_but_copies_it(scene):
    labels = VolumeNodes.nodeFromVolume(scene, SampleVolumes.obliqueLabelMap(), "seg", labelmap=True)
    with pytest.raises(RecipeError, match="label map"):
        Processing.processVolumeNode(labels, CLIP_SCALE)
    copy = Processing.processVolumeNode(labels)
    assert copy.IsA("vtkMRMLLabelMapVolumeNode")
    np.testing.assert_array_equal(VolumeNodes.volumeFromNode(copy).array, SampleVolumes.obliqueLabelMap().array)


def test_process_reports_a_bad_recipe_by_step_and_parameter(scene, tmp_path):
    inputNode = VolumeNodes.nodeFromVolume(scene, SampleVolumes.obliqueVolume(), "CT")
    bad = {"version": 1, "steps": [{"op": "clip_scale", "min": 5, "max": 1}]}
    with pytest.raises(RecipeError, match=r"step 1 \(clip_scale\).*'max'"):
        Processing.processVolumeNode(inputNode, bad)
    with pytest.raises(InputError, match="recipe file not found"):
        Processing.processVolumeNode(inputNode, tmp_path / "missing.json")


def test_process_can_be_cancelled_and_then_adds_no_node(scene):
    inputNode = VolumeNodes.nodeFromVolume(scene, SampleVolumes.obliqueVolume(), "CT")
    before = scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode")
    labels = []

    def cancelInFirstStep(label, fraction):
        labels.append(label)
        return label.startswith("step 1")

    with pytest.raises(CancelledError):
        Processing.processVolumeNode(inputNode, CLIP_SCALE, progressCallback=cancelInFirstStep)
    assert any(label.startswith("step 1") for label in labels)
    assert scene.GetNumberOfNodesByClass("vtkMRMLScalarVolumeNode") == before


def test_failed_conversion_adds_no_node(scene):
    before = scene.GetNumberOfNodes()
    with pytest.raises(InvalidImageError):
        VolumeNodes.nodeFromVolume(scene, Volume(np.zeros((2, 2, 2), np.complex64)), "c")
    assert scene.GetNumberOfNodes() == before


def test_export_writes_exact_geometry_and_never_overwrites(scene, tmp_path):
    pytest.importorskip("MedPrepLib.imageio", reason="MedPrepLib.imageio is not there yet")
    from MedPrepLib.errors import OutputExistsError

    volume = SampleVolumes.obliqueVolume(np.int16)
    node = VolumeNodes.nodeFromVolume(scene, volume, "3: CT / chest")
    path = tmp_path / Processing.exportFileName(node.GetName(), ".nrrd")
    assert path.name == "3_CT_chest.nrrd"
    assert Processing.exportVolumeNode(node, path) == path
    back = _readImage(path)
    np.testing.assert_array_equal(back.array, volume.array)
    assert back.geometry.isclose(volume.geometry, atol_mm=1e-9, atol_dir=1e-12)
    with pytest.raises(OutputExistsError):
        Processing.exportVolumeNode(node, path)
    Processing.exportVolumeNode(node, path, overwrite=True)
    with pytest.raises(MedPrepError, match="export format"):
        Processing.exportFileName("x", ".png")


def test_processing_doctests():
    assert doctest.testmod(Processing).failed == 0


def test_glue_imports_no_gui_modules():
    """MedPrepCore must stay importable without Qt: no qt/ctk/ScriptedLoadableModule imports."""
    import ast

    for path in (REPO / "MedPrep" / "MedPrepCore").glob("*.py"):
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            for name in names:
                top = name.split(".")
                assert top[0] not in {"qt", "ctk", "slicer.ScriptedLoadableModule"}, f"{path.name} imports {name}"
                assert "ScriptedLoadableModule" not in name and "parameterNodeWrapper" not in name, path.name
    assert Geometry  # MedPrepLib is importable alongside
