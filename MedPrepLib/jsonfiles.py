"""Reading and writing the JSON sidecars (recipes, provenance, statistics) with useful errors."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .atomic import atomic_write_text
from .errors import InputError, MedPrepError, RecipeError


def read_json(path: str | os.PathLike, *, what: str = "JSON file", invalid: type[MedPrepError] = RecipeError) -> Any:
    """Parse a JSON file; a missing/unreadable file is an :class:`InputError`, bad JSON an
    ``invalid`` error naming the line and column."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{what} not found", path=path) from None
    except OSError as exc:
        raise InputError(f"cannot read {what}: {exc.strerror}", path=path) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise invalid(f"not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}", path=path) from None


def write_json(obj: Any, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write ``obj`` as indented JSON through a temporary file in the same folder and a rename."""
    text = json.dumps(obj, indent=2, allow_nan=False) + "\n"
    return atomic_write_text(path, text, overwrite=overwrite)
