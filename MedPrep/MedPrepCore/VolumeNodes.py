"""Slicer volume nodes <-> MedPrepLib volumes: the one place where a node's IJKToRAS is read or made.

Frames and orders
-----------------
A Slicer volume node stores its grid as spacing (mm, along I, J, K), origin (**RAS** mm, centre
of the voxel IJK = (0, 0, 0)) and a 3x3 matrix whose columns are the **RAS** directions of the
I, J and K axes; together they make IJKToRAS. IJK is the (x, y, z) voxel index — the same index
SimpleITK and MedPrepLib use — so a MedPrepLib :class:`~MedPrepLib.geometry.Geometry` (LPS) is the
same grid with the first two rows of the direction matrix and the first two origin coordinates
negated; size and spacing are shared. The flip itself is MedPrepLib's one LPS <-> RAS change of
frame (:data:`MedPrepLib.geometry.LPS_TO_RAS`, which ``Geometry.ijk_to_ras()`` and
``Geometry.from_affine_ras()`` use too); this module only applies it to the parts of a node's
grid. ``Geometry.ijk_to_ras()`` is exactly the node's IJKToRAS (the tests check it).

The conversion goes through spacing, origin and directions separately, not through the 4x4
matrix, so that a round trip node -> volume -> node is bit-exact (recovering spacing from the
columns of a matrix costs a rounding error).

The voxels of a ``vtkImageData`` run x fastest, so the numpy array over them is (z, y, x), the
MedPrep order; multi-component voxels (vector volumes, RGB) become channels last, (z, y, x, c).

Parent transforms
-----------------
A node under a transform is shown somewhere else than its own IJKToRAS says. Silently using
the untransformed grid would produce data that no longer lines up with what the user sees, so
:func:`volumeFromNode` refuses such a node by default (``transformPolicy="refuse"``). With
``transformPolicy="harden"`` a *linear* transform to world is folded into the returned grid
(the node itself is not changed); a non-linear transform is always refused, since it would need
resampling (harden it in the Transforms module, which resamples, and try again).

Qt-free: imports MRML classes only through ``slicer``, plus VTK, numpy and MedPrepLib; every
function gets the scene or the node explicitly.
"""

from __future__ import annotations

import numpy as np

from MedPrepLib.errors import InputError, InvalidImageError, MedPrepError
from MedPrepLib.geometry import LPS_TO_RAS, Geometry
from MedPrepLib.volume import Volume

TRANSFORM_POLICIES = ("refuse", "harden")
"""What :func:`volumeFromNode` does with a node under a transform (see the module docstring)."""

SCALAR_VOLUME_CLASS = "vtkMRMLScalarVolumeNode"
LABELMAP_VOLUME_CLASS = "vtkMRMLLabelMapVolumeNode"
VECTOR_VOLUME_CLASS = "vtkMRMLVectorVolumeNode"

# Diffusion volumes carry gradients / tensors whose meaning depends on a measurement frame that
# a plain volume cannot hold; converting them as channels would silently drop it.
_UNSUPPORTED_CLASSES = ("vtkMRMLDiffusionTensorVolumeNode", "vtkMRMLDiffusionWeightedVolumeNode")


def _describe(node) -> str:
    return f"volume '{node.GetName()}' ({node.GetID() or node.GetClassName()})"


def geometryFromIJKToRAS(spacing, originRAS, directionsRAS, size) -> Geometry:
    """The LPS geometry of a grid given as Slicer gives it.

    ``spacing`` in mm and ``size`` in voxels, both (I, J, K) = (x, y, z); ``originRAS`` in RAS
    mm; ``directionsRAS`` a 3x3 matrix whose columns are the RAS directions of I, J, K.
    """
    directionLPS = LPS_TO_RAS @ np.asarray(directionsRAS, dtype=np.float64)  # its own inverse
    originLPS = LPS_TO_RAS @ np.asarray(originRAS, dtype=np.float64)
    return Geometry(size=tuple(size), spacing=tuple(spacing), origin=tuple(originLPS), direction=directionLPS)


