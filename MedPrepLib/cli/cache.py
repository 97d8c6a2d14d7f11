"""``medprep cache info|clear [--cache-dir PATH]``: the header index that speeds up re-scans.

The index (``~/.cache/medprep/dicom-index.sqlite`` unless ``$MEDPREP_CACHE`` names another
folder) holds header facts and the *full path* of every file ``medprep scan`` has read. It is
never part of an output; ``clear`` deletes it, ``MEDPREP_CACHE=off`` or ``scan --no-cache``
keep it from being written.
"""

from __future__ import annotations

from pathlib import Path

from ..dicom.index import INDEX_FILENAME, cache_disabled, clear_index, default_cache_dir, index_files, index_path

HELP = "show or delete the DICOM header index (it stores the full paths of scanned files)"
DESCRIPTION = (
    "The header index lets `medprep scan` skip unchanged files. It stores the full path of "
    "every file scanned (folder names often carry patient names), outside any output. "
    "MEDPREP_CACHE=off or `scan --no-cache` disable it."
)


def add_arguments(p) -> None:
    p.add_argument("action", choices=("info", "clear"), help="info: where it is and how big; clear: delete it")
    p.add_argument(
        "--cache-dir",
        metavar="PATH",
        help="folder (or .sqlite file) of the index (default: $MEDPREP_CACHE or ~/.cache/medprep)",
    )


def _target(args) -> Path:
    if args.cache_dir:
        return index_path(args.cache_dir)
    return default_cache_dir() / INDEX_FILENAME


def run(args) -> int:
    path = _target(args)
    if args.action == "clear":
        removed = clear_index(args.cache_dir or True)
        print(f"removed {len(removed)} file(s) of the header index {path}" if removed else f"no header index at {path}")
        return 0
    files = index_files(path)
    state = "disabled by MEDPREP_CACHE=off" if cache_disabled() and not args.cache_dir else "enabled"
    if not files:
        print(f"header index: {path} (not created yet; {state})")
        return 0
    size = sum(f.stat().st_size for f in files)
    print(f"header index: {path} ({size / 1e6:.1f} MB in {len(files)} file(s); {state})")
    return 0
