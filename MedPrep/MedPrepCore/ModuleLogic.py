"""``ModuleLogic``: what the MedPrep module does, without Qt — the body of ``MedPrepLogic``.

``MedPrepLogic`` (``MedPrep.py``) is this class plus Slicer's ``ScriptedLoadableModuleLogic``
(the parameter node); the panel, the Python console, batch scripts and the self-test call these
methods. Each takes nodes and values as arguments, raises a MedPrep error
(:class:`MedPrepLib.errors.MedPrepError`) on bad input and reports progress through
``progressCallback(label, fraction) -> True to cancel`` (None in batch use). The scene that
new nodes from DICOM go into is given once, to the constructor; results of a node go into that
node's scene.
"""

from __future__ import annotations

import os

from MedPrepLib.errors import MedPrepError
from MedPrepLib.progress import ProgressCallback

from . import DatasetExport, DicomImport, DicomTree, Preview, Processing, Segmentations, VolumeNodes


class ModuleLogic:
    """The MedPrep module's operations; ``scene`` is the MRML scene that :meth:`loadDicom` fills.

    ``scene`` may be given later (``MedPrepLogic`` sets ``slicer.mrmlScene``): Slicer's
    ``ScriptedLoadableModuleLogic.__init__`` calls ``super().__init__()`` without arguments,
    which reaches this constructor first.
    """

    def __init__(self, scene=None) -> None:
        self.scene = scene

    def volume(self, inputVolume, transformPolicy: str = "refuse"):
        """The node's voxels and LPS grid as a ``MedPrepLib.Volume`` (array (z, y, x)).

        See :func:`MedPrepCore.VolumeNodes.volumeFromNode`.
        """
        return VolumeNodes.volumeFromNode(inputVolume, transformPolicy=transformPolicy)

    def findDicomStacks(self, source: str | os.PathLike, progressCallback: ProgressCallback | None = None):
        """The image stacks (and skipped files, with reasons) of a DICOM folder or Slicer database:
        a :class:`MedPrepLib.dicom.scan.ScanResult` (``stacks``: id, modality, description...;
        ``skipped``: each left-out file with its reason).

        >>> # logic = slicer.util.getModuleLogic("MedPrep")
        >>> # found = logic.findDicomStacks(slicer.dicomDatabase.databaseDirectory)
        >>> # [(s.id, s.modality, s.series_description) for s in found.stacks]
        """
        return DicomImport.findStacks(source, progressCallback)

    dicomDatabaseTree = staticmethod(DicomTree.dicomDatabaseTree)
    """Patients -> studies -> series rows (modality, description, slices, MedPrep's verdict) of a
    Slicer DICOM database or DICOM folder: :func:`MedPrepCore.DicomTree.dicomDatabaseTree`."""

    def loadDicom(
        self,
        source: str | os.PathLike,
        stackId: str | None = None,
        geometryPolicy: str = "resample",
        progressCallback: ProgressCallback | None = None,
    ):
        """Load a DICOM image stack into a new volume node (returned) with MedPrep's geometry rules.

        ``source``: a folder of DICOM files, or a Slicer DICOM database folder (for the
        application's own database: ``slicer.dicomDatabase.databaseDirectory``). ``stackId``: an id
        from :meth:`findDicomStacks` (needed when the source holds several stacks). See
        :func:`MedPrepCore.DicomImport.loadStackNode`.

        >>> # logic = slicer.util.getModuleLogic("MedPrep")
        >>> # ct = logic.loadDicom("/data/dicom/patient7", stackId="s108fa31dd6")
        >>> # slicer.util.setSliceViewerLayers(background=ct, fit=True)
        """
        if self.scene is None:
            raise MedPrepError("this logic has no scene to load into", hint="create it as ModuleLogic(scene)")
        return DicomImport.loadStackNode(
            self.scene, source, stackId, geometryPolicy=geometryPolicy, progressCallback=progressCallback
        )

    process = staticmethod(Processing.processVolumeNode)
    """Run a volume node through a recipe into a new node, with the run's provenance: the function
    :func:`MedPrepCore.Processing.processVolumeNode` itself, so its signature is declared once."""

    exportVolume = staticmethod(Processing.exportVolumeNodeToFolder)
    """Write a volume node into a folder, named after the node; returns the path: the function
    :func:`MedPrepCore.Processing.exportVolumeNodeToFolder` itself."""

    preview = staticmethod(Preview.previewVolumeNode)
    """Run a volume (and its label map or segmentation) through a recipe into preview nodes that a
    new preview of the same volume replaces: :func:`MedPrepCore.Preview.previewVolumeNode`."""

    labelFromSegmentation = staticmethod(Segmentations.labelFromSegmentation)
    """A segmentation node as a label map node on a volume's grid, through Slicer's segmentation
    logic and the dataset's label table: :func:`MedPrepCore.Segmentations.labelFromSegmentation`."""

    exportDataset = staticmethod(DatasetExport.exportDataset)
    """A dataset (nnU-Net, MSD, NIfTI, NPZ) from a DICOM database or folder, or from scene nodes,
    byte for byte as ``medprep export`` makes it: :func:`MedPrepCore.DatasetExport.exportDataset`."""
