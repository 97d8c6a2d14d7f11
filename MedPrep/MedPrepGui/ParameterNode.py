"""``MedPrepParameterNode``: the panel's state, saved with the scene.

Each field is bound to the widget of ``Resources/UI/MedPrep.ui`` whose ``SlicerParameterName``
property names it. The choices are the Qt-free core's own lists, so the panel cannot offer what
the logic refuses. (No ``from __future__ import annotations`` here: the wrapper reads the
annotations as objects.)
"""

import pathlib
from typing import Annotated

from MedPrepCore.Processing import EXPORT_FORMATS
from MedPrepCore.VolumeNodes import TRANSFORM_POLICIES
from slicer import vtkMRMLScalarVolumeNode
from slicer.parameterNodeWrapper import Choice, parameterNodeWrapper


@parameterNodeWrapper
class MedPrepParameterNode:
    """The panel's state, saved with the scene.

    inputVolume - the volume to process or export (scalar, label map or vector volume).
    recipePath - a MedPrep recipe JSON file run by Apply; unset (".") copies the volume as is.
    transformPolicy - a volume under a transform: "refuse" it, or "harden" a linear transform
        into the output grid (the input node is not changed).
    outputFolder - where Export writes the file.
    outputFormat - file ending of the exported file (``MedPrepCore.Processing.EXPORT_FORMATS``).
    overwrite - whether Export may replace an existing file.
    """

    inputVolume: vtkMRMLScalarVolumeNode
    recipePath: pathlib.Path
    transformPolicy: Annotated[str, Choice(list(TRANSFORM_POLICIES))] = "refuse"
    outputFolder: pathlib.Path
    outputFormat: Annotated[str, Choice(list(EXPORT_FORMATS))] = ".nii.gz"
    overwrite: bool = False
