"""``medprep export`` as a 3D Slicer batch script: a training dataset from a DICOM database.

Run it with Slicer's Python (no window, no user)::

    Slicer --no-main-window --python-script MedPrep/Batch/export.py -- \\
        --db DIR --out OUT --format nnunet [--recipe R.json] [--label-map F] ...

The options are those of ``medprep export`` (``medprep export --help``): the parser is built by
``MedPrepLib.cli.export.add_arguments`` itself, with its two positional arguments made options —
SOURCE is ``--db DIR`` (a Slicer DICOM database folder, a DICOM folder, a cohort table or an
image folder; default: the application's DICOM database, ``slicer.dicomDatabase``) and OUT is
``--out OUT``; ``--verbose`` is ``medprep --verbose``. The export is the CLI's own
(``MedPrepLib.cli.export.run``) with the argument list ``medprep export DIR OUT <the other
options as given>``, which ``medprep.json`` records: the dataset is byte for byte the one that
command writes. Progress: the CLI's bar on stderr on a terminal, else a line per step on stdout.
Exit status as ``medprep``'s: 0 done, 4 some cases quarantined, 2 refused or nothing exported
(one line on stderr saying what, where and what to do), 1 an internal error.
"""

import os
import sys

RENAMED = {
    "source": ("--db", "DIR", "; default: the DICOM database of the running Slicer (slicer.dicomDatabase)"),
    "out": ("--out", "OUT", ""),
}
"""medprep export's positional arguments -> (option here, metavar, addition to their help)."""


def _batchDir() -> str:
    script = globals().get("__file__") or sys.argv[0]
    return os.path.dirname(os.path.abspath(script))


def buildParser():
    import MedPrepBatch

    from MedPrepLib.cli import export as exportCommand

    parser = MedPrepBatch.ArgumentParser(
        prog="export.py",
        description=exportCommand.DESCRIPTION.replace("SOURCE", "--db DIR").replace("OUT", "--out OUT"),
    )
    exportCommand.add_arguments(MedPrepBatch.ExportOptions(parser, RENAMED))
    MedPrepBatch.addVerbose(parser)
    return parser


def _optionOf(parser, word: str):
    """The parser's option (action) that ``word`` (``--name`` or ``--name=value``, or an
    unambiguous abbreviation, as argparse allows) names, or None."""
    name = word.split("=", 1)[0]
    if not name.startswith("-") or name == "--":
        return None
    actions = parser._option_string_actions
    if name in actions:
        return actions[name]
    matches = {actions[o] for o in actions if o.startswith("--") and o.startswith(name)}
    return matches.pop() if len(matches) == 1 else None


def exportArguments(parser, args: list[str]) -> list[str]:
    """The arguments of the script without ``--db``, ``--out`` and ``--verbose`` (their values
    too), in the order given: what follows ``medprep export SOURCE OUT``."""
    dropped = {"source", "out", "verbose"}
    out: list[str] = []
    n = 0
    while n < len(args):
        word = args[n]
        action = _optionOf(parser, word)
        takesValue = action is not None and action.nargs != 0 and "=" not in word
        words = args[n : n + 2] if takesValue else [word]
        if action is None or action.dest not in dropped:
            out += words
        n += len(words)
    return out


def main(args: list[str]) -> int:
    import logging

    import MedPrepBatch

    from MedPrepLib.cli import export as exportCommand

    parser = buildParser()
    options = parser.parse_args(args)
    if options.source is None:
        options.source = MedPrepBatch.defaultDicomDatabase()
        if options.source is None:
            raise MedPrepBatch.UsageError(
                "give the DICOM database or folder to export with --db DIR (no Slicer DICOM database is open)"
            )
    logging.basicConfig(
        level=logging.DEBUG if options.verbose else logging.WARNING,
        format="medprep: %(levelname)s: %(message)s",
    )
    # what medprep export is given for the same dataset: the CLI's run() records it in medprep.json
    options.argv = ["export", options.source, options.out, *exportArguments(parser, args)]
    options.progress = MedPrepBatch.progressReporter()
    return exportCommand.run(options)


if __name__ == "__main__":
    if _batchDir() not in sys.path:  # Slicer's executeFile puts it first already
        sys.path.append(_batchDir())
    import MedPrepBatch

    MedPrepBatch.makeMedPrepImportable(_batchDir())
    arguments = MedPrepBatch.scriptArguments()
    MedPrepBatch.runAndExit(lambda: main(arguments), verbose=MedPrepBatch.wantsVerbose(arguments))
