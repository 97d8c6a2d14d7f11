"""The Qt side of the MedPrep Slicer module: the panel and its state.

* :mod:`MedPrepGui.Panel` — ``MedPrepPanel``, everything the module's panel does: it loads
  ``Resources/UI/MedPrep.ui``, connects it to the parameter node and turns button clicks into
  calls of the logic, behind a progress dialog, with errors shown in dialogs;
* :mod:`MedPrepGui.ParameterNode` — ``MedPrepParameterNode``, the panel's state saved with the
  scene (its choices come from the Qt-free ``MedPrepCore``);
* :mod:`MedPrepGui.Resources` — where the module's .ui and icons are, built or not.

This package needs the Slicer application (widgets, dialogs, the parameter-node wrapper); the
MRML glue it calls lives in the Qt-free ``MedPrepCore`` next to it, which runs without Qt. It is a
package, not a ``.py`` next to ``MedPrep.py``, because Slicer loads every ``.py`` file in a module
folder as a scripted module.
"""
