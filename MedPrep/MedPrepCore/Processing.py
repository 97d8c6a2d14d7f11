"""What the MedPrep module does with a volume node, without any GUI.

* :func:`processVolumeNode` — read a volume node into MedPrepLib, run MedPrep recipe steps
  over it (none yet from the panel; the recipe work adds them) and put the result into a new
  node of the same scene;
* :func:`exportVolumeNode` — write a volume node to an image file through MedPrepLib
  (geometry exact, atomic write, never overwriting without ``overwrite=True``).

Both report through ``progressCallback(label, fraction) -> True to cancel`` (raising
:class:`~MedPrepLib.errors.CancelledError`) and raise MedPrep errors on bad input. The module's
logic (``MedPrepLogic`` in ``MedPrep.py``) is a thin shell over these; batch scripts may call
them directly.
"""

from __future__ import annotations

import pathlib
import re
from collections.abc import Sequence

from MedPrepLib.errors import ExportError
from MedPrepLib.progress import ProgressCallback, as_progress

from . import VolumeNodes

EXPORT_FORMATS = (".nii.gz", ".nrrd", ".mha")
"""File endings the panel offers for export (MedPrepLib.imageio writes them losslessly)."""


def processVolumeNode(
    inputVolume,
    steps: Sequence = (),
    *,
    outputName: str | None = None,
    transformPolicy: str = "refuse",
    progressCallback: ProgressCallback | None = None,
):
    """Run ``inputVolume`` through MedPrep ``steps`` into a new volume node; returns the node.

    ``steps`` are :class:`MedPrepLib.recipe.base.Step` objects applied in order to the image
    (no label). With no steps the output is the input as MedPrep sees it — same voxels, same
    grid — which is what the panel's Apply does until recipes arrive. The output is added to the
    input's scene, named ``outputName`` (default: input name + " MedPrep"), as a label map if
    the input is one. A linear parent transform is folded into the output grid when
    ``transformPolicy="harden"``; the default ``"refuse"`` raises for a transformed input.
    """
    from MedPrepLib.recipe.base import RunContext

    progress = as_progress(progressCallback)
    progress.update("Reading the input volume", 0.0)
    volume = VolumeNodes.volumeFromNode(inputVolume, transformPolicy=transformPolicy)
    stepsProgress = progress.sub(0.1, 0.9)
    for number, step in enumerate(steps):
        stepsProgress.update(f"Step {number + 1} of {len(steps)}: {step.op}", number / len(steps))
        context = RunContext(progress=stepsProgress.sub(number / len(steps), (number + 1) / len(steps)))
        volume, _label, _record = step.apply(volume, None, context)
    progress.update("Creating the output volume", 0.9)
    labelmap = bool(inputVolume.IsA(VolumeNodes.LABELMAP_VOLUME_CLASS))
    name = outputName or f"{inputVolume.GetName()} MedPrep"
    outputVolume = VolumeNodes.nodeFromVolume(inputVolume.GetScene(), volume, name, labelmap=labelmap)
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
    """Write ``inputVolume`` to ``outputPath`` (.nii.gz, .nii, .nrrd, .mha, .mhd); returns the path.

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
