"""What the MedPrep module does with a volume node, without any GUI.

* :func:`processVolumeNode` — read a volume node into MedPrepLib, run a preprocessing recipe
  over it (:mod:`MedPrepLib.recipe`) and put the result into a new node of the same scene, with
  the run's provenance (JSON) in the node attribute :data:`PROVENANCE_ATTRIBUTE`;
* :func:`exportVolumeNode` — write a volume node to an image file through MedPrepLib
  (geometry exact, atomic write, never overwriting without ``overwrite=True``);
  :func:`exportVolumeNodeToFolder` names the file after the node, in a given folder.

Both report through ``progressCallback(label, fraction) -> True to cancel`` (raising
:class:`~MedPrepLib.errors.CancelledError`) and raise MedPrep errors on bad input. The module's
logic (``MedPrepLogic`` in ``MedPrep.py``, through :mod:`MedPrepCore.ModuleLogic`) has
:func:`processVolumeNode` and :func:`exportVolumeNodeToFolder` as its ``process`` and
``exportVolume``; batch scripts may call them directly.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
from typing import Any

from MedPrepLib.errors import ExportError, RecipeError
from MedPrepLib.imageio import ONE_FILE_WRITE_SUFFIXES
from MedPrepLib.progress import ProgressCallback, as_progress

from . import VolumeNodes

EXPORT_FORMATS = tuple(suffix for suffix in ONE_FILE_WRITE_SUFFIXES if suffix != ".nii")
"""File endings the module exports to: MedPrepLib's writable formats
(:data:`MedPrepLib.imageio.WRITE_SUFFIXES`), filtered.

