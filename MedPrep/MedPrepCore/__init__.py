"""Qt-free core of the MedPrep Slicer module.

Everything here imports only MRML classes (through ``slicer``), VTK, numpy and MedPrepLib —
never qt, ctk or ``slicer.ScriptedLoadableModule`` — and takes the scene or the nodes it works
on explicitly. It therefore runs inside the Slicer application, in ``Slicer --no-main-window``
batch scripts, and under the ``slicer-core`` wheel in plain pytest.

Modules:

* :mod:`MedPrepCore.VolumeNodes` — volume node <-> :class:`MedPrepLib.Volume` (the only place
  where Slicer's RAS meets MedPrep's LPS);
* :mod:`MedPrepCore.Processing` — what the module's logic does with a volume node: run it
  through MedPrep steps into a new node, or export it to an image file;
* :mod:`MedPrepCore.SampleVolumes` — small synthetic volumes with an oblique, anisotropic grid
  for the self-test and the batch smoke test.

It is a package (not a ``.py`` file next to ``MedPrep.py``) because Slicer treats every ``.py``
file in a module folder as a candidate scripted module.
"""
