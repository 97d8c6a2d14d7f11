"""Sources: what a path names, the image stacks in it, and the one volume a command works on.

The one place that decides what an input is — an image file (NIfTI, NRRD, MetaImage...), a DICOM
file, a DICOMDIR, a DICOM folder, or a Slicer DICOM database folder (``ctkDICOM.sql``, read
without Slicer) — and which of its stacks to use. The command line, the Slicer module's core and
the dataset export all resolve their inputs here:

* :func:`find_stacks` — the stacks (and skipped files with reasons) of any DICOM input;
* :func:`choose_stack` — the stack a stack id or SeriesInstanceUID names, or the only one;
* :func:`load_path` — any path to a :class:`~MedPrepLib.volume.Volume` (LPS, (z, y, x));
* :func:`load_files` — a list of DICOM files, grouped, one stack chosen and loaded.

Messages name stack ids, never command-line flags: the CLI adds how to pass an id (``--series``).
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence

from .dicom.header import SkipFile, read_header
from .dicom.load import check_geometry_policy, load_stack
from .dicom.scan import ScanResult, scan, scan_files
from .dicom.slicerdb import is_slicer_database, scan_database
from .dicom.stack import Skipped, Stack
from .errors import InputError, SeriesSelectionError, UnsupportedDicomError
from .imageio import is_image_file, read_image
from .progress import ProgressCallback, as_progress
from .volume import Volume


def find_stacks(
    path: str | os.PathLike,
    *,
    cache: str | os.PathLike | bool | None = False,
    workers: int | None = None,
    progress: ProgressCallback | None = None,
) -> ScanResult:
    """The image stacks of a DICOM folder (searched recursively), a Slicer DICOM database folder
    or its ``ctkDICOM.sql``, or one DICOM file — header-only. ``cache`` as for
    :func:`~MedPrepLib.dicom.scan.scan` (default: no header index)."""
    if is_slicer_database(path):
        return scan_database(path, cache=cache, workers=workers, progress=progress)
    return scan(path, cache=cache, workers=workers, progress=progress)


def choose_stack(stacks: list[Stack], skipped: list[Skipped], series: str | None, where: str) -> Stack:
    """The one stack ``series`` names (a stack id or a SeriesInstanceUID), or the only stack.

    Raises :class:`SeriesSelectionError` naming ``where`` when there is none, when the name
    matches nothing or several stacks, or when several stacks exist and none was named (the
    message lists the ids with modality, series number and description).
    """
    if not stacks:
        reasons = defaultdict(int)
        for s in skipped:
            reasons[s.reason] += 1
        detail = ", ".join(f"{n} {r}" for r, n in sorted(reasons.items())) or "no files"
        pile = next((s for s in skipped if s.reason == "not_a_volume"), None)
        if pile is not None:  # say why the images are there but no volume: the reason is the news
            raise UnsupportedDicomError(
                pile.detail,
                path=where,
                hint="a 4D series needs a tag that separates its volumes: temporal position, trigger time, "
                "acquisition number or time, diffusion b-value or direction, echo or stack id",
            )
        raise SeriesSelectionError(f"no loadable image stack found (skipped: {detail})", path=where)
    if series is not None:
        matches = [s for s in stacks if s.id == series] or [s for s in stacks if s.series_instance_uid == series]
        if len(matches) == 1:
            return matches[0]
        if not matches:
            raise SeriesSelectionError(
                f"no stack with id {series!r}; available: {', '.join(s.id for s in stacks)}", path=where
            )
        raise SeriesSelectionError(
            f"series {series!r} holds {len(matches)} stacks; choose one id: {', '.join(s.id for s in matches)}",
            path=where,
        )
    if len(stacks) > 1:
        listing = "; ".join(f"{s.id} ({_stack_label(s)})" for s in stacks)
        raise SeriesSelectionError(f"{len(stacks)} image stacks found, choose one stack id: {listing}", path=where)
    return stacks[0]


def _stack_label(s: Stack) -> str:
    parts = [s.modality or "?"]
    if s.series_number is not None:
        parts.append(f"series {s.series_number}")
    if s.series_description:
        parts.append(repr(s.series_description))
    if s.split_key:
        parts.append(", ".join(f"{k} {v}" for k, v in sorted(s.split_key.items())))
    parts.append(f"{len(s.headers)} files" + (f", {s.n_timepoints} time points" if s.n_timepoints > 1 else ""))
    return ", ".join(parts)


def load_files(
    paths: Sequence[str | os.PathLike],
    *,
    series: str | None = None,
    geometry_policy: str = "resample",
    progress: ProgressCallback | None = None,
    regularize: bool = True,
    where: str | None = None,
) -> Volume:
    """Read, group and load DICOM files; ``series`` (a stack id or SeriesInstanceUID) selects
    one stack when they hold several (else :class:`SeriesSelectionError` lists the ids).

    ``where`` is what errors name as their path: the input the user gave (default: the files'
    common path, which for one file is that file)."""
    check_geometry_policy(geometry_policy)
    prog = as_progress(progress)
    paths = [os.path.abspath(os.fspath(p)) for p in paths]
    result = scan_files(paths, cache=False, progress=prog.sub(0.0, 0.3))
    where = where or (os.path.commonpath(paths) if paths else ".")
    stack = choose_stack(result.stacks, result.skipped, series, where)
    return load_stack(
        stack, geometry_policy=geometry_policy, progress=prog.sub(0.3, 1.0), regularize=regularize, where=where
    )


def _all_files(folder: str) -> list[str]:
    out = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        out.extend(os.path.join(root, f) for f in sorted(files) if not f.startswith("."))
    return out


def load_path(
    input: str | os.PathLike,
    series: str | None = None,
    *,
    geometry_policy: str = "resample",
    progress: ProgressCallback | None = None,
) -> Volume:
    """A volume from a DICOM folder, a single DICOM file, or an image file (NIfTI, NRRD, MHA...).

    A DICOMDIR file stands for its folder. ``series`` (stack id or SeriesInstanceUID) picks
    one stack when the input holds several.
    """
    check_geometry_policy(geometry_policy)
    given = os.fspath(input)  # messages show the input as typed: its parent folders may carry a name
    path = os.path.abspath(given)
    if is_slicer_database(path):
        found = find_stacks(path, progress=as_progress(progress).sub(0.0, 0.3))
        stack = choose_stack(found.stacks, found.skipped, series, given)
        return load_stack(stack, geometry_policy=geometry_policy, progress=as_progress(progress).sub(0.3, 1.0), where=given)
    if os.path.isdir(path):
        files = _all_files(path)
        if not files:
            raise InputError("the folder holds no files", path=given)
        return load_files(files, series=series, geometry_policy=geometry_policy, progress=progress, where=given)
    if not os.path.isfile(path):
        raise InputError("no such file or folder", path=given)
    if is_image_file(path):
        if series is not None:
            raise InputError("a stack id or SeriesInstanceUID applies to DICOM input only", path=given)
        return read_image(given)
    try:
        read_header(path)
    except SkipFile as exc:
        if exc.reason == "not_dicom":
            raise InputError(
                f"neither a DICOM image nor an image file MedPrep reads ({exc.skipped.detail})",
                path=given,
                hint="image files: .nii, .nii.gz, .nrrd, .mha, .mhd, .hdr, .mnc",
            ) from None
        if exc.reason == "dicomdir":  # a DICOMDIR stands for the folder it indexes
            return load_path(os.path.dirname(given) or ".", series, geometry_policy=geometry_policy, progress=progress)
        raise UnsupportedDicomError(
            f"not loadable as an image: {exc.skipped.detail} ({exc.reason})", path=given
        ) from None
    return load_files([path], series=series, geometry_policy=geometry_policy, progress=progress, where=given)
