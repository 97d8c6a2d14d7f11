"""Discovery: find every image stack in folders of DICOM files, header-only, with reasons for the rest.

:func:`scan` walks the given folders (recursively) or files, reads each file's header (never
the pixels) through the fast parser (:mod:`.fastheader`, falling back to pydicom), keeps the
results in the on-disk index (:mod:`.index`) so that unchanged files are never parsed twice,
and groups the headers into stacks (:func:`.group.group_stacks`). Every file found ends up
either in exactly one stack or in ``skipped`` with a reason code from ``SKIP_REASONS``;
hidden and operating-system files (``.DS_Store``, ``Thumbs.db``, AppleDouble ``._*``, hidden
folders) are not read and are listed as ``not_dicom`` with a detail saying so.

Header reading runs in worker processes for large folders (pydicom holds the GIL, so
threads do not help); small folders are read in-process, where the fast parser is quicker
than starting workers. The workers are forked only from a process without other threads (a
fork copies every lock some other thread may be holding, and the child can hang on it); a
process with threads (an export whose worker pool is starting, Slicer, VTK) starts them from
a fresh ``forkserver`` process, which costs more, so it does so only for very large folders.
A caller that already runs worker processes (an export) lends them with :func:`header_helpers`:
the headers are then read by this process and those workers together. Progress is reported
through ``progress(label, fraction)``, which may return True to cancel
(:class:`~MedPrepLib.errors.CancelledError`).
"""

from __future__ import annotations

import contextlib
import logging
import math
import multiprocessing
import os
import statistics
import sys
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextvars import ContextVar
from dataclasses import dataclass, field

import numpy as np

from ..errors import CancelledError, InputError, SeriesSelectionError
from ..progress import Progress, ProgressCallback, as_progress
from .fastheader import read_header_fast
from .group import POSITION_TOL_MM, group_stacks, slice_normal, stack_refs
from .header import SkipFile
from .index import FileKey, open_index
from .regularize import spacing_model
from .stack import FileHeader, Skipped, Stack

log = logging.getLogger(__name__)

# Names never read as data: OS metadata and our own index file.
_JUNK_FILES = {"thumbs.db", "desktop.ini", "ehthumbs.db", "icon\r"}
_JUNK_DIRS = {"__macosx", "$recycle.bin", "system volume information"}

# Below this many files to read, reading in-process beats starting worker processes
# (about 75 us per file in-process): forked ones, and fresh ones when this process has threads.
PARALLEL_MIN_FILES = 2000
PARALLEL_MIN_FILES_FRESH = 20000
HELPERS_MIN_FILES = 1000  # with lent workers (no start-up cost): from a few chunks on
_CHUNK = 200

SPACING_TOL_MM = 0.02
SPACING_TOL_REL = 0.01
"""Slice steps differing by more than max(0.02 mm, 1 % of the median step) are reported as uneven."""
TILT_TOL_DEG = 0.01
"""Angles (degrees) between the slice normal and the slice progression above this are a tilt."""


@dataclass
class ScanResult:
    """Stacks found and files left out. Paths are absolute."""

    stacks: list[Stack] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    n_files: int = 0  # files found (all of them: in stacks + skipped)
    n_cached: int = 0  # files whose header came from the index

    def stack(self, stack_id: str) -> Stack:
        """The stack with this id; SeriesSelectionError listing the ids otherwise."""
        for s in self.stacks:
            if s.id == stack_id:
                return s
        ids = ", ".join(s.id for s in self.stacks) or "none"
        raise SeriesSelectionError(f"no stack with id {stack_id!r}", hint=f"stacks found: {ids}")

    def to_json_dict(self) -> dict:
        """The ``medprep scan --json`` contract: ``{"series": [...], "skipped": [...]}``.

        Each series: id, series_instance_uid, modality, n_files, shape (x, y, z[, t]) in voxels,
        spacing (x, y, z) in mm - three values also for 4D stacks; z is the median step between
        the sorted slice positions along the slice normal, for a single slice
        SpacingBetweenSlices or SliceThickness, None when unknown - and warnings; plus
        description, series_number, kind, n_timepoints and split (what told it apart from
        siblings of the same series).
        """
        return {
            "series": [stack_summary(s) for s in self.stacks],
            "skipped": [s.to_dict() for s in sorted(self.skipped, key=lambda s: s.path)],
        }


