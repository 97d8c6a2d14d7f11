"""Read 3D Slicer's DICOM database (CTK's ``ctkDICOM.sql``) without Slicer, read-only.

Slicer keeps an SQLite index of the DICOM files it imported: ``ctkDICOM.sql`` (tables
``Patients`` -> ``Studies`` -> ``Series`` -> ``Images``, and ``SchemaInfo`` holding the schema
version) and, beside it, ``ctkDICOMTagCache.sql`` (table ``TagCache(SOPInstanceUID, Tag,
Value)``). This module reads both schema generations Slicer has shipped:

* **0.7.0** (CTK ``Libs/DICOM/Core/Resources/dicom-schema.sql``): ``Images(SOPInstanceUID,
  Filename, SeriesInstanceUID, InsertTimestamp, ...)``;
* **0.8.x** (CTK commit 8418771, Dec 2023): ``Images`` gains a ``URL`` column, and an entry may
  have a ``Filename``, a ``URL`` or both; tag-cache keys are upper-case hex.

Columns are looked up by name (``PRAGMA table_info``), so extra display columns of later
versions do not matter. ``Images.Filename`` is absolute, or relative to the database folder;
a ``file://`` URL is used when there is no file name. The database is opened with SQLite's
``mode=ro`` URI: nothing is ever written to it.

Privacy: patients are exposed by an opaque key (``"p<row id>"``). The patient's name is
returned only by :meth:`SlicerDicomDatabase.patient_display_name`, for a caller that explicitly
shows it on screen (the Slicer panel); it must never go into files or logs.
"""

from __future__ import annotations

import os
import sqlite3
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ..errors import InputError
from ..progress import ProgressCallback

DATABASE_FILENAME = "ctkDICOM.sql"
TAG_CACHE_FILENAME = "ctkDICOMTagCache.sql"


@dataclass(frozen=True)
class PatientEntry:
    """A patient of the database, by opaque key only (no name, ID or birth date)."""

    key: str
    n_studies: int


@dataclass(frozen=True)
class StudyEntry:
    study_instance_uid: str
    patient_key: str
    study_date: str = ""
    description: str = ""
    modalities: str = ""


@dataclass(frozen=True)
class SeriesEntry:
    series_instance_uid: str
    study_instance_uid: str
    series_number: int | None = None
    description: str = ""
    modality: str = ""
    n_files: int = 0


def _open_ro(path: Path) -> sqlite3.Connection:
    uri = "file:" + urllib.parse.quote(str(path.resolve())) + "?mode=ro"
    return sqlite3.connect(uri, uri=True)


def is_slicer_database(path: str | os.PathLike) -> bool:
    """True for a ``ctkDICOM.sql`` file or a folder that holds one."""
    p = Path(path)
    return (p.is_file() and p.name == DATABASE_FILENAME) or (p.is_dir() and (p / DATABASE_FILENAME).is_file())


