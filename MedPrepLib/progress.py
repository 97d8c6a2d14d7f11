"""Progress reporting and cancellation for long operations.

Every long MedPrep call takes ``progress: ProgressCallback | None``. The callback receives a
short label and the fraction done in [0, 1]; it returns ``True`` to ask for cancellation
(anything else, including ``None``, means go on). The Slicer panel connects it to a progress
dialog, the command line to a progress bar, batch callers pass ``None``.

>>> seen = []
>>> p = Progress(lambda label, f: seen.append((label, round(f, 2))))
>>> for _ in p.iterate(range(4), "loading"):
...     pass
>>> seen[-1]
('loading', 1.0)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from .errors import CancelledError

ProgressCallback = Callable[[str, float], "bool | None"]
T = TypeVar("T")


class Progress:
    """Wraps an optional callback; :meth:`update` raises :class:`CancelledError` on request.

    ``start``/``span`` map this operation's [0, 1] onto a part of a parent operation, so nested
    work (scan inside export, say) reports one monotone fraction.
    """

    def __init__(self, callback: ProgressCallback | None = None, *, start: float = 0.0, span: float = 1.0):
        self.callback = callback
        self.start = start
        self.span = span

    def update(self, label: str, fraction: float) -> None:
        """Report ``fraction`` (0..1) of this operation; raise CancelledError if asked to stop."""
        if self.callback is None:
            return
        f = self.start + self.span * min(max(float(fraction), 0.0), 1.0)
        if self.callback(label, f) is True:
            raise CancelledError(f"cancelled during: {label}")

    def sub(self, start: float, end: float) -> Progress:
        """A child reporter covering [start, end] of this operation."""
        return Progress(self.callback, start=self.start + self.span * start, span=self.span * (end - start))

    def iterate(self, items: Iterable[T], label: str, total: int | None = None) -> Iterator[T]:
        """Yield ``items`` while reporting progress after each one."""
        if total is None:
            try:
                total = len(items)  # type: ignore[arg-type]
            except TypeError:
                total = 0
        self.update(label, 0.0)
        for n, item in enumerate(items, 1):
            yield item
            self.update(label, n / total if total else 0.0)
        self.update(label, 1.0)


def as_progress(progress: ProgressCallback | Progress | None) -> Progress:
    """Accept a callback, a Progress, or None."""
    return progress if isinstance(progress, Progress) else Progress(progress)
