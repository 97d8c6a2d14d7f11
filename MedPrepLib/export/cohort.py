"""A cohort table -> the cases to export: one row per case.

The table is a CSV file (``.csv``, comma-separated, UTF-8 with or without a BOM; ``.tsv`` for
tab-separated) or a JSON file (``.json``) holding a list of objects with the same keys. Columns:

``image`` or ``image.<channel>``
    The image of the case: a DICOM series folder (or file) or an image file (NIfTI, NRRD,
    MHA...). Several channels as several columns ``image.T1``, ``image.FLAIR``, named after the
    part after the dot, in column order; ``image`` and ``image.<channel>`` do not mix.
``label`` (optional)
    The label file; an empty cell is an unlabelled case (it goes to the test part). A file
    ending in ``.seg.nrrd`` is a Slicer segmentation, valued through the dataset's label table by
    its segment names, as in an image folder (:mod:`.image_folder`, :mod:`.object_labels`); a
    table whose labels mix segmentations and label images is refused.
``patient`` (optional)
    Any text that is the same for all rows of one patient (it keeps them in one split and fold
    and is never written, except to the ``--key-file``). Without the column each row is its own
    patient, with one warning for the table.
``split`` (optional)
    ``train``, ``test`` or empty (the split decides); ``train`` needs a label.
any other column
    Kept as the case's ``columns`` (for ``--stratify COLUMN``).

Relative paths are read from the table's folder. Rows are numbered from 1 in table order, the
header not counted ("row 7" is the seventh case row, line 8 of a CSV); blank rows are skipped
but counted. A row whose image or label does not exist is left out with its reason
(:class:`~.cases.Exclusion` ``"row 7"``); a table that cannot be read as asked — no image
column, an empty image cell, an unknown split, a file named in two rows, an empty patient cell —
is an :class:`~MedPrepLib.errors.ExportError` naming the row and column. Messages name rows
and columns, never paths (the path is the error's ``detail``, shown with ``--verbose``).

**The channel name of an ``image`` column** (nnU-Net reads a channel named ``CT`` as CT and
normalises it with the dataset's HU statistics, z-scores any other): ``channel_name`` when
given (``--channel-name CT``); otherwise the DICOM Modality (``CT``, ``MR``...) when every row's
image is DICOM of that one modality; otherwise ``image``, with a warning (image files carry no
modality). A case's ``modality`` is its first channel's DICOM Modality, or the modality its
channel name states (:func:`~.inputs.modality_of_channel`).

The key of a case is its image paths as written (normalised); ``key_row`` is (the ``patient``
value or "", "", the image cells as written joined by ``;``).
"""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Mapping
from pathlib import Path

from ..errors import ExportError
from ..imageio import is_image_file
from .cases import SPLITS, Exclusion, SourceCase, SourceCases, check_channel_names
from .inputs import fingerprint, input_loader, modality_of_channel, unnamed_channel_warning

IMAGE = "image"
RESERVED = ("label", "patient", "split")
TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t", ".json": None}
DEFAULT_CHANNEL = "image"
NO_PATIENT_WARNING = (
    "the cohort table has no 'patient' column: each row is taken as its own patient, so two studies of one "
    "patient could land in different folds or in both train and test; add a 'patient' column"
)


def read_cohort(path: str | os.PathLike, *, channel_name: str | None = None, segment_table=None) -> SourceCases:
    """The cases of a cohort table (CSV or JSON; see the module docstring).

    ``channel_name`` names the channel of a table with a single ``image`` column;
    ``segment_table`` is the ``--label-map`` for ``.seg.nrrd`` labels (see
    :func:`~.object_labels.with_segmentation_files`). Nothing is loaded: images and labels are
    picklable loaders; only the header of one DICOM file per row is read (its modality), and the
    segment names of ``.seg.nrrd`` labels.
    """
    path = Path(path)
    header, rows = read_table(path)
    channels = _image_columns(header, path)
    other = [c for c in header if c not in channels.values() and c not in RESERVED]
    folder = path.parent
    out = SourceCases()
    if "patient" not in header:
        out.warnings.append(NO_PATIENT_WARNING)
    seen: dict[str, tuple[int, str]] = {}
    found = []
    label_files: dict[tuple, tuple[str, str]] = {}  # case key -> (label path, row)
    for number, row in rows:
        case = _row_case(number, row, channels, other, folder, seen, path)
        if isinstance(case, Exclusion):
            out.excluded.append(case)
        else:
            case_fields, images, label, modality = case
            found.append((case_fields, images, modality))
            if label is not None:
                label_files[case_fields["key"]] = (label, f"row {number}")
    names = list(channels)
    if list(channels.values()) == [IMAGE]:
        names, warning = _single_channel_name(channel_name, [c[2] for c in found])
        if warning:
            out.warnings.append(warning)
    elif channel_name is not None:
        raise ExportError(
            "a channel name is for a table with one 'image' column; this table names its channels in the header",
            hint="leave out the channel name, or rename the columns image.<channel>",
        )
    for case_fields, images, modality in found:
        loaders = {name: input_loader(p, f"channel {name}") for name, p in zip(names, images)}
        modality = modality or modality_of_channel(names[0])
        out.cases.append(SourceCase(images=loaders, modality=modality, **case_fields))
    from .object_labels import with_segmentation_files

    return with_segmentation_files(out, label_files, segment_table, what="labels of the 'label' column")


