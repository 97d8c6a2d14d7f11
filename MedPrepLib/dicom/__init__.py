"""DICOM: discovery of image stacks in folders or a Slicer DICOM database, and loading them.

See :mod:`MedPrepLib.dicom.stack` for the flow (header -> stack -> volume) and the objects
that travel along it.
"""

from .group import group_stacks
from .header import SkipFile, header_from_dataset, read_header
from .stack import SKIP_REASONS, FileHeader, FrameGeometry, Skipped, Stack, stack_id

__all__ = [
    "SKIP_REASONS",
    "FileHeader",
    "FrameGeometry",
    "SkipFile",
    "Skipped",
    "Stack",
    "group_stacks",
    "header_from_dataset",
    "read_header",
    "stack_id",
]
