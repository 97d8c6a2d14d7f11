"""The worker processes of a parallel export: how many, started early, and stopped cleanly.

:class:`WorkerPool` starts its processes (``spawn``: a fresh interpreter each, no inherited
threads) as soon as the export knows it will want them, before the source is scanned, so that
their imports overlap the scan (and the export lends them to the scan's header reading). Each
worker gets ``MEDPREP_THREADS`` = its share of the CPUs, ignores Ctrl-C (the export decides) and
dies with the export (``PR_SET_PDEATHSIG`` on Linux), so a killed export leaves no process
writing into the dataset. When the export stops early, the
workers are killed and the staging folders they were writing into are removed.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

from ..atomic import remove_staging_of

PER_WORKER_BYTES = 1_200 * 2**20
"""The memory one worker is allowed for ``workers="auto"`` (a 512 x 512 x 300 CT through a
resampling recipe peaks below it)."""


def cpus() -> int:
    """The CPUs this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _available_memory() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def auto_workers(n_cases: int | None = None) -> int:
    """Workers for ``--workers auto``: the CPUs, bounded by the memory available over
    :data:`PER_WORKER_BYTES`, and by the number of cases when known."""
    available = _available_memory()
    by_memory = max(1, int(available // PER_WORKER_BYTES)) if available else cpus()
    return max(1, min(cpus(), by_memory, n_cases if n_cases is not None else cpus()))


_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4  # glibc's mallopt() parameters (malloc.h)
HEAP_KEEP_BYTES = 1 << 30
"""Freed memory a worker keeps for its next case (glibc's trim threshold)."""


def _keep_freed_memory() -> None:
    """Let a worker's big arrays come from its heap and stay there between cases.

    glibc hands every allocation above a few MB (a CT volume: 157 MB) to ``mmap`` and returns it
    to the kernel when freed, so every case faults in fresh, kernel-zeroed pages for each
    full-size array again: on a 2-core machine that was a quarter of a raw case's CPU time, in
    the kernel. With mmap off and a trim threshold of :data:`HEAP_KEEP_BYTES`, the next case
    reuses the pages of the last one. Only in worker processes (MedPrep's own); a process
    that embeds MedPrep (Slicer) keeps its allocator as it is. No-op where there is no glibc.
    """
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(_M_MMAP_MAX, 0)
        libc.mallopt(_M_TRIM_THRESHOLD, HEAP_KEEP_BYTES)
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        pass


LIBRARY_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
"""How many threads numpy's BLAS (and OpenMP code) starts, read once when it loads."""


@contextlib.contextmanager
def _library_threads(threads: int) -> Iterator[None]:
    """Spawn workers whose BLAS and OpenMP thread pools have their share of the CPUs.

    numpy's OpenBLAS starts a thread per CPU in every process, and those threads spin for a
    while after each (tiny: 3 x 3) matrix product: two workers' spinning threads took CPU from
    the other worker's case. The variables must be set before the worker imports numpy, so they
    are set here, in this process, while the workers start, and then put back. A value the user
    set is kept."""
    saved = {name: os.environ.get(name) for name in LIBRARY_THREAD_VARIABLES}
    for name, value in saved.items():
        if value is None:
            os.environ[name] = str(threads)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)


def _worker_init(threads: int) -> None:
    os.environ["MEDPREP_THREADS"] = str(threads)
    _keep_freed_memory()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides; it shuts the pool down
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:  # pragma: no cover - not Linux
        pass


def _warm_up(qc: bool) -> int:
    """Import what every case needs while the export is still scanning, so that the first case
    of each worker does not pay for it. Only that: on a machine whose cores are all busy (the
    scan runs beside the warm-up) an import no case needs is time taken from the scan. pydicom
    is not among them — the loader reads plain DICOM itself and imports pydicom for the
    unusual file only — and Pillow (the QC montage) only with QC."""
    import SimpleITK  # noqa: F401 - the image file headers

    from .. import imagewriter, sources  # noqa: F401 - the deflate engine (isal), the loaders
    from ..dicom import load  # noqa: F401 - DICOM stacks, pixels
    from . import case_job  # noqa: F401 - numpy, the recipe steps, the formats

    if qc:
        import PIL.Image  # noqa: F401

        from .qc import montage  # noqa: F401

    import gc

    gc.freeze()  # what is imported lives as long as the worker: no garbage collection walks it again
    return os.getpid()


class WorkerPool:
    """``size`` worker processes, started now (see the module doc)."""

    def __init__(self, size: int, *, qc: bool = True):
        import multiprocessing

        self.size = size
        threads = max(1, cpus() // size)
        self._pool = ProcessPoolExecutor(
            size, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_init, initargs=(threads,),
        )  # fmt: skip
        with _library_threads(threads):  # the workers start now, with this environment
            self._warming = [self._pool.submit(_warm_up, qc) for _ in range(size)]

    def submit(self, fn: Callable, *args):
        """Run ``fn(*args)`` in a worker (a small task, e.g. DICOM headers read while the export
        still scans: see :func:`MedPrepLib.dicom.scan.header_helpers`); returns its future."""
        return self._pool.submit(fn, *args)

    def run(self, jobs: Iterable, job: Callable, finished: Callable[[dict], None], folders: Iterable[Path]) -> None:
        """Run ``job(j)`` for every j in ``jobs`` (at most two per worker queued), calling
        ``finished(result)`` in this process as results come, in completion order. On any
        exception (a signal included) the workers are killed, the staging folders of theirs in
        ``folders`` removed, and the exception re-raised."""
        pending = set()
        queue = iter(jobs)
        try:
            for j in queue:
                pending.add(self._pool.submit(job, j))
                if len(pending) >= 2 * self.size:
                    break
            while pending:
                ready, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in ready:
                    finished(future.result())
                for j in queue:
                    pending.add(self._pool.submit(job, j))
                    if len(pending) >= 2 * self.size:
                        break
        except BaseException:
            self.kill(folders)
            raise

    def kill(self, folders: Iterable[Path] = ()) -> None:
        """Stop every worker now and remove their staging folders in ``folders``."""
        processes = list((getattr(self._pool, "_processes", None) or {}).values())
        self._pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.kill()  # a worker mid-case has written only into staging folders ...
        for process in processes:
            process.join(timeout=10)
        pids = [p.pid for p in processes if p.pid is not None]
        for folder in folders:  # ... which go with it
            if Path(folder).is_dir():
                remove_staging_of(folder, pids)

    def release(self) -> None:
        """Tell the workers to exit, without waiting for them: once every case is in, their
        interpreters shut down while this process writes the index."""
        self._pool.shutdown(wait=False, cancel_futures=True)

    def close(self) -> None:
        """Let the workers finish what they have and exit."""
        self._pool.shutdown(wait=True, cancel_futures=True)
