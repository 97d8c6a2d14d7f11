"""Where the module's resources (.ui, icons) are: next to the module when built, in the checkout when not."""

from __future__ import annotations

import logging
import os

MODULE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
"""The folder of ``MedPrep.py`` (this package sits in it)."""


def resourcePath(relativePath: str) -> str:
    """Absolute path of a module resource such as ``"UI/MedPrep.ui"``.

    Built or installed, resources are copied into ``Resources/`` next to ``MedPrep.py``; in an
    unbuilt checkout they live in the checkout's top-level ``Resources/``.
    """
    for resources in (os.path.join(MODULE_DIR, "Resources"), os.path.join(os.path.dirname(MODULE_DIR), "Resources")):
        candidate = os.path.join(resources, relativePath)
        if os.path.exists(candidate):
            return candidate
    raise FileNotFoundError(f"MedPrep resource '{relativePath}' not found next to {MODULE_DIR}")


def setModuleIcon(parent) -> None:
    """Give the module (``parent`` of ``ScriptedLoadableModule``) its icon: a built module finds
    it by itself, an unbuilt checkout needs telling. Without Qt or the icon nothing is set."""
    try:
        import qt

        parent.icon = qt.QIcon(resourcePath("Icons/MedPrep.png"))
    except (ImportError, FileNotFoundError):
        logging.debug("MedPrep: module icon not found")
