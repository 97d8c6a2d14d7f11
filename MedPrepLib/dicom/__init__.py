"""DICOM: discovery of image stacks in folders or a Slicer DICOM database, and loading them.

See :mod:`MedPrepLib.dicom.stack` for the flow (header -> stack -> volume) and the objects
that travel along it. :func:`load_stack` loads one :class:`Stack` from a scan; which path holds
which stacks, and which one a command uses, is :mod:`MedPrepLib.sources`.
"""

from .group import group_stacks
from .header import SkipFile, header_from_dataset, read_header
from .load import GEOMETRY_POLICIES, load_stack
from .stack import SKIP_REASONS, FileHeader, FrameGeometry, Skipped, Stack, stack_id

__all__ = [
    "GEOMETRY_POLICIES",
    "SKIP_REASONS",
    "FileHeader",
    "FrameGeometry",
    "SkipFile",
    "Skipped",
    "Stack",
    "group_stacks",
    "header_from_dataset",
    "load_stack",
    "read_header",
    "stack_id",
]
