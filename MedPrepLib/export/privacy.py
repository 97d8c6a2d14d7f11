"""What identifies a patient never reaches a dataset: pseudonyms, the sidecar allow-list, the key file.

* :func:`assign_case_ids` numbers cases ``<prefix>_0001``, ``<prefix>_0002`` ... from a sorted
  stable key (for DICOM, (PatientID, StudyInstanceUID)), so the same inputs give the same ids in
  any order. The ids are ranks, never text taken from the key. Without a secret the rank follows
  the sorted keys, so someone who already knows which patients are in the cohort could match
  ids to patients by rank; with a ``secret`` (kept outside the dataset) the rank follows
  HMAC-SHA256(secret, key) and cannot be guessed.
* :func:`salted_token` is the only way an original identifier (a UID) may appear in an output:
  keyed with a secret kept outside the dataset, so that no one can recompute it from the UID.
* :func:`sidecar` turns a DICOM header (or any mapping of DICOM keywords) into the allow-listed
  acquisition facts (modality, manufacturer, model, field strength, kVp, kernel, slice
  thickness, spacing; age in years and sex only when asked). Nothing else gets through, and an
  allowed free-text value that contains the patient's name, ID or birth date is dropped.
* :func:`write_key_file` writes the re-identification table (CSV: case, patient, study, source)
  where the user says, and refuses any place inside the dataset folder.

>>> ids = assign_case_ids([("P2", "1.2.3"), ("P1", "1.2.9"), ("P1", "1.2.4")])
>>> ids[("P1", "1.2.4")], ids[("P1", "1.2.9")], ids[("P2", "1.2.3")]
('case_0001', 'case_0002', 'case_0003')
>>> sidecar({"Modality": "CT", "KVP": "120", "PatientName": "Doe^Jane", "PatientAge": "047Y"})
{'modality': 'CT', 'kvp': 120.0}
"""

from __future__ import annotations

import csv
import datetime
import hashlib
import hmac
import io
import json
import os
import re
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import astuple, dataclass, fields
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_text
from ..errors import ExportError

MIN_SECRET_BYTES = 16
"""A shorter secret could be found by trying every value: patient IDs come from small spaces."""

_PREFIX = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*$")

Key = Hashable
"""A case's stable key: a string, or a tuple of strings (patient, study)."""


def _secret_bytes(secret: str | bytes) -> bytes:
    data = secret.encode("utf-8") if isinstance(secret, str) else bytes(secret)
    if len(data) < MIN_SECRET_BYTES:
        raise ExportError(
            f"the pseudonym secret has {len(data)} bytes; at least {MIN_SECRET_BYTES} are needed",
            hint="make one with: python -c \"import secrets; print(secrets.token_hex(32))\" and keep it outside the dataset",
        )
    return data


def _canonical(key: Key) -> bytes:
    """The bytes of a key: the same for the same key in every run and on every platform."""
    parts = list(key) if isinstance(key, tuple) else [key]
    return json.dumps([str(p) for p in parts], ensure_ascii=False).encode("utf-8")


def salted_token(value: str, secret: str | bytes, *, length: int = 16) -> str:
    """HMAC-SHA256 of ``value`` under ``secret``, as ``length`` hex digits.

    The one form in which an original identifier may appear in a dataset: without the secret
    (kept outside the dataset) no one can recompute it from the identifier.

    >>> salted_token("1.2.840.113619.2.55", "a secret of sixteen+ bytes")[:8]
    'f0705986'
    """
    if not 8 <= length <= 64:
        raise ExportError(f"token length {length} is not between 8 and 64 hex digits")
    return hmac.new(_secret_bytes(secret), _canonical(value), hashlib.sha256).hexdigest()[:length]


def assign_case_ids(
    keys: Iterable[Key], *, prefix: str = "case", secret: str | bytes | None = None, digits: int = 4
) -> dict[Key, str]:
    """Case ids ``<prefix>_0001`` ... for the given case keys, the same whatever their order.

    The numbering follows the sorted keys (tuples compare part by part), or with ``secret`` the
    sorted HMAC-SHA256 of each key. ``digits`` is the minimum width; more are used when there
    are more cases, so ids always sort like their numbers. Two equal keys are an error (two
    cases would get one id).
    """
    if not isinstance(prefix, str) or not _PREFIX.match(prefix):
        raise ExportError(
            f"case id prefix {prefix!r} is not usable in file names",
            hint="use letters, digits and '-', starting with a letter or digit",
        )
    keys = list(keys)
    canonical = [_canonical(k) for k in keys]
    if len(set(canonical)) != len(canonical):
        seen: set[bytes] = set()
        repeats = sum(1 for c in canonical if c in seen or seen.add(c))
        raise ExportError(f"{repeats} case key(s) repeat another; each case needs its own key (patient, study)")
    if secret is not None:
        key_bytes = _secret_bytes(secret)
        order = sorted(range(len(keys)), key=lambda n: hmac.new(key_bytes, canonical[n], hashlib.sha256).digest())
    else:
        order = sorted(range(len(keys)), key=lambda n: canonical[n])
    width = max(digits, len(str(len(keys))))
    return {keys[n]: f"{prefix}_{rank:0{width}d}" for rank, n in enumerate(order, start=1)}


