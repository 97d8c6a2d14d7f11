"""The arguments several ``medprep`` commands share, each declared once: its name and how it parses.

Each command keeps its own help text, which says what the argument means for that command.
"""

from __future__ import annotations

import argparse


def add_input_output(p: argparse.ArgumentParser, input_help: str, output_help: str, *, input_name: str = "input") -> None:
    """The positional ``INPUT OUTPUT`` of a command that reads one image and writes one file."""
    p.add_argument(input_name, help=input_help)
    p.add_argument("output", help=output_help)


def add_series(p: argparse.ArgumentParser, help: str) -> None:
    """``--series ID``: the stack to use when the input holds several. An error choosing a stack
    names this flag in its hint (:func:`MedPrepLib.cli.main`)."""
    p.add_argument("--series", help=help)


def add_overwrite(p: argparse.ArgumentParser, help: str = "replace OUTPUT if it exists") -> None:
    """``--overwrite``: no command replaces an existing file without it (:mod:`MedPrepLib.atomic`)."""
    p.add_argument("--overwrite", action="store_true", help=help)
