"""A source's input files as the export sees them: picklable loaders, fingerprints, channel names.

What the cohort table and the image folder share (:mod:`.cohort`, :mod:`.image_folder`):

* :func:`input_loader` — a picklable loader (a :func:`functools.partial` of the module-level
  :func:`load_input`) that the runner calls in a worker process. It loads with
  :func:`MedPrepLib.sources.load_path` (a DICOM folder or file, or an image file) and keeps the
  path out of the error's message: the path moves to ``detail`` (shown with ``--verbose``
  only), and the message says which input of the case failed ("channel T1: ...").
* :func:`fingerprint` — SHA-256 of the files a case is made from (paths, sizes, modification
  times; every file below a folder) and of the facts that decide how it is exported, so a
  re-run can tell that the inputs changed.
* :func:`modality_of_channel` — the modality a channel name states (``CT``, ``MR``, ``PT``).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Iterable, Sequence

from ..errors import MedPrepError
from ..volume import Volume

MODALITY_CHANNELS = ("CT", "MR", "PT")
"""Channel names that state their modality (nnU-Net normalises a channel named ``CT`` as CT)."""


def load_input(path: str, what: str) -> Volume:
    """Load one input of a case (``what``: "channel T1", "the label") with
    :func:`~MedPrepLib.sources.load_path`; a failure is re-raised as the same error type with
    the path in ``detail`` only."""
    from ..sources import load_path

    try:
        return load_path(path)
    except MedPrepError as exc:
        detail = "; ".join(p for p in (exc.path, exc.detail) if p) or None
        message, hint = _scrub(exc.message, path), exc.hint and _scrub(exc.hint, path)
        try:
            clean = type(exc)(f"{what}: {message}", hint=hint, detail=detail)
        except TypeError:  # a subclass with another signature: keep the base type
            clean = MedPrepError(f"{what}: {message}", hint=hint, detail=detail)
        raise clean from None


def _scrub(text: str, path: str) -> str:
    """``text`` without ``path`` or its file name (readers such as ITK quote the path they read)."""
    names = {path, os.path.abspath(path), os.path.realpath(path)}
    for name in sorted(names, key=len, reverse=True):
        text = text.replace(f'"{name}"', "the file").replace(f"'{name}'", "the file").replace(name, "the file")
    base = os.path.basename(path.rstrip(os.sep))
    return text.replace(base, "the file") if base else text


def input_loader(path: str | os.PathLike, what: str) -> functools.partial:
    """A picklable function without arguments that loads ``path`` (see :func:`load_input`)."""
    return functools.partial(load_input, os.path.abspath(os.fspath(path)), what)


def _file_facts(path: str) -> Iterable[tuple[str, int, int]]:
    if os.path.isdir(path):
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for name in sorted(files):
                full = os.path.join(root, name)
                st = os.stat(full)
                yield os.path.relpath(full, path), st.st_size, st.st_mtime_ns
    elif os.path.exists(path):
        st = os.stat(path)
        yield "", st.st_size, st.st_mtime_ns


def fingerprint(paths: Sequence[str | os.PathLike], facts: object = None) -> str:
    """SHA-256 (hex) of ``paths`` (files, or folders walked recursively: relative names, sizes,
    modification times in ns) and of ``facts`` (any JSON-able value: channel names, split...)."""
    digest = hashlib.sha256()
    for path in paths:
        path = os.path.abspath(os.fspath(path))
        digest.update(json.dumps([path, list(_file_facts(path))]).encode("utf-8"))
    digest.update(json.dumps(facts, sort_keys=True, default=str).encode("utf-8"))
    return digest.hexdigest()


def modality_of_channel(name: str) -> str:
    """The modality a channel name states ("ct" -> "CT"), or "" for other names ("T1")."""
    upper = name.strip().upper()
    return upper if upper in MODALITY_CHANNELS else ""


def unnamed_channel_warning(name: str, why: str) -> str:
    """The warning of a source that had to name its one channel without knowing the modality."""
    return (
        f"the image channel is named '{name}' ({why}); nnU-Net z-scores it — "
        "name it 'CT' (channel name / --channel-name CT) to get nnU-Net's CT normalisation"
    )
