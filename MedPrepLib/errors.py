"""The MedPrep exception hierarchy.

Every error MedPrep raises on purpose derives from :class:`MedPrepError`. A message says
*what* is wrong, *where* (the file, series or recipe step) and *what to do*, so the command
line can print it as one line and a Slicer dialog can show it as is.
"""

from __future__ import annotations

import os


class MedPrepError(Exception):
    """Base of all MedPrep errors.

    Parameters
    ----------
    message:
        What is wrong, as one sentence.
    path:
        The file, folder or series the error is about (optional).
    hint:
        What the user can do about it (optional).
    detail:
        Names of the files inside a stack that the error is about (optional). File and folder
        names often carry patient names, so the detail is shown only on request
        (``medprep --verbose``, :meth:`one_line` with ``verbose=True``) and never written to
        any output; the message itself says "slice 17 of 54 (instance 18)".
    """

    def __init__(
        self,
        message: str,
        *,
        path: str | os.PathLike | None = None,
        hint: str | None = None,
        detail: str | None = None,
    ):
        self.message = message
        self.path = os.fspath(path) if path is not None else None
        self.hint = hint
        self.detail = detail
        super().__init__(self.__str__())

    def __str__(self) -> str:
        text = self.message
        if self.path is not None:
            text = f"{self.path}: {text}"
        if self.hint:
            text = f"{text} ({self.hint})"
        return text

    def one_line(self, *, verbose: bool = False) -> str:
        """The message folded onto a single line (for the CLI); ``verbose`` adds the detail."""
        text = str(self)
        if verbose and self.detail:
            text = f"{text} [{self.detail}]"
        return " ".join(text.split())


class ArgumentError(MedPrepError, ValueError):
    """A MedPrep function was given an invalid argument (an unknown policy or interpolation, a
    spacing that is not three positive numbers...). Also a ``ValueError``, as Python expects."""


class InputError(MedPrepError):
    """An input file or folder cannot be used (missing, unreadable, unknown format)."""


class InvalidImageError(InputError):
    """An image was read but its content is unusable (NaN/Inf voxels, empty, bad geometry)."""


class OutputExistsError(MedPrepError):
    """An output would overwrite an existing file or dataset without the overwrite flag."""


class OutputError(MedPrepError):
    """An output cannot be written (read-only file system, no space left, permission denied)."""


class DicomError(InputError):
    """A DICOM file or series cannot be loaded as asked."""


class UnsupportedDicomError(DicomError):
    """A DICOM object is valid but is not something MedPrep turns into a volume."""


class MissingDecoderError(DicomError):
    """Pixel data uses a transfer syntax for which no decoder is installed."""


class GeometryError(DicomError):
    """A stack's geometry is irregular (tilt, gaps, missing position) and the policy refuses it."""


class SeriesSelectionError(MedPrepError):
    """The input holds several stacks (or none) and the caller did not say which one to use."""


class RecipeError(MedPrepError):
    """A recipe is invalid, or a step cannot be applied to the given data."""


class ExportError(MedPrepError):
    """A dataset export failed."""


class LabelError(ExportError):
    """A case's label cannot be used as it is (another grid than its image's, non-integer values,
    values outside the dataset's label table); the export quarantines that case and goes on."""


class MissingDependencyError(MedPrepError):
    """An optional package a feature needs is not installed."""


class CancelledError(MedPrepError):
    """The user cancelled a long operation through the progress callback."""


def require_installed(module: str, *, feature: str, package: str | None = None) -> None:
    """Raise :class:`MissingDependencyError` naming ``module``'s package unless it is installed,
    without importing it (for checking up front what a long job needs at its end).

    >>> require_installed("math", feature="doctest")
    """
    import importlib.util

    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise MissingDependencyError(
            f"{feature} needs the Python package '{package or module}', which is not installed",
            hint=f"pip install {package or module}",
        )


def require(module: str, *, feature: str, package: str | None = None):
    """Import an optional dependency or raise :class:`MissingDependencyError` naming it.

    >>> require("math", feature="doctest").sqrt(4.0)
    2.0
    """
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{feature} needs the Python package '{package or module}', which is not installed",
            hint=f"pip install {package or module}",
        ) from exc
