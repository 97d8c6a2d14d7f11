"""The ``medprep`` command: argument handling only, over the MedPrepLib API.

Each sub-command lives in its own module of this package, named after the command, and declares
what :class:`Command` lists: ``HELP`` (its line in ``medprep --help``), ``DESCRIPTION`` (the
paragraph atop ``medprep NAME --help``, or ``None``), ``add_arguments(parser)`` (its arguments
only) and ``run(args) -> int``. :func:`build_parser` makes the sub-parser from that declaration,
so no module restates the registration.

Adding a command (``medprep export``, say) is adding one module and one line: write
``MedPrepLib/cli/export.py`` with those four names, and put ``"export"`` into :data:`COMMANDS`
where ``medprep --help`` should list it (``Testing/test_cli_frame.py`` then checks that it
registers and has help).

Errors derived from :class:`~MedPrepLib.errors.MedPrepError` become a one-line message on stderr
and a non-zero exit; ``--verbose`` adds the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import traceback
from typing import Protocol

from .. import __version__
from ..errors import CancelledError, MedPrepError, SeriesSelectionError
from .progressbar import ProgressBar

COMMANDS = ["info", "demo", "scan", "convert", "export", "label", "preprocess", "restore", "statistics", "recipe", "cache"]
"""The sub-command modules, in the order ``medprep --help`` lists them; each is a :class:`Command`."""


class Command(Protocol):
    """What a sub-command module declares; :func:`build_parser` registers it from these."""

    HELP: str
    """One line: what the command does, as ``medprep --help`` lists it."""
    DESCRIPTION: str | None
    """The paragraph atop ``medprep NAME --help`` (``None``: none)."""

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Add the command's arguments to its sub-parser."""

    def run(self, args: argparse.Namespace) -> int:
        """Carry the command out; returns the exit status."""


EXIT_ERROR = 2
EXIT_CANCELLED = 130  # 128 + SIGINT, as a shell reports Ctrl-C

TERMINATING_SIGNALS = ("SIGTERM", "SIGHUP")
"""Handled like Ctrl-C: ``timeout``, SLURM and ``docker stop`` send SIGTERM, a closed terminal SIGHUP."""


class Terminated(KeyboardInterrupt):
    """Raised in the main thread by SIGTERM or SIGHUP, so that every ``finally`` (staging
    folders, partial files) runs as for Ctrl-C; the exit status is 128 + the signal number."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _on_signal(signum, frame):
    for name in ("SIGINT", *TERMINATING_SIGNALS):  # a second signal must not interrupt the clean-up
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)
    raise Terminated(signum)


def install_signal_handlers() -> None:
    import threading

    if threading.current_thread() is not threading.main_thread():
        return  # only the main thread may set handlers (main() called from a worker thread)
    for name in TERMINATING_SIGNALS:
        if hasattr(signal, name) and signal.getsignal(getattr(signal, name)) is not signal.SIG_IGN:
            signal.signal(getattr(signal, name), _on_signal)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="medprep",
        description="Turn clinical images (DICOM, NIfTI, NRRD, MHA/MHD) into clean, reproducible deep-learning data.",
    )
    parser.add_argument("--version", action="version", version=f"medprep {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show debug logging and full tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMANDS:
        module_name = f"{__name__}.{name}"
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue  # a command of a feature not built yet; Testing/test_cli_frame.py lists what must exist
        command: Command = module
        parser_of_command = sub.add_parser(name, help=command.HELP, description=command.DESCRIPTION)
        command.add_arguments(parser_of_command)
        parser_of_command.set_defaults(func=command.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``medprep`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)  # what was typed, for a command that records it
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="medprep: %(levelname)s: %(message)s",
    )
    install_signal_handlers()
    bar = ProgressBar()
    args.progress = bar if bar.enabled else None  # sub-commands pass it to long calls
    try:
        return int(args.func(args) or 0)
    except CancelledError as exc:
        bar.close()
        print(f"medprep: cancelled: {exc.one_line()}", file=sys.stderr)
        return EXIT_CANCELLED
    except MedPrepError as exc:
        bar.close()
        if args.verbose:
            traceback.print_exc()
        if isinstance(exc, SeriesSelectionError) and hasattr(args, "series"):
            # the library names stack ids; how to give one is the command line's business
            exc.hint = f"{exc.hint}; " if exc.hint else ""
            exc.hint += "give the stack id with --series ID"
        print(f"medprep: error: {exc.one_line(verbose=args.verbose)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt as exc:
        bar.close()
        signum = exc.signum if isinstance(exc, Terminated) else signal.SIGINT
        print(f"medprep: interrupted by {signal.Signals(signum).name}; nothing was left half-written", file=sys.stderr)
        return 128 + int(signum)
    except Exception as exc:  # an unexpected failure is still one line unless --verbose
        bar.close()
        if args.verbose:
            traceback.print_exc()
        msg = " ".join(f"{type(exc).__name__}: {exc}".split())
        print(f"medprep: internal error: {msg} (run with --verbose for the traceback)", file=sys.stderr)
        return 1
    finally:
        bar.close()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