# -- summary of a stack (header-only geometry) ---------------------------------------------


def _tiles_per_unit(stack: Stack) -> tuple[int, int, int]:
    """(slices per unit, tile rows, tile columns): a mosaic unit holds many tiles."""
    h = stack.headers[0]
    if stack.kind != "mosaic":
        return 1, h.rows, h.columns
    from .mosaic import tile_grid

    n = int(h.extra.get("mosaic_tiles") or len(h.frames) or 1)
    grid = tile_grid(n)
    return n, h.rows // grid, h.columns // grid


def _slice_positions(stack: Stack) -> tuple[np.ndarray | None, list[np.ndarray]]:
    """Slice normal and the positions (LPS mm) of the slices of one time point."""
    if stack.kind == "mosaic":
        frames = list(stack.headers[0].frames)
    else:
        frames = [r.frame for r in stack_refs(stack) if r.frame is not None]
    normal = None
    positions = []
    for f in frames:
        if f.orientation is not None and normal is None:
            normal = slice_normal(f.orientation)
        if f.position is not None:
            positions.append(np.asarray(f.position, dtype=np.float64))
    return normal, positions


def _geometry(stack: Stack) -> tuple[list, list, list[str]]:
    """shape (x, y, z[, t]), spacing (x, y, z) in mm and geometry warnings, from headers only."""
    per_unit, rows, cols = _tiles_per_unit(stack)
    n_units = len(stack_refs(stack))
    n_t = max(stack.n_timepoints, 1)
    z = (n_units * per_unit) // n_t
    first = next((f for h in stack.headers for f in h.frames if f.pixel_spacing is not None), None)
    sx = sy = None
    if first is not None:
        sy, sx = (float(v) for v in first.pixel_spacing)
    warnings: list[str] = []
    normal, positions = _slice_positions(stack)
    sz = None
    if normal is not None and len(positions) >= 2:
        along: list[float] = []
        for v in sorted(float(p @ normal) for p in positions):
            if not along or v - along[-1] > POSITION_TOL_MM:
                along.append(v)
        if len(positions) == (per_unit if stack.kind == "mosaic" else n_units):
            # Distinct positions: what loads when repeats are exact duplicates (dropped).
            z = len(along)
        steps = np.diff(along)
        if len(steps):
            sz = float(statistics.median(steps))
            if float(steps.max() - steps.min()) > max(SPACING_TOL_MM, SPACING_TOL_REL * sz):
                # the loader's own reading of the steps: regimes, gaps and junctions, in slice terms
                model = spacing_model(np.asarray(along) - along[0])
                warnings.append(f"uneven slice spacing: {model.describe()}")
        ordered = sorted(positions, key=lambda p: float(p @ normal))
        travel = ordered[-1] - ordered[0]
        length = float(np.linalg.norm(travel))
        if length > 0:
            cos = min(1.0, abs(float(travel @ normal)) / length)
            angle = math.degrees(math.acos(cos))
            if angle > TILT_TOL_DEG:
                warnings.append(
                    f"slices are sheared (gantry tilt): they advance at {angle:.2f} deg to the slice normal"
                )
    if sz is None and len(positions) <= 1:
        h = stack.headers[0]
        sz = h.extra.get("spacing_between_slices") or h.slice_thickness
    spacing = [_round(sx), _round(sy), _round(sz)]
    shape = [cols, rows, z] + ([n_t] if n_t > 1 else [])
    return shape, spacing, warnings


def _round(v) -> float | None:
    return None if v is None else round(float(v), 6)


def stack_summary(stack: Stack) -> dict:
    """One entry of the ``series`` list of :meth:`ScanResult.to_json_dict` (no patient data)."""
    shape, spacing, geometry_warnings = _geometry(stack)
    warnings = list(stack.warnings) + [w for w in geometry_warnings if w not in stack.warnings]
    return {
        "id": stack.id,
        "series_instance_uid": stack.series_instance_uid,
        "modality": stack.modality,
        "n_files": len(stack.headers),
        "shape": shape,
        "spacing": spacing,
        "warnings": warnings,
        "description": stack.series_description,
        "series_number": stack.series_number,
        "kind": stack.kind,
        "n_timepoints": stack.n_timepoints,
        "split": {k: str(v) for k, v in stack.split_key.items()},
    }


