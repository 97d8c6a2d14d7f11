"""The checks every format makes before writing its index: the index claims only what is there.

A dataset's index (``dataset.json``, ``manifest.csv``) is written last and is what makes the
dataset look complete, so before writing it a format module checks that every file it lists
exists, that no file of another case lies in the folders a consumer scans (nnU-Net counts the
files of ``imagesTr``), that the cases are unique and the folds are 0 .. K-1 with none empty.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from ..errors import ExportError
from .cases import CaseFiles


def _listing(items: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" and {len(items) - limit} more" if len(items) > limit else "")


def check_layout(folder: str | os.PathLike, cases: Sequence[CaseFiles], expected, *, what: str, helper: str) -> None:
    """Refuse a case whose files are not where the format puts them: ``expected(case)`` is the
    :class:`CaseFiles` the format's ``case_files`` gives for it; ``what`` names the format in
    the message ("nnU-Net"), ``helper`` the function to name files with ("nnunet.case_files")."""
    for case in cases:
        want = expected(case)
        if case != want:
            raise ExportError(
                f"case {case.case_id} is not laid out as {what} expects: {list(case.files)}",
                path=folder,
                hint=f"name its files as {helper} does: {list(want.files)}",
            )


def check_index(folder: str | os.PathLike, cases: Sequence[CaseFiles], *, scanned: Sequence[str] = ()) -> int:
    """Check what an index is about to claim; returns the number of folds (0 when no training
    case has a fold).

    ``scanned`` are subfolders a consumer lists by itself (``imagesTr``): every file in them must
    belong to one of ``cases``.
    """
    folder = Path(folder)
    repeated = sorted(c for c, n in Counter(c.case_id for c in cases).items() if n > 1)
    if repeated:
        raise ExportError(f"cases listed twice in the index: {_listing(repeated)}", path=folder)
    listed = [f for c in cases for f in c.files]
    if len(set(listed)) != len(listed):
        shared = sorted(f for f, n in Counter(listed).items() if n > 1)
        raise ExportError(f"several cases name the same file: {_listing(shared)}", path=folder)
    missing = [f for f in listed if not (folder / f).is_file()]
    if missing:
        raise ExportError(
            f"{len(missing)} file(s) the index would list are missing: {_listing(missing)}",
            path=folder,
            hint="write every case's files before the index",
        )
    known = set(listed)
    strays = sorted(
        f"{sub}/{entry.name}"
        for sub in scanned
        if (folder / sub).is_dir()
        for entry in os.scandir(folder / sub)
        if entry.is_file() and f"{sub}/{entry.name}" not in known
    )
    if strays:
        raise ExportError(
            f"{len(strays)} file(s) in the dataset belong to no exported case: {_listing(strays)}",
            path=folder,
            hint="remove them, or export again into a new folder (or with --overwrite)",
        )
    train = [c for c in cases if c.split == "train"]
    with_fold = [c for c in train if c.fold is not None]
    if not with_fold:
        return 0
    if len(with_fold) != len(train):
        lost = [c.case_id for c in train if c.fold is None]
        raise ExportError(f"training cases without a fold: {_listing(lost)}", hint="give every training case a fold")
    n_folds = max(c.fold for c in with_fold) + 1
    empty = sorted(set(range(n_folds)) - {c.fold for c in with_fold})
    if empty:
        raise ExportError(
            f"fold(s) {', '.join(map(str, empty))} of {n_folds} hold no case",
            hint="use fewer folds (--folds), or fix the quarantined cases",
        )
    return n_folds