def ijkToRASParts(geometry: Geometry) -> tuple[tuple, tuple, list]:
    """(spacing mm, origin RAS mm, 3x3 RAS directions as nested lists) of an LPS geometry."""
    directionsRAS = LPS_TO_RAS @ geometry.direction
    originRAS = LPS_TO_RAS @ np.asarray(geometry.origin)
    return geometry.spacing, tuple(float(v) for v in originRAS), directionsRAS.tolist()


def _nodeGeometry(volumeNode, imageData, transformPolicy: str) -> Geometry:
    size = imageData.GetDimensions()
    spacing = volumeNode.GetSpacing()
    originRAS = np.array(volumeNode.GetOrigin(), dtype=np.float64)
    directions = [[0.0] * 3 for _ in range(3)]
    volumeNode.GetIJKToRASDirections(directions)
    directions = np.array(directions, dtype=np.float64)

    extentStart = np.array(imageData.GetExtent()[0::2], dtype=np.float64)
    if np.any(extentStart != 0):
        # The first stored voxel sits at IJK = extent start, not at 0: move the origin there.
        originRAS = originRAS + directions @ (np.array(spacing) * extentStart)

    geometry = geometryFromIJKToRAS(spacing, originRAS, directions, size)
    transformNode = volumeNode.GetParentTransformNode()
    if transformNode is None:
        return geometry

    if transformPolicy == "refuse":
        raise InputError(
            f"{_describe(volumeNode)} is under transform '{transformNode.GetName()}'",
            hint="harden the transform (Data module: right-click > Harden transform) "
            "or use the transform policy 'harden'",
        )
    if not transformNode.IsTransformToWorldLinear():
        raise InputError(
            f"{_describe(volumeNode)} is under the non-linear transform '{transformNode.GetName()}', "
            "which would need resampling",
            hint="harden the transform in the Transforms module first",
        )
    import vtk

    toWorld = vtk.vtkMatrix4x4()
    transformNode.GetMatrixTransformToWorld(toWorld)
    toWorldArray = np.array([[toWorld.GetElement(r, c) for c in range(4)] for r in range(4)])
    # from_affine_ras refuses a sheared result (a volume needs an orthogonal grid).
    return Geometry.from_affine_ras(toWorldArray @ geometry.ijk_to_ras(), size)


def volumeFromNode(volumeNode, *, transformPolicy: str = "refuse") -> Volume:
    """The voxels and LPS grid of a Slicer volume node, as a MedPrepLib volume.

    The array is a copy, (z, y, x) for scalar voxels and (z, y, x, c) for multi-component ones
    (vector volumes); values are the stored ones, in the node's voxel type. A label map node gives
    its integer labels. ``transformPolicy`` is ``"refuse"`` (default) or ``"harden"`` — see the
    module docstring for nodes under a transform.

    Raises :class:`~MedPrepLib.errors.InputError` for a missing or unsupported node or a refused
    transform, :class:`~MedPrepLib.errors.InvalidImageError` for a node without voxels.
    """
    if transformPolicy not in TRANSFORM_POLICIES:
        raise MedPrepError(
            f"unknown transform policy '{transformPolicy}'", hint="use one of: " + ", ".join(TRANSFORM_POLICIES)
        )
    if volumeNode is None:
        raise InputError("no input volume given", hint="select a volume")
    if not volumeNode.IsA("vtkMRMLVolumeNode"):
        raise InputError(f"'{volumeNode.GetName()}' is a {volumeNode.GetClassName()}, not a volume")
    for className in _UNSUPPORTED_CLASSES:
        if volumeNode.IsA(className):
            raise InputError(
                f"{_describe(volumeNode)} is a diffusion volume, which MedPrep does not convert",
                hint="export a scalar volume from it first (e.g. with the Diffusion modules)",
            )
    imageData = volumeNode.GetImageData()
    scalars = imageData.GetPointData().GetScalars() if imageData is not None else None
    if scalars is None or imageData.GetNumberOfPoints() == 0:
        raise InvalidImageError(f"{_describe(volumeNode)} has no voxels")

    from vtkmodules.util.numpy_support import vtk_to_numpy

    size = imageData.GetDimensions()  # (x, y, z)
    components = scalars.GetNumberOfComponents()
    shape = tuple(size[::-1]) + ((components,) if components > 1 else ())
    # Copy: the node owns the VTK buffer and may change or free it at any time.
    array = np.array(vtk_to_numpy(scalars).reshape(shape), copy=True)
    geometry = _nodeGeometry(volumeNode, imageData, transformPolicy)
    return Volume(array, geometry)