# -- finding files ---------------------------------------------------------------------------


def _is_junk(name: str) -> bool:
    return name.startswith(".") or name.lower() in _JUNK_FILES


def find_files(paths: str | os.PathLike | Iterable[str | os.PathLike]) -> tuple[list[FileKey], list[Skipped]]:
    """All files under ``paths`` (files or folders, recursively) as (abs path, size, mtime_ns),
    plus the hidden / system files and folders that are not read. Sorted, deterministic."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    found: dict[str, FileKey] = {}
    junk: list[Skipped] = []
    for p in paths:
        root = os.path.abspath(os.fspath(p))
        if os.path.isfile(root):
            st = os.stat(root)
            found[root] = (root, st.st_size, st.st_mtime_ns)
            continue
        if not os.path.isdir(root):
            raise InputError("no such file or folder", path=root, hint="give a DICOM folder, file or Slicer database")
        stack = [root]
        visited = {os.path.realpath(root)}
        while stack:
            folder = stack.pop()
            try:
                entries = sorted(os.scandir(folder), key=lambda e: e.name)
            except OSError as exc:
                junk.append(Skipped(folder, "unreadable", f"folder cannot be listed: {exc.strerror}"))
                continue
            for e in entries:
                try:
                    if e.is_dir():  # follows symbolic links; loops are cut by `visited`
                        if _is_junk(e.name) or e.name.lower() in _JUNK_DIRS:
                            junk.append(Skipped(e.path + os.sep, "not_dicom", "hidden or system folder, not searched"))
                        elif os.path.realpath(e.path) not in visited:
                            visited.add(os.path.realpath(e.path))
                            stack.append(e.path)
                        continue
                    if _is_junk(e.name):
                        junk.append(Skipped(e.path, "not_dicom", "hidden or operating-system file, not read"))
                        continue
                    if not e.is_file():
                        if e.is_symlink():
                            junk.append(Skipped(e.path, "unreadable", "broken symbolic link"))
                        continue  # sockets, fifos
                    st = e.stat()
                    found[e.path] = (e.path, st.st_size, st.st_mtime_ns)
                except OSError as exc:
                    junk.append(Skipped(e.path, "unreadable", f"cannot stat: {exc.strerror}"))
    return [found[k] for k in sorted(found)], junk


# -- reading headers -------------------------------------------------------------------------


def read_one(path: str) -> FileHeader | Skipped:
    """Header of one file, or the reason it is skipped (never raises for a bad file)."""
    try:
        return read_header_fast(path)
    except SkipFile as exc:
        return exc.skipped if exc.skipped.path else exc.with_path(path).skipped
    except Exception as exc:  # a reader bug must not lose the file: report it
        return Skipped(path, "unreadable", f"header could not be read ({type(exc).__name__}: {exc})")


def _read_chunk(paths: list[str]) -> list[FileHeader | Skipped]:
    return [read_one(p) for p in paths]


def _safe_to_fork() -> bool:
    """True when forking this process copies no other thread's state (Linux, one Python thread)."""
    import threading

    return sys.platform.startswith("linux") and threading.active_count() == 1


def _executor(workers: int) -> Executor:
    # fork is cheap and inherits the imports, but only safe without other threads; otherwise a
    # clean single-threaded server forks the workers (forkserver), or the platform's default.
    if _safe_to_fork():
        return ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork"))
    method = "forkserver" if sys.platform.startswith("linux") else None
    context = multiprocessing.get_context(method)
    if method == "forkserver":
        context.set_forkserver_preload([__name__])
    return ProcessPoolExecutor(max_workers=workers, mp_context=context)


def _default_workers(n: int) -> int:
    if "slicer" in sys.modules or n < (PARALLEL_MIN_FILES if _safe_to_fork() else PARALLEL_MIN_FILES_FRESH):
        # Small jobs: starting processes costs more than it saves. Inside Slicer (Qt, an
        # embedded interpreter) worker processes are not safe to fork or spawn.
        return 1
    return max(1, min(os.cpu_count() or 1, 8))


