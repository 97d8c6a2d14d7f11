"""The export's worker processes: their library thread pools get their share of the CPUs,
and the exporting process's environment is left as it was."""

from __future__ import annotations

import os

from MedPrepLib.export.workers import LIBRARY_THREAD_VARIABLES, WorkerPool, cpus


def _environment(names):
    return {name: os.environ.get(name) for name in names}


def test_workers_start_with_their_share_of_library_threads(monkeypatch):
    for name in LIBRARY_THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MKL_NUM_THREADS", "3")  # the user's own choice is kept
    pool = WorkerPool(2, qc=False)
    try:
        seen = pool.submit(_environment, LIBRARY_THREAD_VARIABLES).result(timeout=120)
        share = str(max(1, cpus() // 2))
        assert seen == {"OPENBLAS_NUM_THREADS": share, "OMP_NUM_THREADS": share, "MKL_NUM_THREADS": "3"}
        assert _environment(LIBRARY_THREAD_VARIABLES) == {
            "OPENBLAS_NUM_THREADS": None, "OMP_NUM_THREADS": None, "MKL_NUM_THREADS": "3",
        }  # fmt: skip
    finally:
        pool.close()
