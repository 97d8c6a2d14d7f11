"""How many threads MedPrep's numpy work may use (resampling passes, intensity blocks).

``MEDPREP_THREADS`` sets it (an export running several cases in parallel sets 1); otherwise the
CPUs this process may run on, at most 4. Results never depend on it: every threaded computation
splits work so that each output value is computed by one thread in a fixed order.
"""

from __future__ import annotations

import os


def default_threads() -> int:
    """``MEDPREP_THREADS`` if set, else the CPUs this process may use (at most 4)."""
    env = os.environ.get("MEDPREP_THREADS", "").strip()
    if env:
        return max(1, int(env))
    try:
        return min(4, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return min(4, os.cpu_count() or 1)
