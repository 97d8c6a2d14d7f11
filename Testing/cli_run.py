"""Running the real ``medprep`` command in a subprocess, and what every refusal must look like.

The bad-input catalogue (``Testing/test_cli_bad_inputs*.py``) goes through these helpers so
that every case is judged the same way: exit code, exactly one line on stderr, no traceback,
nothing left at the output name or in a temporary folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def cli_env(**extra: str) -> dict[str, str]:
    """The environment for a subprocess: this checkout importable, header cache off."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.setdefault("MEDPREP_CACHE", "off")
    env.update(extra)
    return env


def run_medprep(*args: str | os.PathLike, cwd=None, env=None, timeout: float = 120, **popen) -> subprocess.CompletedProcess:
    """``python -m MedPrepLib ARGS`` with captured text output."""
    return subprocess.run(
        [sys.executable, "-m", "MedPrepLib", *map(str, args)],
        cwd=cwd,
        env=env or cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        **popen,
    )


def on_a_terminal(*args: str | os.PathLike, cwd=None, env=None, timeout: float = 300) -> tuple[int, str]:
    """``medprep ARGS`` with stderr on a pseudo-terminal (where the progress bar draws); returns
    (exit code, everything the terminal showed)."""
    import pty

    primary, secondary = pty.openpty()
    proc = subprocess.run(
        [sys.executable, "-m", "MedPrepLib", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=secondary,
        stdin=subprocess.DEVNULL,
        cwd=cwd,
        env=env or cli_env(),
        timeout=timeout,
    )
    os.close(secondary)
    shown = b""
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    os.close(primary)
    return proc.returncode, shown.decode(errors="replace")


def assert_refused(proc: subprocess.CompletedProcess, *, exit_code: int = 2, contains: str | tuple[str, ...] = ()) -> str:
    """The command failed with ``exit_code``, printed exactly one line on stderr (no traceback,
    nothing from a codec or pydicom), containing each of ``contains`` (case-insensitive).
    Returns that line."""
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == exit_code, (proc.returncode, proc.stdout, proc.stderr)
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr
    line = lines[0]
    assert line.startswith("medprep: "), line
    for text in (contains,) if isinstance(contains, str) else contains:
        assert text.lower() in line.lower(), line
    return line


def leftovers(folder: str | os.PathLike, *, keep: tuple[str, ...] = ()) -> list[str]:
    """Everything in ``folder`` (recursively) except the names in ``keep``: partial outputs and
    temporary files or folders that an interrupted or failed run must not leave behind."""
    folder = Path(folder)
    return sorted(
        str(p.relative_to(folder)) for p in folder.rglob("*") if p.relative_to(folder).parts[0] not in keep
    )
