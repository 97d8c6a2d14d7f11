"""Writing files so that nothing is lost: temporary name in the same folder, then a rename.

A crash or a cancellation never leaves a half-written file under the final name, and an
existing file is never replaced unless the caller says so.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from .errors import InputError, OutputExistsError


def default_file_mode() -> int:
    """The permission bits a plain ``open(path, "w")`` would give (0o666 less the umask).

    ``tempfile.mkstemp`` creates files readable by the owner only; outputs must not look
    different from any other file the user writes.
    """
    umask = os.umask(0o022)
    os.umask(umask)
    return 0o666 & ~umask


def check_writable(path: Path, *, overwrite: bool) -> None:
    """Refuse an existing output (without ``overwrite``) or a missing output folder."""
    if path.exists() and not overwrite:
        raise OutputExistsError("output exists", path=path, hint="choose another name, or allow replacing it (--overwrite)")
    if not path.parent.is_dir():
        raise InputError("output folder does not exist", path=path.parent)


def refuse_overwriting_inputs(outputs: list[Path], inputs: list[Path]) -> None:
    """An output that is one of the inputs would destroy the user's data, overwrite allowed or not."""
    for out in outputs:
        for source in inputs:
            if out.exists() and source.exists() and out.resolve() == source.resolve():
                raise OutputExistsError(
                    "an output is also an input of this command and would be destroyed",
                    path=out,
                    hint="write the outputs to new files",
                )


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, overwrite: bool = False) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename."""
    path = Path(path)
    check_writable(path, overwrite=overwrite)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str, *, overwrite: bool = False) -> Path:
    """:func:`atomic_write_bytes` for UTF-8 text."""
    return atomic_write_bytes(path, text.encode("utf-8"), overwrite=overwrite)
