"""Qt-free core of the MedPrep Slicer module.

Everything here imports only MRML classes (through ``slicer``), VTK, numpy and MedPrepLib —
never qt, ctk or ``slicer.ScriptedLoadableModule`` — and takes the scene or the nodes it works
on explicitly. It therefore runs inside the Slicer application, in ``Slicer --no-main-window``
batch scripts, and under the ``slicer-core`` wheel in plain pytest.

Modules:

* :mod:`MedPrepCore.ModuleLogic` — ``ModuleLogic``, what the module does (the body of
  ``MedPrepLogic``, which adds Slicer's parameter node to it);
* :mod:`MedPrepCore.VolumeNodes` — volume node <-> :class:`MedPrepLib.Volume` (the only place
  where a node's IJKToRAS is read or made);
* :mod:`MedPrepCore.Processing` — what the module's logic does with a volume node: run it
  through MedPrep steps into a new node, or export it to an image file;
* :mod:`MedPrepCore.DicomImport` — a DICOM folder or Slicer DICOM database into a volume node;
* :mod:`MedPrepCore.DicomTree` — the DICOM browser's patients -> studies -> series rows, each
  series with MedPrep's verdict (loadable, or skipped and why);
* :mod:`MedPrepCore.Segmentations` — a segmentation node -> label map on a volume's grid,
  through Slicer's own segmentation logic and the dataset's label table;
* :mod:`MedPrepCore.Preview` — a recipe run on a volume (and its label) into preview nodes;
* :mod:`MedPrepCore.DatasetExport` — MedPrepLib's dataset export over a DICOM database or
  scene nodes (``logic.exportDataset``), the same dataset as ``medprep export``;
* :mod:`MedPrepCore.SampleVolumes` — small synthetic volumes with an oblique, anisotropic grid
  for the self-test and the batch smoke test.

The panel, which needs the application, is ``MedPrepGui`` next to this package; the self-test
cases are ``MedPrepSelfTest``. It is a package (not a ``.py`` file next to ``MedPrep.py``)
because Slicer treats every ``.py`` file in a module folder as a candidate scripted module.
"""
