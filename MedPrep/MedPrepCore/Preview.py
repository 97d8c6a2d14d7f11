"""Preview a recipe in the scene: an image (and its label) run through it into new nodes. No Qt.

:func:`previewVolumeNode` is what the panel's *Preview* button and ``logic.preview(...)`` do: the
input volume node (and optionally its label: a label map node, or a segmentation node turned
into a label map on the input's grid by :mod:`MedPrepCore.Segmentations`) goes through
:func:`MedPrepLib.recipe.run_recipe` — the very function ``medprep preprocess`` runs — and the
results become nodes of the input's scene, with the run's provenance (JSON) in the attribute
:data:`~MedPrepCore.Processing.PROVENANCE_ATTRIBUTE`.

Preview nodes are marked with :data:`PREVIEW_OF_ATTRIBUTE` (the input node's ID) and
:data:`PREVIEW_ROLE_ATTRIBUTE` (``"image"`` or ``"label"``). A new preview of the same input
updates those nodes in place instead of piling up new ones, so the slice views that show them
keep showing the latest run; a label preview that is no longer asked for is removed. Nothing
in the scene changes when the run fails or is cancelled.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from MedPrepLib.errors import InputError, RecipeError
from MedPrepLib.progress import ProgressCallback, as_progress

from . import Segmentations, VolumeNodes
from .Processing import PROVENANCE_ATTRIBUTE, asRecipe

PREVIEW_OF_ATTRIBUTE = "MedPrep.previewOf"
PREVIEW_ROLE_ATTRIBUTE = "MedPrep.previewRole"


@dataclass
class PreviewNodes:
    """The nodes a preview made or updated: ``image`` (volume node) and ``label`` (label map node or None)."""

    image: object
    label: object = None


def previewNodesOf(inputVolume) -> dict[str, object]:
    """{role: node} of the preview nodes of ``inputVolume`` now in its scene."""
    scene, found = inputVolume.GetScene(), {}
    for node in scene.GetNodesByClass("vtkMRMLScalarVolumeNode"):  # label maps are scalar volumes too
        if node.GetAttribute(PREVIEW_OF_ATTRIBUTE) == inputVolume.GetID():
            found[node.GetAttribute(PREVIEW_ROLE_ATTRIBUTE) or "image"] = node
    return found


def _labelVolume(labelVolume, inputVolume, labelMap, transformPolicy):
    if labelVolume is None:
        return None
    if labelVolume.IsA(Segmentations.SEGMENTATION_CLASS):
        label, _, _ = Segmentations.labelVolumeFromSegmentation(labelVolume, inputVolume, labelMap)
        return label
    if not labelVolume.IsA(VolumeNodes.LABELMAP_VOLUME_CLASS):
        raise InputError(
            f"'{labelVolume.GetName()}' is not a label map or a segmentation",
            hint="choose a label map node or a segmentation node as the label",
        )
    return VolumeNodes.volumeFromNode(labelVolume, transformPolicy=transformPolicy)


def _put(scene, volume, name, existing, *, labelmap: bool):
    """Update ``existing`` in place when it is of the right kind, else make a new node."""
    if labelmap:
        wanted = VolumeNodes.LABELMAP_VOLUME_CLASS
    else:
        wanted = VolumeNodes.VECTOR_VOLUME_CLASS if volume.array.ndim == 4 else VolumeNodes.SCALAR_VOLUME_CLASS
    if existing is not None and existing.GetClassName() != wanted:
        scene.RemoveNode(existing)
        existing = None
    if existing is not None:
        return VolumeNodes.nodeFromVolume(scene, volume, None, node=existing, labelmap=labelmap)
    return VolumeNodes.nodeFromVolume(scene, volume, name, labelmap=labelmap)


def previewVolumeNode(
    inputVolume,
    recipe,
    labelVolume=None,
    transformPolicy: str = "refuse",
    progressCallback: ProgressCallback | None = None,
    *,
    labelMap=None,
    seed: int = 0,
    statistics: dict | None = None,
) -> PreviewNodes:
    """Run ``inputVolume`` (and ``labelVolume``) through ``recipe`` into preview nodes; returns them.

    ``recipe``: a :class:`~MedPrepLib.recipe.Recipe`, its JSON dict or a recipe file.
    ``labelVolume``: a label map node on any grid overlapping the image (it is put on the
    image's grid as ``medprep preprocess --label`` does), or a segmentation node (its segments
    through ``labelMap``, see :func:`MedPrepCore.Segmentations.labelFromSegmentation`).
    ``seed`` and ``statistics`` as for ``medprep preprocess --seed/--statistics``. The image
    preview is named "<input> preview", the label "<input> preview label"; both carry the
    provenance. Voxels and IJKToRAS equal what ``medprep preprocess`` writes for the same input.

    >>> # logic = slicer.util.getModuleLogic("MedPrep")
    >>> # nodes = logic.preview(getNode("CT"), {"steps": [{"step": "resample", "spacing": [1, 1, 1]}]})
    >>> # nodes.image.GetSpacing()
    (1.0, 1.0, 1.0)
    """
    from MedPrepLib.recipe import run_recipe

    progress = as_progress(progressCallback)
    progress.update("Reading the input volume", 0.0)
    recipe = asRecipe(recipe)
    if recipe is None:
        raise RecipeError("no recipe to preview", hint="choose a recipe file or set the recipe's steps")
    if inputVolume is None or inputVolume.IsA(VolumeNodes.LABELMAP_VOLUME_CLASS):
        raise InputError("a preview needs an image volume", hint="select the image as input (its label is separate)")
    image = VolumeNodes.volumeFromNode(inputVolume, transformPolicy=transformPolicy)
    label = _labelVolume(labelVolume, inputVolume, labelMap, transformPolicy)
    result = run_recipe(recipe, image, label, seed=seed, statistics=statistics, progress=progress.sub(0.1, 0.9))
    progress.update("Showing the preview", 0.9)
    scene, earlier = inputVolume.GetScene(), previewNodesOf(inputVolume)
    provenance = json.dumps(result.provenance)
    imageNode = _put(scene, result.image, f"{inputVolume.GetName()} preview", earlier.get("image"), labelmap=False)
    labelNode = None
    if result.label is not None:
        labelNode = _put(scene, result.label, f"{inputVolume.GetName()} preview label", earlier.get("label"), labelmap=True)
    elif earlier.get("label") is not None:
        scene.RemoveNode(earlier["label"])
    for role, node in (("image", imageNode), ("label", labelNode)):
        if node is not None:
            node.SetAttribute(PREVIEW_OF_ATTRIBUTE, inputVolume.GetID())
            node.SetAttribute(PREVIEW_ROLE_ATTRIBUTE, role)
            node.SetAttribute(PROVENANCE_ATTRIBUTE, provenance)
    progress.update("Done", 1.0)
    return PreviewNodes(imageNode, labelNode)