_HELPERS: ContextVar = ContextVar("medprep_header_helpers", default=None)


@contextlib.contextmanager
def header_helpers(pool, size: int) -> Iterator[None]:
    """Within this block, header reading shares its work with ``pool``: running worker
    processes (anything with ``submit(fn, *args)`` returning a future, e.g. an export's worker
    pool) of which ``size`` can read at once. Pickled work: lists of paths, headers back."""
    token = _HELPERS.set((pool, max(1, int(size))))
    try:
        yield
    finally:
        _HELPERS.reset(token)


def _read_shared(chunks: list[list[FileKey]], pool, size: int, finish) -> None:
    """Read ``chunks`` here and in the lent ``pool`` at once: the pool takes chunks from the
    front (two in flight per worker, so that a worker still busy elsewhere holds back little),
    this process from the back; at the end this process also reads whatever the pool has not
    returned yet, and the first result of a chunk counts (both are the same headers)."""
    queue = deque(range(len(chunks)))
    pending: dict[Future, int] = {}
    finished: set[int] = set()

    def take(i: int, out: list[FileHeader | Skipped]) -> None:
        if i not in finished:
            finished.add(i)
            finish(chunks[i], out)

    def read_here(i: int) -> None:
        take(i, _read_chunk([k[0] for k in chunks[i]]))

    def collect() -> None:
        for future in [f for f in pending if f.done()]:
            i = pending.pop(future)
            try:
                take(i, future.result())
            except Exception as exc:  # a broken or busy pool: read it here
                log.debug("a lent header reader failed (%s); reading its chunk here", exc)
                read_here(i)

    lending = True
    try:
        while queue:
            while lending and queue and len(pending) < 2 * size:
                try:
                    pending[pool.submit(_read_chunk, [k[0] for k in chunks[queue[0]]])] = queue[0]
                except Exception as exc:  # the pool is shut or broken: the rest is read here
                    log.debug("header reading cannot use the lent workers (%s)", exc)
                    lending = False
                    break
                queue.popleft()
            collect()
            if queue:
                read_here(queue.pop())
        for i in sorted(pending.values()):  # nothing left to hand out: do not wait for the pool
            collect()
            if i not in finished:
                read_here(i)
    finally:
        for future in pending:
            future.cancel()


def read_headers(
    keys: list[FileKey], *, workers: int | None = None, progress: Progress | None = None, store=None
) -> dict[str, FileHeader | Skipped]:
    """Read the headers of the given files (in worker processes when ``workers`` > 1).

    ``store`` (optional) is called with each finished batch of ``(key, result)`` pairs, so
    that what was read is cached even when the user cancels half-way.
    """
    progress = progress or Progress()
    n = len(keys)
    workers_given = workers
    workers = _default_workers(n) if workers is None else max(1, int(workers))
    results: dict[str, FileHeader | Skipped] = {}
    chunks = [keys[i : i + _CHUNK] for i in range(0, n, _CHUNK)]
    done = 0

    def finish(chunk: list[FileKey], out: list[FileHeader | Skipped]) -> None:
        nonlocal done
        for key, r in zip(chunk, out):
            results[key[0]] = r
        if store is not None:
            store(list(zip(chunk, out)))
        done += len(chunk)
        progress.update(f"reading DICOM headers ({done}/{n})", done / n if n else 1.0)

    helpers = _HELPERS.get() if workers_given is None else None
    if helpers is not None and n >= HELPERS_MIN_FILES:
        _read_shared(chunks, *helpers, finish)
        return results
    if workers == 1 or len(chunks) < 2:
        for chunk in chunks:
            finish(chunk, _read_chunk([k[0] for k in chunk]))
        return results
    try:
        pool = _executor(workers)
    except (OSError, ValueError) as exc:
        log.warning("cannot start header-reading processes (%s); reading in this process", exc)
        for chunk in chunks:
            finish(chunk, _read_chunk([k[0] for k in chunk]))
        return results
    queue = list(reversed(chunks))
    try:
        pending: dict[Future, list[FileKey]] = {}
        while queue or pending:
            while queue and len(pending) < 2 * workers:
                chunk = queue.pop()
                pending[pool.submit(_read_chunk, [k[0] for k in chunk])] = chunk
            ready, _ = wait(pending, return_when=FIRST_COMPLETED)
            for fut in ready:
                chunk = pending.pop(fut)
                try:
                    out = fut.result()
                except BrokenProcessPool:
                    log.warning("a header-reading process died; reading the rest in this process")
                    queue.extend(pending.values())
                    pending.clear()
                    queue.append(chunk)
                    pool.shutdown(wait=False, cancel_futures=True)
                    for rest in queue:
                        finish(rest, _read_chunk([k[0] for k in rest]))
                    return results
                finish(chunk, out)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
    return results


