"""The ``medprep`` command: argument handling only, over the MedPrepLib API.

Each sub-command lives in its own module of this package with two functions:
``add_parser(subparsers)`` registering its arguments and ``run(args) -> int``. Errors derived
from :class:`~MedPrepLib.errors.MedPrepError` become a one-line message on stderr and a non-zero
exit; ``--verbose`` adds the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
import traceback

from .. import __version__
from ..errors import CancelledError, MedPrepError
from .progressbar import ProgressBar

# Sub-command modules, in the order ``medprep --help`` lists them.
COMMANDS = ["info", "demo", "scan", "convert", "preprocess", "restore", "statistics", "recipe", "cache"]

EXIT_ERROR = 2
EXIT_CANCELLED = 130


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
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``medprep`` console script; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="medprep: %(levelname)s: %(message)s",
    )
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
        print(f"medprep: error: {exc.one_line(verbose=args.verbose)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        bar.close()
        print("medprep: interrupted", file=sys.stderr)
        return EXIT_CANCELLED
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