def _nodeClassFor(volume: Volume, labelmap: bool) -> str:
    if labelmap:
        if volume.array.ndim == 4:
            raise InvalidImageError(f"a label map must have one channel, this volume has {volume.n_channels}")
        if volume.array.dtype.kind not in "biu":
            raise InvalidImageError(
                f"label map voxels must be integers, got {volume.array.dtype}",
                hint="cast the labels to an integer type",
            )
        return LABELMAP_VOLUME_CLASS
    return VECTOR_VOLUME_CLASS if volume.array.ndim == 4 else SCALAR_VOLUME_CLASS


def _vtkScalarsFrom(array: np.ndarray):
    from vtkmodules.util.numpy_support import numpy_to_vtk

    if array.dtype == np.bool_:
        array = array.astype(np.uint8)
    elif array.dtype == np.float16:
        array = array.astype(np.float32)
    elif array.dtype.kind not in "iuf":
        raise InvalidImageError(f"voxels of type {array.dtype} cannot be put into a Slicer volume")
    components = array.shape[3] if array.ndim == 4 else 1
    flat = (
        np.ascontiguousarray(array).reshape(-1, components) if components > 1 else np.ascontiguousarray(array).ravel()
    )
    vtkArray = numpy_to_vtk(flat, deep=True)
    vtkArray.SetName("ImageScalars")
    return vtkArray


def nodeFromVolume(scene, volume: Volume, name: str | None, node=None, labelmap: bool = False):
    """Put a MedPrepLib volume into a Slicer volume node of ``scene``; returns the node.

    Without ``node`` a new node is added: a ``vtkMRMLLabelMapVolumeNode`` when ``labelmap``
    (integer voxels, one channel), a ``vtkMRMLVectorVolumeNode`` for a multi-channel
    (z, y, x, c) volume, else a ``vtkMRMLScalarVolumeNode``; its name is ``name`` made unique in
    the scene. With ``node`` (which must be in ``scene`` and of a fitting class) the voxels and
    grid of that node are replaced and, if ``name`` is given, it is renamed. The node gets a
    default display node if it has none. The voxels are copied; bool becomes uint8 and float16
    float32, other numpy types are kept. The grid is converted from LPS to RAS exactly.
    """
    nodeClass = _nodeClassFor(volume, labelmap)
    import vtk

    # Everything that can fail comes before the scene is touched.
    imageData = vtk.vtkImageData()
    imageData.SetDimensions(*volume.geometry.size)
    imageData.GetPointData().SetScalars(_vtkScalarsFrom(volume.array))
    spacing, originRAS, directionsRAS = ijkToRASParts(volume.geometry)

    if node is None:
        node = scene.AddNewNodeByClass(nodeClass, scene.GenerateUniqueName(name or "MedPrep volume"))
    else:
        if node.GetScene() is not scene:
            raise MedPrepError(f"node '{node.GetName()}' does not belong to the given scene")
        if not node.IsA(nodeClass):
            raise MedPrepError(
                f"node '{node.GetName()}' is a {node.GetClassName()}, but this volume needs a {nodeClass}",
                hint="pass no node to create a fitting one",
            )
        if name:
            node.SetName(name)

    wasModifying = node.StartModify()
    try:
        node.SetSpacing(*spacing)
        node.SetOrigin(*originRAS)
        node.SetIJKToRASDirections(directionsRAS)
        node.SetAndObserveImageData(imageData)
    finally:
        node.EndModify(wasModifying)
    if node.GetDisplayNode() is None:
        node.CreateDefaultDisplayNodes()
    return node