Only one-file formats (:data:`~MedPrepLib.imageio.ONE_FILE_WRITE_SUFFIXES`): Export writes and
reports one path, and a detached ``.nhdr`` / ``.mhd`` header would put a second, unnamed data
file beside it that is easily left behind when the file is moved or shared. And not ``.nii``:
it holds the same as ``.nii.gz``, uncompressed, so the panel offers the compressed one only.
"""

PROVENANCE_ATTRIBUTE = "MedPrep.provenance"
"""Node attribute holding the JSON provenance of the recipe run that made the node."""


def asRecipe(recipe: Any):
    """A :class:`MedPrepLib.recipe.Recipe` from a Recipe, its JSON dict, a path to a JSON file, or None.

    None, an empty string and ``"."`` (an unset path field of the panel) mean "no recipe" and
    give None.
    """
    from MedPrepLib.recipe import Recipe

    if recipe is None or isinstance(recipe, Recipe):
        return recipe
    if isinstance(recipe, dict):
        return Recipe.from_dict(recipe)
    if isinstance(recipe, (str, os.PathLike)):
        if str(recipe) in ("", "."):
            return None
        return Recipe.load(recipe)
    raise RecipeError(f"a recipe must be a Recipe, a JSON dict or a file path, got {type(recipe).__name__}")


def processVolumeNode(
    inputVolume,
    recipe: Any = None,
    outputName: str | None = None,
    transformPolicy: str = "refuse",
    progressCallback: ProgressCallback | None = None,
):
    """Run ``inputVolume`` through a preprocessing ``recipe`` into a new volume node; returns the node.

    ``recipe`` is anything :func:`asRecipe` takes. Without one the output is the input as
    MedPrep sees it — same voxels, same grid. The output is added to the input's scene, named
    ``outputName`` (default: input name + " MedPrep"), as a label map if the input is one (a
    label map is only copied: recipes run on images). When a recipe ran, its provenance (steps,
    parameters, grids before and after, undo records; no patient identity) is stored as JSON in
    the node attribute :data:`PROVENANCE_ATTRIBUTE`. A linear parent transform is folded into
    the output grid when ``transformPolicy="harden"``; the default ``"refuse"`` raises for a
    transformed input. Nothing is added to the scene if anything fails or is cancelled.
    """
    progress = as_progress(progressCallback)
    progress.update("Reading the input volume", 0.0)
    recipe = asRecipe(recipe)
    labelmap = bool(inputVolume is not None and inputVolume.IsA(VolumeNodes.LABELMAP_VOLUME_CLASS))
    if recipe is not None and recipe.steps and labelmap:
        raise RecipeError(
            f"'{inputVolume.GetName()}' is a label map; recipes run on images",
            hint="select the image as input (label maps follow their image's geometric steps)",
        )
    volume = VolumeNodes.volumeFromNode(inputVolume, transformPolicy=transformPolicy)
    provenance = None
    if recipe is not None:
        from MedPrepLib.recipe import run_recipe

        result = run_recipe(recipe, volume, progress=progress.sub(0.1, 0.9))
        volume, provenance = result.image, result.provenance
    progress.update("Creating the output volume", 0.9)
    name = outputName or f"{inputVolume.GetName()} MedPrep"
    outputVolume = VolumeNodes.nodeFromVolume(inputVolume.GetScene(), volume, name, labelmap=labelmap)
    if provenance is not None:
        outputVolume.SetAttribute(PROVENANCE_ATTRIBUTE, json.dumps(provenance))
    progress.update("Done", 1.0)
    return outputVolume


def exportFileName(volumeName: str, outputFormat: str = ".nii.gz") -> str:
    """A portable file name for a volume called ``volumeName``, ending in ``outputFormat``.

    >>> exportFileName("3: CT chest / 1.0 mm", ".nrrd")
    '3_CT_chest_1.0_mm.nrrd'
    """
    if outputFormat not in EXPORT_FORMATS:
        raise ExportError(f"unknown export format '{outputFormat}'", hint="use one of: " + ", ".join(EXPORT_FORMATS))
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", volumeName).strip("._") or "volume"
    return stem + outputFormat


def exportVolumeNode(
    inputVolume,
    outputPath: str | pathlib.Path,
    *,
    overwrite: bool = False,
    transformPolicy: str = "refuse",
    progressCallback: ProgressCallback | None = None,
) -> pathlib.Path:
    """Write ``inputVolume`` to ``outputPath`` (any of ``MedPrepLib.imageio.WRITE_SUFFIXES``); returns the path.

    Voxels are written as stored, the grid in LPS as the file format expects. An existing file
    is an :class:`~MedPrepLib.errors.OutputExistsError` unless ``overwrite``; the output folder
    must exist.
    """
    from MedPrepLib.imageio import write_image

    progress = as_progress(progressCallback)
    progress.update("Reading the input volume", 0.0)
    volume = VolumeNodes.volumeFromNode(inputVolume, transformPolicy=transformPolicy)
    progress.update("Writing the file", 0.3)
    written = write_image(volume, outputPath, overwrite=overwrite)
    progress.update("Done", 1.0)
    return pathlib.Path(written)


def exportVolumeNodeToFolder(
    inputVolume,
    outputFolder: str | os.PathLike,
    outputFormat: str = ".nii.gz",
    overwrite: bool = False,
    transformPolicy: str = "refuse",
    progressCallback: ProgressCallback | None = None,
) -> pathlib.Path:
    """Write ``inputVolume`` into the existing ``outputFolder`` as ``<volume name><outputFormat>``.

    The file name comes from :func:`exportFileName` (``outputFormat`` one of
    :data:`EXPORT_FORMATS`); the rest is :func:`exportVolumeNode`. An unset (``""``, ``"."``) or
    missing folder and a missing volume are an :class:`~MedPrepLib.errors.ExportError`, before
    anything is read or written. Returns the path written.
    """
    folder = pathlib.Path(outputFolder)
    if str(outputFolder) in ("", ".") or not folder.is_dir():
        raise ExportError("the output folder does not exist", path=folder, hint="choose an existing folder")
    if inputVolume is None:
        raise ExportError("no input volume given", hint="select a volume")
    outputPath = folder / exportFileName(inputVolume.GetName(), outputFormat)
    return exportVolumeNode(
        inputVolume,
        outputPath,
        overwrite=overwrite,
        transformPolicy=transformPolicy,
        progressCallback=progressCallback,
    )
