"""Writing files so that nothing is lost: a temporary folder beside the output, then a rename.

A crash, a signal or a cancellation never leaves a half-written file under the final name, and
an existing file is never replaced unless the caller says so. Every write goes through
:func:`staging_folder`: a hidden folder ``.medprep-tmp-<host>-<pid>-<random>`` in the output's
own folder (so the final rename stays on one file system), removed when the write ends, however
it ends. A process killed outright (SIGKILL, power loss) cannot remove it; the next MedPrep
process that writes into that folder removes every such folder of this host whose process is no
longer alive (:func:`remove_stale_staging`), and the ownerless ``.medprep-XXXXXXXX`` folders of
MedPrep 0.1 once they are a day old. Folders of other hosts (a shared network drive)
and of live processes are left alone.

Operating-system failures (read-only file system, no space left, permission denied, a folder
such as ``/proc`` that takes no files) become :class:`~MedPrepLib.errors.OutputError` saying
what could not be written and why: ``cannot write to /mnt/ro: read-only file system``.
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import InputError, OutputError, OutputExistsError

STAGING_PREFIX = ".medprep-tmp-"
_STAGING_NAME = re.compile(r"^\.medprep-tmp-(?P<host>.+)-(?P<pid>\d+)-[A-Za-z0-9_]+$")
_LEGACY_STAGING_NAME = re.compile(r"^\.medprep-[a-z0-9_]{8}$")
"""Staging folders of MedPrep 0.1 (``tempfile.mkdtemp(prefix=".medprep-")``): no owner in the name."""
LEGACY_STALE_AFTER_S = 24 * 3600
"""A legacy staging folder this old is debris: no single file write takes a day."""
_cleaned_folders: set[str] = set()

_HINTS = {
    errno.ENOSPC: "free some space or write somewhere else",
    errno.EDQUOT: "free some space or write somewhere else",
    errno.EROFS: "write to a folder on a writable file system",
    errno.EACCES: "write to a folder you may write in",
    errno.EPERM: "write to a folder you may write in",
}


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname()) or "localhost"


def output_error(exc: OSError, target: str | os.PathLike) -> OutputError:
    """An :class:`OutputError` for an OS failure while writing ``target`` (a file or folder)."""
    reason = (exc.strerror or str(exc)).lower()
    if exc.errno == errno.ENOENT and os.path.isdir(target):
        reason = "this folder takes no new files"  # /proc and other virtual file systems
    return OutputError(f"cannot write to {os.fspath(target)}: {reason}", hint=_HINTS.get(exc.errno or 0))


def default_file_mode() -> int:
    """The permission bits a plain ``open(path, "w")`` would give (0o666 less the umask).

    ``tempfile.mkstemp`` creates files readable by the owner only; outputs must not look
    different from any other file the user writes.
    """
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def _owner_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    except OSError:
        return True  # cannot tell: keep it
    return True


def remove_stale_staging(folder: str | os.PathLike) -> list[Path]:
    """Remove the staging folders in ``folder`` left by dead MedPrep processes of this host.

    Returns what was removed. Cheap enough to call before every write: each folder is looked
    at once per process.
    """
    folder = Path(folder)
    key = os.path.abspath(folder)
    if key in _cleaned_folders:
        return []
    _cleaned_folders.add(key)
    removed = []
    try:
        entries = [e for e in os.scandir(folder) if e.name.startswith(STAGING_PREFIX)]
    except OSError:
        return []
    try:
        legacy = [e for e in os.scandir(folder) if _LEGACY_STAGING_NAME.match(e.name) and e.is_dir(follow_symlinks=False)]
    except OSError:
        legacy = []
    now = time.time()
    for entry in legacy:
        try:
            if now - entry.stat(follow_symlinks=False).st_mtime > LEGACY_STALE_AFTER_S:
                shutil.rmtree(entry.path, ignore_errors=True)
                if not os.path.exists(entry.path):
                    removed.append(Path(entry.path))
        except OSError:
            continue
    return removed + _remove_staging(entries, lambda pid: not _owner_alive(pid))


def _remove_staging(entries, owner_gone) -> list[Path]:
    """Remove the staging folders among ``entries`` made on this host by a process for whose
    pid ``owner_gone(pid)`` is true; returns what was removed."""
    host = _host()
    removed = []
    for entry in entries:
        m = _STAGING_NAME.match(entry.name)
        if m is None or m["host"] != host or not owner_gone(int(m["pid"])):
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        if not os.path.exists(entry.path):
            removed.append(Path(entry.path))
    return removed


def remove_staging_of(folder: str | os.PathLike, pids) -> list[Path]:
    """Remove the staging folders in ``folder`` of the given processes of this host (workers
    that were just stopped: their own clean-up could not run)."""
    pids = {int(p) for p in pids}
    try:
        entries = [e for e in os.scandir(folder) if e.name.startswith(STAGING_PREFIX)]
    except OSError:
        return []
    return _remove_staging(entries, pids.__contains__)


def make_folder(folder: str | os.PathLike) -> Path:
    """``mkdir -p`` whose failures are :class:`OutputError` naming the folder and the reason."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise output_error(exc, folder) from None
    return folder