def read_table(path: Path) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """The header and the non-blank rows (row number from 1, column -> text) of a CSV or JSON table."""
    suffix = path.suffix.lower()
    if suffix not in TABLE_SUFFIXES:
        raise ExportError(
            f"a cohort table is a {', '.join(TABLE_SUFFIXES)} file, not '{suffix or path.name}'", detail=str(path)
        )
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ExportError("the cohort table does not exist", detail=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ExportError(f"cannot read the cohort table: {exc}", detail=str(path)) from None
    if suffix == ".json":
        header, rows = _json_rows(text, path)
    else:
        header, rows = _csv_rows(text, TABLE_SUFFIXES[suffix], path)
    return header, [(n, row) for n, row in enumerate(rows, 1) if any(v.strip() for v in row.values())]


def _csv_rows(text: str, delimiter: str, path: Path) -> tuple[list[str], list[dict[str, str]]]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        lines = list(reader)
    except csv.Error as exc:
        raise ExportError(f"the cohort table is not valid CSV: {exc}", detail=str(path)) from None
    if not lines:
        raise ExportError(
            "the cohort table is empty", hint="the first line names the columns: image,label,...", detail=str(path)
        )
    header = [name.strip() for name in lines[0]]
    _check_header(header, path)
    rows = []
    for n, values in enumerate(lines[1:], 1):
        if len(values) > len(header) and any(v.strip() for v in values[len(header) :]):
            raise ExportError(
                f"row {n} of the cohort table has {len(values)} values for {len(header)} columns",
                hint="quote values that hold the separator",
                detail=str(path),
            )
        rows.append({name: (values[k] if k < len(values) else "") for k, name in enumerate(header)})
    return header, rows


def _json_rows(text: str, path: Path) -> tuple[list[str], list[dict[str, str]]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ExportError(
            f"the cohort table is not valid JSON: {exc.msg} at line {exc.lineno}", detail=str(path)
        ) from None
    if not isinstance(data, list) or not data or not all(isinstance(r, dict) for r in data):
        raise ExportError("a JSON cohort table is a non-empty list of objects, one per case", detail=str(path))
    header = [str(k).strip() for k in data[0]]
    _check_header(header, path)
    rows = []
    for n, obj in enumerate(data, 1):
        keys = [str(k).strip() for k in obj]
        if set(keys) != set(header):
            missing, extra = sorted(set(header) - set(keys)), sorted(set(keys) - set(header))
            raise ExportError(
                f"row {n} of the cohort table has other keys than row 1 (missing: {', '.join(missing) or 'none'}; "
                f"extra: {', '.join(extra) or 'none'})",
                hint='every object needs the same keys; use "" for an empty value',
                detail=str(path),
            )
        rows.append({str(k).strip(): _cell(v, n, str(k), path) for k, v in obj.items()})
    return header, rows


def _cell(value: object, row: int, column: str, path: Path) -> str:
    if value is None:
        return ""
    if isinstance(value, bool) or isinstance(value, (dict, list)):
        raise ExportError(f"row {row}, column {column}: a value is text or a number", detail=str(path))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _check_header(header: list[str], path: Path) -> None:
    blank = [n for n, name in enumerate(header, 1) if not name]
    if blank:
        raise ExportError(f"column {blank[0]} of the cohort table has no name", detail=str(path))
    repeated = sorted({name for name in header if header.count(name) > 1})
    if repeated:
        raise ExportError(f"the cohort table has two columns named {repeated[0]!r}", detail=str(path))


def _image_columns(header: list[str], path: Path) -> dict[str, str]:
    """Channel name -> column: ``{"image": "image"}`` or ``{"T1": "image.T1", ...}``."""
    columns = [c for c in header if c == IMAGE or c.startswith(IMAGE + ".")]
    if not columns:
        raise ExportError(
            f"the cohort table has no 'image' column (columns: {', '.join(header)})",
            hint="name the image column 'image', or 'image.<channel>' for each of several channels",
            detail=str(path),
        )
    if IMAGE in columns and len(columns) > 1:
        raise ExportError(
            "the cohort table has both an 'image' column and 'image.<channel>' columns",
            hint="one channel: 'image'; several: 'image.T1', 'image.FLAIR', ...",
            detail=str(path),
        )
    channels = {(c[len(IMAGE) + 1 :].strip() if c != IMAGE else IMAGE): c for c in columns}
    try:
        check_channel_names(list(channels))
    except ExportError as exc:
        raise ExportError(f"the cohort table's image columns: {exc.message}", hint=exc.hint, detail=str(path)) from None
    return channels


def _row_case(
    number: int,
    row: Mapping[str, str],
    channels: Mapping[str, str],
    other: list[str],
    folder: Path,
    seen: dict[str, tuple[int, str]],
    table: Path,
):
    """``(SourceCase fields, image paths, label path or None, DICOM modality)`` of one row, or its Exclusion."""
    where = f"row {number}"
    written = {}
    for column in [*channels.values(), "label"]:
        cell = row.get(column, "").strip()
        if not cell:
            if column != "label":
                raise ExportError(
                    f"{where}, column {column}: no image", hint="every row needs its image", detail=str(table)
                )
            continue
        full = os.path.normpath(os.path.join(folder, cell))
        if full in seen:
            first, first_column = seen[full]
            raise ExportError(
                f"rows {first} and {number} name the same file (columns {first_column} and {column})",
                hint="each scan is one case; remove the repeated row",
                detail=full,
            )
        seen[full] = (number, column)
        written[column] = cell
    split = row.get("split", "").strip().lower() or None
    if split not in (None, *SPLITS):
        raise ExportError(
            f"{where}, column split: {row['split'].strip()!r} is not 'train', 'test' or empty", detail=str(table)
        )
    if split == "train" and "label" not in written:
        raise ExportError(
            f"{where} is marked 'train' but has no label", hint="give it a label or mark it 'test'", detail=str(table)
        )
    patient = row.get("patient", "").strip()
    if "patient" in row and not patient:
        raise ExportError(
            f"{where}, column patient: empty",
            hint="give every row its patient (any text, the same for one patient)",
            detail=str(table),
        )
    full = {column: os.path.normpath(os.path.join(folder, cell)) for column, cell in written.items()}
    for column, p in full.items():
        if not os.path.exists(p):
            what = "label" if column == "label" else "image"
            return Exclusion(where, f"column {column}: the {what} file or folder does not exist")
    images = [full[c] for c in channels.values()]
    key = tuple(os.path.normpath(written[c]) for c in channels.values())
    columns = {c: row.get(c, "").strip() for c in other}
    case_fields = {
        "key": key,
        "patient": patient or "\x1f".join(key),
        "label": input_loader(full["label"], "the label") if "label" in full else None,
        "split": split,
        "columns": columns,
        "key_row": (patient, "", ";".join(written[c] for c in channels.values())),
        "fingerprint": fingerprint(
            [*images, *([full["label"]] if "label" in full else [])],
            {"channels": list(channels), "split": split, "patient": patient, "columns": columns},
        ),
    }
    return case_fields, images, full.get("label"), _dicom_modality(images[0])


def _dicom_modality(path: str, tries: int = 8) -> str:
    """The Modality of the first readable DICOM file of a folder (or of a DICOM file); "" for
    image files and when none of the first ``tries`` files is a DICOM image."""
    from ..dicom.header import SkipFile, read_header

    if os.path.isfile(path):
        if is_image_file(path):
            return ""
        candidates = [path]
    else:
        candidates = []
        for root, dirs, files in os.walk(path):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            candidates += [
                os.path.join(root, f) for f in sorted(files) if not f.startswith(".") and not is_image_file(f)
            ]
            if len(candidates) >= tries:
                break
    for candidate in candidates[:tries]:
        try:
            return read_header(candidate).modality.strip().upper()
        except (SkipFile, OSError):
            continue
    return ""


def _single_channel_name(channel_name: str | None, modalities: list[str]) -> tuple[list[str], str | None]:
    """The name of the one channel of an ``image`` column, and a warning when it had to be guessed."""
    if channel_name is not None:
        return check_channel_names([channel_name.strip()]), None
    found = sorted(set(modalities))
    if len(found) == 1 and found[0]:
        return [found[0]], None
    if len(found) > 1 and all(found):
        why = f"the rows hold several modalities ({', '.join(found)})"
    else:
        why = "image files carry no modality"
    return [DEFAULT_CHANNEL], unnamed_channel_warning(DEFAULT_CHANNEL, why)
