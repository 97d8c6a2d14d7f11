"""A persistent cache of per-file DICOM header facts, so re-scanning unchanged files reads no DICOM.

The index is one SQLite file. Each row is keyed by the file's absolute path and holds the file
size (bytes) and modification time (ns) it was read at, plus either a serialised
:class:`~MedPrepLib.dicom.stack.FileHeader` or a :class:`~MedPrepLib.dicom.stack.Skipped`.
A row is used only when size and mtime still match; otherwise the file is read again.

What is stored is exactly what ``FileHeader.to_dict()`` / ``Skipped.to_dict()`` hold: UIDs,
geometry and acquisition keys, never patient name, ID or birth date. The index does hold the
*full path* of every file scanned, and folder and file names often carry patient names: it
lives outside every output, ``MEDPREP_CACHE=off`` (or ``medprep scan --no-cache``) keeps it
from being written, and ``medprep cache clear`` (:func:`clear_index`) deletes it.

Where the file lives (``cache`` argument of :func:`open_index`):

* ``True`` — ``$MEDPREP_CACHE/dicom-index.sqlite``, or ``~/.cache/medprep/dicom-index.sqlite``;
  ``MEDPREP_CACHE=off`` switches this default off;
* a folder — ``<folder>/.medprep-index.sqlite`` (e.g. beside the data; the leading dot keeps
  the scanner from treating it as data);
* a path ending in ``.sqlite`` / ``.db`` — that file;
* ``False`` or ``None`` — no cache.

Several processes may share one index: it uses SQLite's write-ahead log and short
transactions, and a busy or read-only index degrades to "no cache" with a warning rather than
failing the scan. A file that is not a valid index is moved aside and rebuilt, with a warning.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path

from .stack import FileHeader, FrameGeometry, Skipped

log = logging.getLogger(__name__)

INDEX_FILENAME = "dicom-index.sqlite"
BESIDE_DATA_FILENAME = ".medprep-index.sqlite"


def _format_version() -> str:
    """Identity of what a row means: the FileHeader layout and the code that reads headers.

    Rows written by other code (an older or newer MedPrep, whose classification or fields may
    differ) are dropped rather than trusted.
    """
    digest = hashlib.sha1(",".join(f.name for f in dataclasses.fields(FileHeader)).encode())
    digest.update(",".join(f.name for f in dataclasses.fields(FrameGeometry)).encode())
    here = Path(__file__).parent
    for name in ("stack.py", "header.py", "frames.py", "mosaic.py", "fastheader.py"):
        try:
            digest.update((here / name).read_bytes())
        except OSError:
            digest.update(name.encode())
    return "2:" + digest.hexdigest()


_FORMAT = _format_version()

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    kind TEXT NOT NULL,          -- 'header' or 'skip'
    payload TEXT NOT NULL        -- JSON of FileHeader.to_dict() or Skipped.to_dict()
);
"""

FileKey = tuple[str, int, int]  # (absolute path, size in bytes, mtime in ns)


CACHE_OFF_VALUES = ("off", "0", "no", "false", "none")
"""Values of ``$MEDPREP_CACHE`` that switch the default index off."""


def cache_disabled() -> bool:
    """True when ``$MEDPREP_CACHE`` is ``off`` (or 0/no/false/none): no default index at all."""
    return os.environ.get("MEDPREP_CACHE", "").strip().lower() in CACHE_OFF_VALUES


def default_cache_dir() -> Path:
    """``$MEDPREP_CACHE`` if set (and not ``off``), else ``~/.cache/medprep``."""
    env = os.environ.get("MEDPREP_CACHE")
    return Path(env).expanduser() if env and not cache_disabled() else Path.home() / ".cache" / "medprep"


def index_path(cache: str | os.PathLike | bool | None) -> Path | None:
    """Resolve the ``cache`` argument of :func:`open_index` to a file path (None: no cache).

    ``True`` means the default index, which ``MEDPREP_CACHE=off`` disables.
    """
    if cache is None or cache is False:
        return None
    if cache is True:
        return None if cache_disabled() else default_cache_dir() / INDEX_FILENAME
    p = Path(cache).expanduser()
    if p.suffix.lower() in (".sqlite", ".db", ".sqlite3"):
        return p
    return p / BESIDE_DATA_FILENAME


