"""A one-line progress bar on the terminal for the ``medprep`` command.

It is a :data:`~MedPrepLib.progress.ProgressCallback`: ``bar(label, fraction)``. It draws only
when stderr is a terminal (so logs, pipes and CI stay clean), at most ten times a second, and
:meth:`ProgressBar.close` erases it, so an error message that follows stands alone on its line.
"""

from __future__ import annotations

import sys
import time

WIDTH = 28


class ProgressBar:
    def __init__(self, stream=None, *, enabled: bool | None = None, min_interval_s: float = 0.1):
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.min_interval_s = min_interval_s
        self._last_draw: float | None = None  # none yet: the first call always draws
        self._drawn = 0

    def __call__(self, label: str, fraction: float) -> bool:
        if not self.enabled:
            return False
        now = time.monotonic()
        if fraction < 1.0 and self._last_draw is not None and now - self._last_draw < self.min_interval_s:
            return False
        self._last_draw = now
        filled = int(round(WIDTH * min(max(fraction, 0.0), 1.0)))
        text = f"{label[:48]:<48} [{'#' * filled}{'.' * (WIDTH - filled)}] {int(fraction * 100):3d}%"
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