# -- the public entry points -----------------------------------------------------------------


def scan_files(
    files: list[str] | list[FileKey],
    *,
    cache: str | os.PathLike | bool | None = True,
    workers: int | None = None,
    progress: ProgressCallback | Progress | None = None,
    _extra_skipped: list[Skipped] | None = None,
) -> ScanResult:
    """Read and group an explicit list of files (paths, or (path, size, mtime_ns) keys)."""
    prog = as_progress(progress)
    keys: list[FileKey] = []
    unreadable: list[Skipped] = []
    for f in files:
        if isinstance(f, tuple):
            keys.append(f)
            continue
        p = os.path.abspath(os.fspath(f))
        try:
            st = os.stat(p)
        except OSError as exc:
            unreadable.append(Skipped(p, "unreadable", f"cannot open: {exc.strerror}"))
            continue
        keys.append((p, st.st_size, st.st_mtime_ns))
    keys = sorted(set(keys))
    index = open_index(cache)
    try:
        cached = index.lookup(keys) if index is not None else {}
        todo = [k for k in keys if k[0] not in cached]
        prog.update("reading DICOM headers", 0.0)
        fresh = read_headers(
            todo, workers=workers, progress=prog.sub(0.0, 0.95), store=index.store if index is not None else None
        )
    finally:
        if index is not None:
            index.close()
    results = {**cached, **fresh}
    headers = [r for r in results.values() if isinstance(r, FileHeader)]
    skipped = [r for r in results.values() if isinstance(r, Skipped)] + list(_extra_skipped or []) + unreadable
    prog.update("grouping into stacks", 0.95)
    stacks, group_skipped = group_stacks(headers)
    skipped.extend(group_skipped)
    prog.update("grouping into stacks", 1.0)
    return ScanResult(stacks=stacks, skipped=skipped, n_files=len(keys) + len(unreadable), n_cached=len(cached))


def scan(
    paths: str | os.PathLike | list[str | os.PathLike],
    *,
    cache: str | os.PathLike | bool | None = True,
    workers: int | None = None,
    progress: ProgressCallback | Progress | None = None,
) -> ScanResult:
    """Find the image stacks in DICOM folders or files, reading headers only.

    Parameters
    ----------
    paths:
        A folder (searched recursively), a file, or a list of them.
    cache:
        Where the header index lives: True (``$MEDPREP_CACHE`` or ``~/.cache/medprep``), a
        folder (the index goes there, e.g. beside the data), a ``.sqlite`` path, or
        False/None (no cache). See :mod:`MedPrepLib.dicom.index`.
    workers:
        Processes reading headers; None chooses (1 below ``PARALLEL_MIN_FILES`` files, or below
        ``PARALLEL_MIN_FILES_FRESH`` when this process has other threads).
    progress:
        ``(label, fraction) -> True to cancel``.

    Returns a :class:`ScanResult` whose every found file is in one stack or in ``skipped``.
    Raises :class:`InputError` for a path that does not exist and
    :class:`~MedPrepLib.errors.CancelledError` when cancelled.
    """
    prog = as_progress(progress)
    prog.update("finding files", 0.0)
    keys, junk = find_files(paths)
    prog.update(f"found {len(keys)} files", 0.05)
    result = scan_files(keys, cache=cache, workers=workers, progress=prog.sub(0.05, 1.0), _extra_skipped=junk)
    result.n_files += len(junk)
    return result


__all__ = ["ScanResult", "scan", "scan_files", "find_files", "read_headers", "stack_summary", "CancelledError"]
