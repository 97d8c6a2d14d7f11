"""A one-line progress bar on the terminal for the ``medprep`` command.

It is a :data:`~MedPrepLib.progress.ProgressCallback`: ``bar(label, fraction)``. It draws only
when stderr is a terminal (so logs, pipes and CI stay clean), at most ten times a second, and
:meth:`ProgressBar.close` erases it, so an error message that follows stands alone on its line.
Once a run has gone on for :data:`ETA_AFTER_S` and moved on by at least 1 %, the bar shows the
time left, from the average rate since the first update (``ETA 3m05s``).
"""

from __future__ import annotations

import sys
import time

WIDTH = 28
ETA_AFTER_S = 2.0
"""No estimate of the time left before the run is this old (seconds): early rates mislead."""


def eta_text(seconds: float) -> str:
    """``"ETA 42s"``, ``"ETA 3m05s"``, ``"ETA 2h07m"``.

    >>> eta_text(42.4), eta_text(185), eta_text(7620)
    ('ETA 42s', 'ETA 3m05s', 'ETA 2h07m')
    """
    s = int(round(seconds))
    if s < 60:
        return f"ETA {s}s"
    if s < 3600:
        return f"ETA {s // 60}m{s % 60:02d}s"
    return f"ETA {s // 3600}h{(s % 3600) // 60:02d}m"


class ProgressBar:
    def __init__(self, stream=None, *, enabled: bool | None = None, min_interval_s: float = 0.1):
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.min_interval_s = min_interval_s
        self._last_draw: float | None = None  # none yet: the first call always draws
        self._drawn = 0
        self._start: tuple[float, float] | None = None  # (time, fraction) of the first update

    def __call__(self, label: str, fraction: float) -> bool:
        if not self.enabled:
            return False
        now = time.monotonic()
        if self._start is None:
            self._start = (now, fraction)
        if fraction < 1.0 and self._last_draw is not None and now - self._last_draw < self.min_interval_s:
            return False
        self._last_draw = now
        filled = int(round(WIDTH * min(max(fraction, 0.0), 1.0)))
        text = f"{label[:48]:<48} [{'#' * filled}{'.' * (WIDTH - filled)}] {int(fraction * 100):3d}%"
        t0, f0 = self._start
        if fraction < 1.0 and now - t0 >= ETA_AFTER_S and fraction - f0 >= 0.01:
            text += " " + eta_text((now - t0) / (fraction - f0) * (1.0 - fraction))
        self.stream.write("\r" + text.ljust(self._drawn))
        self.stream.flush()
        self._drawn = len(text)
        return False  # cancelling from the terminal is Ctrl-C

    def close(self) -> None:
        """Erase the bar (if drawn)."""
        if self.enabled and self._drawn:
            self.stream.write("\r" + " " * self._drawn + "\r")
            self.stream.flush()
            self._drawn = 0