class HeaderIndex:
    """The SQLite index of header facts (see the module docstring). Use as a context manager."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._conn: sqlite3.Connection | None = None
        self._open()

    # -- opening, with rebuild of a damaged file ---------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(self.path), timeout=30.0, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(_SCHEMA)
        row = conn.execute("SELECT value FROM meta WHERE key='format'").fetchone()
        if row is None or row[0] != _FORMAT:
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("DELETE FROM files")
            conn.execute("INSERT OR REPLACE INTO meta VALUES ('format', ?)", (_FORMAT,))
            conn.execute("COMMIT")
        conn.execute("SELECT count(*) FROM files LIMIT 1").fetchone()
        return conn

    def _open(self) -> None:
        try:
            self._conn = self._connect()
        except sqlite3.DatabaseError as exc:
            if "locked" in str(exc) or "busy" in str(exc):
                raise
            log.warning("DICOM index %s is damaged (%s); rebuilding it", self.path, exc)
            self._discard_damaged()
            self._conn = self._connect()

    def _discard_damaged(self) -> None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        for suffix in ("", "-wal", "-shm"):
            p = Path(str(self.path) + suffix)
            if p.exists():
                try:
                    os.replace(p, Path(f"{self.path}.corrupt-{stamp}{suffix}"))
                except OSError:
                    p.unlink(missing_ok=True)

    # -- queries -------------------------------------------------------------------------------
    def lookup(self, keys: Iterable[FileKey]) -> dict[str, FileHeader | Skipped]:
        """Cached results for files whose size and mtime still match; others are absent."""
        wanted = {path: (size, mtime) for path, size, mtime in keys}
        found: dict[str, FileHeader | Skipped] = {}
        paths = list(wanted)
        assert self._conn is not None
        for start in range(0, len(paths), 500):
            chunk = paths[start : start + 500]
            marks = ",".join("?" * len(chunk))
            rows = self._conn.execute(
                f"SELECT path, size, mtime_ns, kind, payload FROM files WHERE path IN ({marks})", chunk
            ).fetchall()
            for path, size, mtime, kind, payload in rows:
                if wanted[path] != (size, mtime):
                    continue
                try:
                    data = json.loads(payload)
                    found[path] = FileHeader.from_dict(data) if kind == "header" else Skipped(**data)
                except (ValueError, TypeError) as exc:  # a row we cannot decode is a miss
                    log.debug("ignoring undecodable index row for %s: %s", path, exc)
        return found

    def store(self, results: Iterable[tuple[FileKey, FileHeader | Skipped]]) -> None:
        """Record read results (one short write transaction); a busy index only logs a warning."""
        rows = []
        for (path, size, mtime), result in results:
            kind = "header" if isinstance(result, FileHeader) else "skip"
            rows.append((path, size, mtime, kind, json.dumps(result.to_dict(), separators=(",", ":"))))
        if not rows:
            return
        assert self._conn is not None
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?)", rows)
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            log.warning("could not update DICOM index %s (%s); results are not cached", self.path, exc)

    def __len__(self) -> int:
        assert self._conn is not None
        return int(self._conn.execute("SELECT count(*) FROM files").fetchone()[0])

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> HeaderIndex:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def index_files(path: str | os.PathLike) -> list[Path]:
    """The files that make up the index at ``path``: the database, its write-ahead log and
    shared-memory files, and damaged copies moved aside (``.corrupt-<time>``)."""
    path = Path(path)
    if not path.parent.is_dir():
        return []
    return sorted(
        p for p in path.parent.iterdir() if p.name == path.name or p.name.startswith(path.name + "-")
        or p.name.startswith(path.name + ".corrupt-")
    )


def clear_index(cache: str | os.PathLike | bool = True) -> list[Path]:
    """Delete the index chosen by ``cache`` (default: the one under ``~/.cache/medprep``) with
    its companion files; returns what was removed. The index holds the full paths of every
    scanned file, outside any output: this is how to remove them."""
    # MEDPREP_CACHE=off stops new writes; it must not hide an index written before from clearing
    path = default_cache_dir() / INDEX_FILENAME if cache is True else index_path(cache)
    if path is None:
        return []
    removed = []
    for p in index_files(path):
        p.unlink(missing_ok=True)
        removed.append(p)
    return removed


def open_index(cache: str | os.PathLike | bool | None) -> HeaderIndex | None:
    """Open the index chosen by ``cache`` (see the module docstring); None when disabled.

    An index that cannot be opened (read-only location, locked for too long) is reported as a
    warning and the scan goes on without a cache.
    """
    path = index_path(cache)
    if path is None:
        return None
    try:
        return HeaderIndex(path)
    except (OSError, sqlite3.Error) as exc:
        log.warning("DICOM index %s cannot be used (%s); scanning without a cache", path, exc)
        return None