# --- the sidecar allow-list ----------------------------------------------------------------------

_TEXT_FIELDS = {  # output key -> DICOM keyword, free-text values
    "modality": "Modality",
    "manufacturer": "Manufacturer",
    "model": "ManufacturerModelName",
    "convolution_kernel": "ConvolutionKernel",
}
_NUMBER_FIELDS = {  # output key -> DICOM keyword, numbers in the unit of the key
    "field_strength_t": "MagneticFieldStrength",
    "kvp": "KVP",
    "slice_thickness_mm": "SliceThickness",
}
_IDENTITY_KEYWORDS = (
    "PatientName", "PatientID", "OtherPatientIDs", "OtherPatientNames", "PatientBirthDate",
    "PatientBirthName", "PatientMotherBirthName", "AccessionNumber", "InstitutionName",
    "InstitutionAddress", "ReferringPhysicianName", "PerformingPhysicianName", "OperatorsName",
    "StationName", "IssuerOfPatientID",
)  # fmt: skip
"""Header values that identify a patient or a place: an allowed value containing one is dropped."""

SIDECAR_FIELDS = (
    *_TEXT_FIELDS, *_NUMBER_FIELDS, "spacing_mm", "pixel_spacing_mm", "age_years", "sex",
)  # fmt: skip
"""Every key :func:`sidecar` may write, and no other."""

AGE_CEILING = 90
"""Ages of 90 and over are written as 90 (HIPAA Safe Harbor: the oldest ages identify people)."""


def _get(meta: Any, keyword: str) -> Any:
    try:
        value = meta.get(keyword)
    except (KeyError, AttributeError, TypeError):
        return None
    return getattr(value, "value", value)  # a pydicom DataElement -> its value


def _texts(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (bytes, bytearray)):
        value = bytes(value).decode("latin-1", "replace")
    if isinstance(value, str):
        return [value]
    if isinstance(value, (Sequence, set, frozenset)):  # lists, pydicom MultiValue (not PersonName: str() it)
        return [t for v in value for t in _texts(v)]
    return [str(value)]


def _identity_tokens(meta: Any) -> set[str]:
    """Lower-case pieces (3+ characters) of the identifying values of the header."""
    tokens: set[str] = set()
    for keyword in _IDENTITY_KEYWORDS:
        for text in _texts(_get(meta, keyword)):
            text = text.strip().lower()
            if len(text) >= 3:
                tokens.add(text)
            tokens.update(p for p in re.split(r"[\^=\s,.]+", text) if len(p) >= 3)
    return tokens


def _number(value: Any) -> float | None:
    if isinstance(value, (list, tuple)) or (not isinstance(value, str) and isinstance(value, Sequence)):
        value = value[0] if len(value) else None
    try:
        number = float(str(value).strip()) if value is not None else None
    except ValueError:
        return None
    return number if number is not None and number == number and abs(number) != float("inf") else None


def _date(text: Any) -> datetime.date | None:
    text = "".join(_texts(text)).strip()
    try:
        return datetime.datetime.strptime(text[:8], "%Y%m%d").date() if len(text) >= 8 else None
    except ValueError:
        return None


def age_in_years(meta: Any) -> int | None:
    """The patient's age in whole years from PatientAge (``047Y``, ``018M``, ``003W``, ``010D``)
    or else from PatientBirthDate and the study date; capped at :data:`AGE_CEILING`."""
    text = "".join(_texts(_get(meta, "PatientAge"))).strip().upper()
    years: float | None = None
    match = re.fullmatch(r"(\d{1,3})\s*([DWMY]?)", text)
    if match:
        per_year = {"D": 365.25, "W": 365.25 / 7, "M": 12.0, "Y": 1.0, "": 1.0}[match[2]]
        years = int(match[1]) / per_year
    else:
        born = _date(_get(meta, "PatientBirthDate"))
        seen = next(
            (d for k in ("StudyDate", "AcquisitionDate", "SeriesDate") if (d := _date(_get(meta, k)))), None
        )
        if born and seen and seen >= born:
            years = seen.year - born.year - ((seen.month, seen.day) < (born.month, born.day))
    if years is None:
        return None
    return min(int(years), AGE_CEILING)