def check_writable(path: str | os.PathLike, *, overwrite: bool) -> None:
    """Refuse, before any work, an output that exists (without ``overwrite``), whose folder is
    missing, or whose folder cannot take a new file (read-only, full, no permission)."""
    path = Path(path)
    if path.exists() and not overwrite:
        raise OutputExistsError("output exists", path=path, hint="choose another name, or allow replacing it (--overwrite)")
    if path.is_dir():
        raise OutputExistsError("output is a folder", path=path, hint="name a file")
    if not path.parent.is_dir():
        raise InputError("output folder does not exist", path=path.parent)
    probe_folder(path.parent)


def probe_folder(folder: str | os.PathLike) -> None:
    """Create and remove a staging folder in ``folder``: raises :class:`OutputError` naming the
    real reason when nothing can be written there (and clears stale staging folders)."""
    with staging_folder(folder):
        pass


@contextmanager
def staging_folder(parent: str | os.PathLike) -> Iterator[Path]:
    """A new staging folder inside ``parent``, removed on exit whatever happens."""
    parent = Path(parent)
    remove_stale_staging(parent)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{_host()}-{os.getpid()}-", dir=parent))
    except OSError as exc:
        raise output_error(exc, parent) from None
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def publish(staged: list[Path], parent: str | os.PathLike) -> None:
    """Move staged files into ``parent`` under their own names, in the order given (data files
    first, the header last: the header's appearance means the write is complete)."""
    for produced in staged:
        os.chmod(produced, default_file_mode())
        try:
            os.replace(produced, Path(parent) / produced.name)
        except OSError as exc:
            raise output_error(exc, Path(parent) / produced.name) from None


CHUNK_BYTES = 4 << 20
"""Bytes written per call: small enough that Ctrl-C or SIGTERM is honoured within a fraction of a second."""


def write_chunks(f, data, target: str | os.PathLike, *, compressor=None, progress=None) -> int:
    """Write ``data`` (bytes-like) to the open binary file ``f`` in :data:`CHUNK_BYTES` pieces,
    through ``compressor`` (a ``zlib`` compress object) when given; returns the bytes written.

    OS errors become :class:`OutputError` naming ``target``. A signal handler that raises
    (KeyboardInterrupt, the CLI's termination handler) interrupts between two pieces, and so
    does ``progress`` (a :class:`~MedPrepLib.progress.Progress`) asking to cancel.
    """
    view = memoryview(data).cast("B")
    written = 0
    try:
        for start in range(0, len(view), CHUNK_BYTES):
            if progress is not None:
                progress.update(f"writing {os.path.basename(os.fspath(target))}", start / max(len(view), 1))
            piece = view[start : start + CHUNK_BYTES]
            if compressor is not None:
                piece = compressor.compress(piece)
            f.write(piece)
            written += len(piece)
        if compressor is not None:
            tail = compressor.flush()
            f.write(tail)
            written += len(tail)
        f.flush()
    except OSError as exc:
        raise output_error(exc, target) from None
    return written


def refuse_overwriting_inputs(outputs: list[Path], inputs: list[Path]) -> None:
    """An output that is one of the inputs would destroy the user's data, overwrite allowed or not."""
    for out in outputs:
        for source in inputs:
            if out.exists() and source.exists() and out.resolve() == source.resolve():
                raise OutputExistsError(
                    "an output is also an input of this command and would be destroyed",
                    path=out,
                    hint="write the outputs to new files",
                )


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, overwrite: bool = False) -> Path:
    """Write ``data`` to ``path`` through a staging folder beside it and a rename."""
    path = Path(path)
    check_writable(path, overwrite=overwrite)
    with staging_folder(path.parent) as tmp:
        staged = tmp / path.name
        try:
            with open(staged, "wb") as f:
                write_chunks(f, data, path)
        except OSError as exc:
            raise output_error(exc, path) from None
        publish([staged], path.parent)
    return path


def atomic_write_text(path: str | os.PathLike, text: str, *, overwrite: bool = False) -> Path:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"), overwrite=overwrite)
