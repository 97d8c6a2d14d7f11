"""The command-line frame: every documented sub-command is installed and has help."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from MedPrepLib.cli import COMMANDS, build_parser

README = Path(__file__).resolve().parents[1] / "README.md"


def test_every_command_module_exists_and_registers():
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    assert sorted(sub.choices) == sorted(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
def test_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args([command, "--help"])
    assert exc.value.code == 0
    assert command in capsys.readouterr().out


def test_readme_has_exactly_two_setup_commands_and_ci_runs_the_second():
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), re.S)
    assert len(blocks) == 2
    assert "medprep demo" in blocks[0]
    assert "pytest" in blocks[1]
    ci = (README.parent / ".ci" / "run").read_text()
    assert "readme_block 1" in ci and "README.md" in ci