def sidecar(
    meta: Any,
    *,
    spacing: Sequence[float] | None = None,
    include_age: bool = False,
    include_sex: bool = False,
) -> dict[str, Any]:
    """The allow-listed acquisition facts of one case, from a mapping of DICOM keywords.

    ``meta`` is a pydicom ``Dataset`` or any mapping with ``.get(keyword)`` (``{"Modality":
    "CT", ...}``). Keys written (only those with a value): ``modality``, ``manufacturer``,
    ``model``, ``convolution_kernel`` (text), ``field_strength_t`` (tesla), ``kvp``,
    ``slice_thickness_mm``, ``spacing_mm`` (the exported voxel spacing, (x, y, z) mm, when
    ``spacing`` is given) or else ``pixel_spacing_mm`` (the in-plane DICOM PixelSpacing as
    (x, y) mm: column spacing first), and with ``include_age`` ``age_years`` (whole years, 90
    for 90 and over) and with ``include_sex`` ``sex`` (``M``, ``F`` or ``O``).

    A free-text value containing a piece (3+ characters) of the header's identifying values
    (patient name and IDs, birth date, accession number, institution, physicians, station) is
    left out: vendors and sites sometimes write those into model or kernel fields.
    """
    identity = _identity_tokens(meta)
    out: dict[str, Any] = {}
    for key, keyword in _TEXT_FIELDS.items():
        text = "\\".join(t.strip() for t in _texts(_get(meta, keyword)) if t.strip())
        if text and not any(token in text.lower() for token in identity):
            out[key] = text
    for key, keyword in _NUMBER_FIELDS.items():
        number = _number(_get(meta, keyword))
        if number is not None:
            out[key] = number
    if spacing is not None:
        out["spacing_mm"] = [float(s) for s in spacing]
    else:
        pixel = _get(meta, "PixelSpacing")
        values = [_number(v) for v in pixel] if isinstance(pixel, Iterable) and not isinstance(pixel, str) else []
        if len(values) == 2 and all(v is not None for v in values):
            out["pixel_spacing_mm"] = [values[1], values[0]]  # DICOM gives (row, column) spacing
    if include_age and (age := age_in_years(meta)) is not None:
        out["age_years"] = age
    if include_sex:
        sex = "".join(_texts(_get(meta, "PatientSex"))).strip().upper()
        if sex in ("M", "F", "O"):
            out["sex"] = sex
    return out


# --- the key file --------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyRow:
    """One line of the key file: the case id and where it came from.

    ``patient`` is the source PatientID (or the cohort table's ``patient`` value), ``study`` the
    StudyInstanceUID (empty when the source has none), ``source`` the input path.
    """

    case: str
    patient: str
    study: str
    source: str


KEY_FILE_COLUMNS = tuple(f.name for f in fields(KeyRow))


def _inside(path: Path, folder: Path) -> bool:
    path = Path(os.path.normcase(os.path.realpath(path)))
    folder = Path(os.path.normcase(os.path.realpath(folder)))
    return path == folder or folder in path.parents


def check_key_file_path(path: str | os.PathLike, dataset_folder: str | os.PathLike) -> Path:
    """Refuse a key-file path inside the dataset folder (symbolic links followed)."""
    path = Path(path)
    if _inside(path, Path(dataset_folder)):
        raise ExportError(
            "the key file would be inside the dataset folder, which is shared with the dataset",
            path=path,
            hint="write it somewhere only you can read, outside the dataset (--key-file PATH)",
        )
    if not path.parent.is_dir():
        raise ExportError(
            "the key file's folder does not exist", path=path.parent, hint="make the folder first, outside the dataset"
        )
    return path


def write_key_file(
    path: str | os.PathLike,
    rows: Iterable[KeyRow],
    *,
    dataset_folder: str | os.PathLike,
    overwrite: bool = False,
) -> Path:
    """Write the key file (CSV with columns case, patient, study, source; rows sorted by case)
    atomically at ``path``, which must not be inside ``dataset_folder``."""
    path = check_key_file_path(path, dataset_folder)
    rows = sorted(rows, key=lambda r: r.case)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(KEY_FILE_COLUMNS)
    writer.writerows(astuple(r) for r in rows)
    return atomic_write_text(path, buffer.getvalue(), overwrite=overwrite)



# --- texts written to a dataset ------------------------------------------------------------------

_STACK_ID = re.compile(r"\bs[0-9a-f]{10}\b")
_UID = re.compile(r"\b[0-2](?:\.(?:0|[1-9]\d*)){4,}\b")


def scrub(text: str) -> str:
    """A message as a dataset may hold it: stack ids (hashes of SeriesInstanceUIDs, see
    :func:`MedPrepLib.dicom.stack.stack_id`) and DICOM UIDs taken out, since no original UID may
    reach a dataset, not even hashed.

    >>> scrub("s0123456789: gantry tilt of 12 degrees")
    'gantry tilt of 12 degrees'
    >>> scrub("stack s0123456789 (CT, series 2) of study 1; taken: sabcdefabcd (20 slices)")
    'stack (CT, series 2) of study 1; taken: a stack (20 slices)'
    >>> scrub("frame of reference 1.2.840.113619.2.55.3 differs")
    'frame of reference <UID> differs'
    """
    text = re.sub(r"^s[0-9a-f]{10}: ", "", text)
    text = re.sub(r"\bstack s[0-9a-f]{10}\b ?", "stack ", text)
    text = _STACK_ID.sub("a stack", text)
    return _UID.sub("<UID>", text).replace("stack  ", "stack ")
