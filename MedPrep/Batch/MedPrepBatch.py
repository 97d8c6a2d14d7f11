"""What the MedPrep batch scripts of this folder share (``export.py``, ``export_scene.py``).

A batch script runs as ``Slicer --no-main-window --python-script MedPrep/Batch/SCRIPT.py -- ARGS``.
Slicer sets ``sys.argv`` to ``[SCRIPT, ARGS...]`` (the ``--`` that ends Slicer's own options may be
kept: :func:`scriptArguments` drops it). The scripts are run by path, never imported as modules:
this folder is not scanned by Slicer's module discovery (it lists the files at the top of a
module path only), and the extension installs it beside the module as ``Batch/``.

Exit: :func:`runAndExit` ends Slicer through ``slicer.util.exit(status)`` with the status of
``medprep``: 0 done, 4 some cases quarantined, 2 refused (one line on stderr: what, where, what
to do), 1 an internal error (one line; ``--verbose`` adds the traceback), 128 + N stopped by
signal N.
"""

from __future__ import annotations

import argparse
import os
import re
import sys

EXIT_USAGE = 2


def makeMedPrepImportable(batchDir: str) -> None:
    """Put the module folder (``MedPrepCore``) on sys.path and, in an unbuilt checkout, the
    checkout root (``MedPrepLib``); a built extension has ``MedPrepLib`` in the module folder."""
    moduleDir = os.path.dirname(os.path.abspath(batchDir))
    if moduleDir not in sys.path:
        sys.path.append(moduleDir)
    checkoutRoot = os.path.dirname(moduleDir)
    if not os.path.isdir(os.path.join(moduleDir, "MedPrepLib")) and checkoutRoot not in sys.path:
        if os.path.isfile(os.path.join(checkoutRoot, "MedPrepLib", "__init__.py")):
            sys.path.insert(0, checkoutRoot)


def scriptArguments(argv: list[str] | None = None) -> list[str]:
    """The script's own arguments: ``sys.argv[1:]`` without a leading ``--``."""
    args = list(sys.argv[1:] if argv is None else argv)
    return args[1:] if args[:1] == ["--"] else args


class UsageError(Exception):
    """A bad command line; :func:`runAndExit` prints it as one line and exits 2."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with a usage error raised as :class:`UsageError` (one line, not usage + error
    and ``sys.exit``, which would not end Slicer)."""

    def error(self, message):
        raise UsageError(f"{message} (see {self.prog} --help)")


class ExportOptions:
    """The parser that ``medprep export``'s ``add_arguments`` fills, seen through two rules so
    that a script's options are the CLI's, declared once there:

    * ``renamed`` {positional: (option, metavar, added help)}: a positional argument made an
      option (same ``dest``, so the namespace is the CLI's); OUT is required;
    * ``only`` (a set of ``dest`` names, or None for all): the options a script passes on; the
      others are not added."""

    def __init__(self, parser, renamed: dict[str, tuple[str, str, str]], only: set[str] | None = None) -> None:
        self._parser, self._renamed, self._only = parser, renamed, only

    @staticmethod
    def destOf(names, options) -> str:
        if "dest" in options:
            return options["dest"]
        longs = [n for n in names if n.startswith("--")] or list(names)
        return longs[0].lstrip("-").replace("-", "_")

    def add_argument(self, *names, **options):
        dest = self.destOf(names, options)
        if self._only is not None and dest not in self._only:
            return None
        if len(names) == 1 and names[0] in self._renamed:
            option, metavar, more = self._renamed[names[0]]
            options["help"] = options.get("help", "") + more
            return self._parser.add_argument(option, dest=dest, metavar=metavar, required=dest == "out", **options)
        return self._parser.add_argument(*names, **options)

    def __getattr__(self, name):
        return getattr(self._parser, name)


def addVerbose(parser) -> None:
    """``medprep --verbose``, the one option of ``medprep`` itself that the scripts take."""
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="show debug logging and full tracebacks (medprep --verbose)"
    )


def defaultDicomDatabase() -> str | None:
    """The folder of the application's DICOM database, when there is one."""
    try:
        import slicer

        folder = slicer.dicomDatabase.databaseDirectory
    except Exception:  # noqa: BLE001 - no application, no database: the caller asks for --db
        return None
    return folder or None


class StepLines:
    """A progress callback writing one line per step (another kind of label — counts in it do
    not count — or another tenth of the whole done): what a
    batch log shows where the CLI's progress bar cannot draw (no terminal). The lines go to
    stdout, with the summary, so that stderr holds nothing but warnings and the one-line error."""

    def __init__(self, stream=None) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.last: tuple[str, int] | None = None

    def __call__(self, label: str, fraction: float) -> bool:
        step = (re.sub(r"\d+", "#", label), int(min(max(fraction, 0.0), 1.0) * 10))
        if step != self.last:
            self.last = step
            self.stream.write(f"medprep: {int(fraction * 100):3d}% {label}\n")
            self.stream.flush()
        return False

    def close(self) -> None:
        pass


def progressReporter():
    """The CLI's progress bar when stderr is a terminal (it draws there), else :class:`StepLines`."""
    from MedPrepLib.cli.progressbar import ProgressBar

    try:  # Slicer replaces sys.stderr by its own stream, which may not know isatty
        terminal = bool(sys.stderr.isatty())
    except Exception:  # noqa: BLE001
        terminal = False
    return ProgressBar(enabled=True) if terminal else StepLines()


def wantsVerbose(args: list[str]) -> bool:
    return "-v" in args or "--verbose" in args


def runAndExit(main, verbose: bool = False) -> None:
    """Run ``main() -> status`` and end Slicer with that status; every failure is one line on
    stderr (the traceback too with ``verbose``)."""
    import signal
    import traceback

    import slicer

    from MedPrepLib.cli import EXIT_CANCELLED, Terminated, install_signal_handlers
    from MedPrepLib.errors import CancelledError, MedPrepError

    install_signal_handlers()
    try:
        status = int(main() or 0)
    except SystemExit as exc:  # --help
        status = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else EXIT_USAGE)
    except UsageError as exc:
        print(f"medprep: error: {exc}", file=sys.stderr)
        status = EXIT_USAGE
    except CancelledError as exc:
        print(f"medprep: cancelled: {exc.one_line()}", file=sys.stderr)
        status = EXIT_CANCELLED
    except MedPrepError as exc:
        if verbose:
            traceback.print_exc()
        print(f"medprep: error: {exc.one_line(verbose=verbose)}", file=sys.stderr)
        status = EXIT_USAGE
    except KeyboardInterrupt as exc:
        signum = exc.signum if isinstance(exc, Terminated) else signal.SIGINT
        print(f"medprep: interrupted by {signal.Signals(signum).name}; nothing was left half-written", file=sys.stderr)
        status = 128 + int(signum)
    except Exception as exc:  # noqa: BLE001 - a bug is still one line unless --verbose
        if verbose:
            traceback.print_exc()
        msg = " ".join(f"{type(exc).__name__}: {exc}".split())
        print(f"medprep: internal error: {msg} (run with --verbose for the traceback)", file=sys.stderr)
        status = 1
    sys.stdout.flush()
    sys.stderr.flush()
    slicer.util.exit(status)
