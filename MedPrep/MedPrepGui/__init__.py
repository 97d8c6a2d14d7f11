"""The Qt side of the MedPrep Slicer module: the panel and its state.

* :mod:`MedPrepGui.Panel` — ``MedPrepPanel``: loads ``Resources/UI/MedPrep.ui``, binds it to the
  parameter node and holds one object per section, each in its own file:
  :mod:`~MedPrepGui.DicomBrowser` (the DICOM tree, series ticked for export),
  :mod:`~MedPrepGui.ScenePairs` (scene volumes and their labels), :mod:`~MedPrepGui.RecipeEditor`
  (the recipe form, built from ``MedPrepCore.RecipeFields`` through :mod:`~MedPrepGui.RecipeWidgets`,
  one widget per field kind), :mod:`~MedPrepGui.PreviewSection` and :mod:`~MedPrepGui.ExportSection`;
* :mod:`MedPrepGui.Progress` — the logic behind a progress dialog with Cancel, errors in dialogs;
* :mod:`MedPrepGui.ParameterNode` — ``MedPrepParameterNode``, the panel's state saved with the
  scene (its choices come from the Qt-free ``MedPrepCore`` and the library);
* :mod:`MedPrepGui.Resources` — where the module's .ui and icons are, built or not.

This package needs the Slicer application (widgets, dialogs, the parameter-node wrapper); the
MRML glue it calls lives in the Qt-free ``MedPrepCore`` next to it, which runs without Qt. It is a
package, not a ``.py`` next to ``MedPrep.py``, because Slicer loads every ``.py`` file in a module
folder as a scripted module.
"""
