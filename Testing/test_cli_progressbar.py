"""The terminal progress bar: drawn only on a terminal, throttled, erased before messages."""

from __future__ import annotations

import io

from cli_run import on_a_terminal

from MedPrepLib.cli.progressbar import ProgressBar


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_bar_draws_on_a_terminal_and_erases_itself():
    term = _Terminal()
    bar = ProgressBar(term, min_interval_s=0.0)
    assert bar.enabled
    assert bar("loading slices", 0.5) is False  # never cancels by itself
    assert "loading slices" in term.getvalue() and " 50%" in term.getvalue()
    bar("loading slices", 1.0)
    assert "100%" in term.getvalue()
    bar.close()
    assert term.getvalue().endswith("\r")  # the line is blanked and the cursor back at its start


def test_bar_is_silent_off_a_terminal_and_throttled_on_one():
    pipe = io.StringIO()
    ProgressBar(pipe)("x", 0.3)
    assert pipe.getvalue() == ""
    term = _Terminal()
    bar = ProgressBar(term, min_interval_s=3600)
    bar("a", 0.1)
    bar("a", 0.2)  # within the interval: not drawn
    assert " 20%" not in term.getvalue() and " 10%" in term.getvalue()
    bar("a", 1.0)  # the end is always drawn
    assert "100%" in term.getvalue()


def test_cli_shows_progress_on_a_terminal(tmp_path):
    code, text = on_a_terminal("demo", tmp_path / "demo")
    assert code == 0, text
    assert "%" in text and "[" in text  # the bar was drawn on the terminal
    assert text.endswith("\r")  # and erased at the end (blanks written over it)


def test_first_draw_on_a_freshly_booted_machine(monkeypatch):
    """time.monotonic() counts from boot: on a machine up for less than the redraw interval the
    very first update must still be drawn (it was compared with a 'last draw' at time 0)."""
    import MedPrepLib.cli.progressbar as progressbar

    monkeypatch.setattr(progressbar.time, "monotonic", lambda: 0.05)
    term = _Terminal()
    bar = ProgressBar(term, min_interval_s=0.1)
    bar("loading", 0.25)
    assert " 25%" in term.getvalue()
    bar("loading", 0.5)  # 0 s after the first draw: throttled
    assert " 50%" not in term.getvalue()


def test_bar_shows_the_time_left_once_the_rate_is_known(monkeypatch):
    import MedPrepLib.cli.progressbar as progressbar

    clock = [100.0]
    monkeypatch.setattr(progressbar.time, "monotonic", lambda: clock[0])
    term = _Terminal()
    bar = ProgressBar(term, min_interval_s=0.0)
    bar("exporting", 0.0)
    clock[0] = 101.0
    bar("exporting", 0.05)  # too early for an estimate
    assert "ETA" not in term.getvalue()
    clock[0] = 160.0
    bar("exporting", 0.25)  # 60 s for a quarter: 3 minutes left
    assert term.getvalue().rstrip().endswith("ETA 3m00s")
    bar("exporting", 1.0)
    last = term.getvalue().split("\r")[-1]
    assert "100%" in last and "ETA" not in last  # done: nothing left to estimate
