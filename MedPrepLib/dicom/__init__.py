"""DICOM: discovery of image stacks in folders or a Slicer DICOM database, and loading them.

See :mod:`MedPrepLib.dicom.stack` for the flow (header -> stack -> volume) and the objects
that travel along it. The loading entry points:

* :func:`load_path` — a DICOM folder, a DICOM file or an image file (what ``medprep convert`` uses);
* :func:`load_files` — a list of DICOM files (grouped; ``series`` picks one stack);
* :func:`load_stack` — one :class:`Stack` from a scan.
"""

from .group import group_stacks
from .header import SkipFile, header_from_dataset, read_header
from .load import GEOMETRY_POLICIES, load_files, load_path, load_stack
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
    "load_files",
    "load_path",
    "load_stack",
    "read_header",
    "stack_id",
]
