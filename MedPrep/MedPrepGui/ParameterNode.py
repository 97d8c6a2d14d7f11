"""``MedPrepParameterNode``: the panel's state, saved with the scene.

Each field is bound to the widget of ``Resources/UI/MedPrep.ui`` whose ``SlicerParameterName``
property names it, except the fields of :data:`CODE_BOUND_FIELDS`, which widgets built by code
read and write. The choices are the Qt-free core's or the library's own lists, so the panel
cannot offer what the logic refuses. (No ``from __future__ import annotations`` here: the
wrapper reads the annotations as objects.)
"""

import pathlib
from typing import Annotated, Union

from MedPrepCore.RecipeFields import EMPTY_RECIPE, toJson
from MedPrepCore.VolumeNodes import TRANSFORM_POLICIES
from slicer import vtkMRMLLabelMapVolumeNode, vtkMRMLNode, vtkMRMLScalarVolumeNode, vtkMRMLSegmentationNode
from slicer.parameterNodeWrapper import Choice, WithinRange, parameterNodeWrapper

from MedPrepLib.export.formats import FORMATS

INPUT_SOURCES = ("dicom", "scene")
DICOM_LABELS = ("auto", "seg", "rtstruct", "none")
"""Where a DICOM export's labels come from: ``medprep export --labels-from`` (none: no labels)."""
"""What Export reads: the ticked series of the DICOM tree, or the ticked volumes of the scene."""

CODE_BOUND_FIELDS = {
    "dicomSeriesUids": "DicomBrowser: the series ticked in the DICOM tree",
    "sceneVolumes": "ScenePairs: the volumes ticked in the scene table",
    "sceneLabels": "ScenePairs: each ticked volume's label (None: unlabelled)",
}
"""Fields no .ui widget is bound to: {field: the panel part that keeps it}."""


@parameterNodeWrapper
class MedPrepParameterNode:
    """The panel's state, saved with the scene.

    inputSource - what Export reads: "dicom" (the ticked series) or "scene" (the ticked volumes).
    dicomSourcePath - a DICOM folder; unset (".") means Slicer's DICOM database.
    dicomSeriesUids - SeriesInstanceUIDs of the series ticked in the DICOM tree.
    sceneVolumes, sceneLabels - the scene volumes ticked for export and, at the same index, each
        one's label: a label map or segmentation node, or None.
    recipeJson - the recipe the form makes (JSON text), run by Preview and Export.
    inputVolume, labelVolume - what Preview runs the recipe on (label: optional, a label map or
        a segmentation node).
    transformPolicy - a volume under a transform: "refuse" it, or "harden" a linear transform.
    exportFormat, outputFolder, datasetId (0: the lowest free one), datasetName ("": the
        default), folds, testFraction, seed, dicomLabelsFrom (a DICOM export's labels: the SEG /
        RTSTRUCT objects of its series, or "none"), labelMapPath, keyFile, qc, overwrite - the dataset
        export's options (``MedPrepLib.export.runner.export_dataset``).
    """

    inputSource: Annotated[str, Choice(list(INPUT_SOURCES))] = "dicom"
    dicomSourcePath: pathlib.Path
    dicomSeriesUids: list[str]
    sceneVolumes: list[vtkMRMLScalarVolumeNode]
    sceneLabels: list[vtkMRMLNode]
    recipeJson: str = toJson(EMPTY_RECIPE)
    inputVolume: vtkMRMLScalarVolumeNode
    # typing.Union, with None: the wrapper's Union serializer needs both (Slicer's guide to it)
    labelVolume: Union[vtkMRMLLabelMapVolumeNode, vtkMRMLSegmentationNode, None]  # noqa: UP007
    transformPolicy: Annotated[str, Choice(list(TRANSFORM_POLICIES))] = "refuse"
    exportFormat: Annotated[str, Choice(list(FORMATS))] = "nnunet"
    outputFolder: pathlib.Path
    datasetId: Annotated[int, WithinRange(0, 999)] = 0
    datasetName: str = ""
    folds: Annotated[int, WithinRange(2, 100)] = 5
    testFraction: Annotated[float, WithinRange(0.0, 0.95)] = 0.0
    seed: Annotated[int, WithinRange(0, 2**31 - 1)] = 0
    dicomLabelsFrom: Annotated[str, Choice(list(DICOM_LABELS))] = "auto"
    labelMapPath: pathlib.Path
    keyFile: pathlib.Path
    qc: bool = True
    overwrite: bool = False