class SlicerDicomDatabase:
    """Read-only view of a Slicer DICOM database folder (or its ``ctkDICOM.sql`` file).

    >>> SlicerDicomDatabase("/nonexistent")  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    MedPrepLib.errors.InputError: ...
    """

    def __init__(self, path: str | os.PathLike):
        p = Path(path).expanduser()
        db_file = p / DATABASE_FILENAME if p.is_dir() else p
        if not db_file.is_file():
            raise InputError(
                "no Slicer DICOM database here",
                path=p,
                hint=f"give the database folder or its {DATABASE_FILENAME} file",
            )
        self.database_file = db_file.resolve()
        self.folder = self.database_file.parent
        try:
            self._conn = _open_ro(self.database_file)
            tables = {r[0] for r in self._conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        except sqlite3.Error as exc:
            raise InputError(f"cannot read the Slicer DICOM database ({exc})", path=db_file) from exc
        missing = {"Patients", "Studies", "Series", "Images"} - tables
        if missing:
            raise InputError(f"not a Slicer (CTK) DICOM database: tables {sorted(missing)} are missing", path=db_file)
        self.schema_version = ""
        if "SchemaInfo" in tables:
            row = self._conn.execute("SELECT Version FROM SchemaInfo").fetchone()
            self.schema_version = str(row[0]) if row else ""
        self._image_columns = {r[1] for r in self._conn.execute("PRAGMA table_info(Images)")}
        self._tag_cache: sqlite3.Connection | None = None
        tag_file = self.folder / TAG_CACHE_FILENAME
        if tag_file.is_file():
            try:
                self._tag_cache = _open_ro(tag_file)
                self._tag_cache.execute("SELECT 1 FROM TagCache LIMIT 1").fetchall()
            except sqlite3.Error:
                self._tag_cache = None

    # -- the hierarchy ------------------------------------------------------------------------
    def patients(self) -> list[PatientEntry]:
        """All patients, by opaque key, in database order."""
        rows = self._conn.execute(
            "SELECT p.UID, count(s.StudyInstanceUID) FROM Patients p "
            "LEFT JOIN Studies s ON s.PatientsUID = p.UID GROUP BY p.UID ORDER BY p.UID"
        ).fetchall()
        return [PatientEntry(key=f"p{uid}", n_studies=int(n)) for uid, n in rows]

    def patient_display_name(self, patient: PatientEntry | str) -> str:
        """The patient's name, for on-screen display only (never write it to files or logs)."""
        row = self._conn.execute("SELECT PatientsName FROM Patients WHERE UID = ?", (_patient_uid(patient),)).fetchone()
        return str(row[0] or "") if row else ""

    def studies(self, patient: PatientEntry | str | None = None) -> list[StudyEntry]:
        """Studies of one patient (or all), ordered by study date then UID."""
        sql = "SELECT StudyInstanceUID, PatientsUID, StudyDate, StudyDescription, ModalitiesInStudy FROM Studies"
        args: tuple = ()
        if patient is not None:
            sql += " WHERE PatientsUID = ?"
            args = (_patient_uid(patient),)
        rows = self._conn.execute(sql + " ORDER BY StudyDate, StudyInstanceUID", args).fetchall()
        return [StudyEntry(uid, f"p{puid}", _s(date), _s(desc), _s(mods)) for uid, puid, date, desc, mods in rows]

    def series(self, study: StudyEntry | str | None = None) -> list[SeriesEntry]:
        """Series of one study (or all), ordered by series number, with their file counts."""
        sql = (
            "SELECT se.SeriesInstanceUID, se.StudyInstanceUID, se.SeriesNumber, se.SeriesDescription, se.Modality, "
            "(SELECT count(*) FROM Images i WHERE i.SeriesInstanceUID = se.SeriesInstanceUID) FROM Series se"
        )
        args: tuple = ()
        if study is not None:
            sql += " WHERE se.StudyInstanceUID = ?"
            args = (study.study_instance_uid if isinstance(study, StudyEntry) else str(study),)
        rows = self._conn.execute(sql + " ORDER BY se.SeriesNumber, se.SeriesInstanceUID", args).fetchall()
        return [
            SeriesEntry(uid, st, _int_or_none(num), _s(desc), _s(mod), int(n)) for uid, st, num, desc, mod, n in rows
        ]

    def files(self, series: SeriesEntry | str) -> list[str]:
        """Absolute paths of the files of a series (entries with only a non-file URL are left out)."""
        uid = series.series_instance_uid if isinstance(series, SeriesEntry) else str(series)
        has_url = "URL" in self._image_columns
        cols = "Filename, URL" if has_url else "Filename, NULL"
        rows = self._conn.execute(
            f"SELECT {cols} FROM Images WHERE SeriesInstanceUID = ? ORDER BY Filename", (uid,)
        ).fetchall()
        out = []
        for filename, url in rows:
            path = self.resolve(filename, url)
            if path is not None:
                out.append(path)
        return out

    def all_files(self) -> dict[str, list[str]]:
        """Files of every series, keyed by SeriesInstanceUID."""
        return {s.series_instance_uid: self.files(s) for s in self.series()}

    def resolve(self, filename: str | None, url: str | None = None) -> str | None:
        """Absolute path of an ``Images`` entry: Filename (absolute or relative to the database
        folder), else a ``file://`` URL; None when the entry has neither."""
        if filename:
            p = Path(filename)
            return str(p if p.is_absolute() else self.folder / p)
        if url and url.startswith("file:"):
            return urllib.request.url2pathname(urllib.parse.urlparse(url).path)
        return None

    # -- tag cache ------------------------------------------------------------------------------
    def cached_tag(self, sop_instance_uid: str, tag: str) -> str | None:
        """A value from ``ctkDICOMTagCache.sql`` (tag as ``"gggg,eeee"``, any case); None if absent."""
        if self._tag_cache is None:
            return None
        row = self._tag_cache.execute(
            "SELECT Value FROM TagCache WHERE SOPInstanceUID = ? AND upper(Tag) = ?", (sop_instance_uid, tag.upper())
        ).fetchone()
        return None if row is None else row[0]

    # -- lifetime -------------------------------------------------------------------------------
    def close(self) -> None:
        self._conn.close()
        if self._tag_cache is not None:
            self._tag_cache.close()

    def __enter__(self) -> SlicerDicomDatabase:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _patient_uid(patient: PatientEntry | str) -> int:
    key = patient.key if isinstance(patient, PatientEntry) else str(patient)
    try:
        return int(key.lstrip("p"))
    except ValueError:
        raise InputError(f"unknown patient key {key!r}", hint="use a key returned by patients()") from None


def _s(value) -> str:
    return "" if value is None else str(value)


def _int_or_none(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def scan_database(
    db: SlicerDicomDatabase | str | os.PathLike,
    series_uids: list[str] | None = None,
    *,
    cache: str | bool | None = True,
    workers: int | None = None,
    progress: ProgressCallback | None = None,
):
    """Header-scan and group the files of a Slicer DICOM database (all series, or the given ones).

    The files go through the same reading and grouping as :func:`MedPrepLib.dicom.scan.scan`;
    files the database lists but that are missing on disk are reported as skipped
    (``unreadable``). Returns a :class:`~MedPrepLib.dicom.scan.ScanResult`.
    """
    from .scan import scan_files
    from .stack import Skipped

    own = not isinstance(db, SlicerDicomDatabase)
    database = SlicerDicomDatabase(db) if own else db
    try:
        uids = series_uids if series_uids is not None else [s.series_instance_uid for s in database.series()]
        files: list[str] = []
        for uid in uids:
            files.extend(database.files(uid))
    finally:
        if own:
            database.close()
    present = [f for f in files if os.path.isfile(f)]
    missing = [
        Skipped(f, "unreadable", "listed in the Slicer DICOM database but missing on disk")
        for f in files
        if not os.path.isfile(f)
    ]
    result = scan_files(present, cache=cache, workers=workers, progress=progress)
    result.skipped.extend(missing)
    result.n_files += len(missing)
    return result
