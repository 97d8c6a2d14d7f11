"""The one thread pool of MedPrep's numpy work (resampling passes, blockwise voxel passes).

How many threads: ``MEDPREP_THREADS`` (an export running several cases in parallel sets 1);
otherwise the CPUs this process may run on, at most 4. Results never depend on it: every
threaded computation splits work so that each output value is computed by one thread in a
fixed order. numpy releases the GIL in ufuncs, ``take`` and sparse products, so threads help.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Any

_EXECUTORS: dict[tuple[int, int], ThreadPoolExecutor] = {}


def default_threads() -> int:
    """``MEDPREP_THREADS`` if set, else the CPUs this process may use (at most 4)."""
    env = os.environ.get("MEDPREP_THREADS", "").strip()
    if env:
        return max(1, int(env))
    try:
        return min(4, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return min(4, os.cpu_count() or 1)


def shared_executor(workers: int) -> ThreadPoolExecutor:
    """The process's pool of ``workers`` threads, made on first use and kept.

    Keyed by process id: a pool inherited through ``fork()`` has no threads behind it. Tasks
    must not wait on other tasks of the same pool (none of MedPrep's do).
    """
    key = (os.getpid(), workers)
    if key not in _EXECUTORS:
        _EXECUTORS[key] = ThreadPoolExecutor(workers, thread_name_prefix="medprep")
    return _EXECUTORS[key]


class Workers:
    """Runs the chunks of one pass, on the shared pool when ``threads`` > 1, and waits for all."""

    def __init__(self, threads: int | None = None):
        self.threads = max(1, threads if threads is not None else default_threads())

    def run(self, func, items) -> list[Any]:
        """``[func(item) for item in items]``, possibly in parallel; results in item order."""
        if self.threads == 1:
            return [func(item) for item in items]
        pool = shared_executor(self.threads)
        return [future.result() for future in [pool.submit(func, item) for item in items]]
