"""A Slicer DICOM database (``ctkDICOM.sql``) over existing DICOM files, built from CTK's schema.

The schema is CTK's ``Libs/DICOM/Core/Resources/dicom-schema.sql`` (0.7.0; 0.8.x adds ``URL`` to
``Images``), as Slicer writes it when files are imported; :func:`index_folder` fills it the way
Slicer's import does — one row per patient (name + ID), study, series and file — from the
files' own headers. Tests use it to walk and export a database without the application.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

TABLES_070 = """
CREATE TABLE SchemaInfo (Version VARCHAR(1024) NOT NULL);
CREATE TABLE Images (
  SOPInstanceUID VARCHAR(64) NOT NULL, Filename VARCHAR(1024) NOT NULL, SeriesInstanceUID VARCHAR(64) NOT NULL,
  InsertTimestamp VARCHAR(20) NOT NULL, DisplayedFieldsUpdatedTimestamp DATETIME NULL, PRIMARY KEY (SOPInstanceUID));
CREATE TABLE Patients (
  UID INTEGER PRIMARY KEY AUTOINCREMENT, PatientsName VARCHAR(255) NULL, PatientID VARCHAR(255) NULL,
  PatientsBirthDate DATE NULL, PatientsBirthTime TIME NULL, PatientsSex VARCHAR(1) NULL, PatientsAge VARCHAR(10) NULL,
  PatientsComments VARCHAR(255) NULL, InsertTimestamp VARCHAR(20) NOT NULL, DisplayedPatientsName VARCHAR(255) NULL,
  DisplayedNumberOfStudies INT NULL, DisplayedLastStudyDate DATE NULL, DisplayedFieldsUpdatedTimestamp DATETIME NULL);
CREATE TABLE Studies (
  StudyInstanceUID VARCHAR(64) NOT NULL, PatientsUID INT NOT NULL, StudyID VARCHAR(255) NULL, StudyDate DATE NULL,
  StudyTime VARCHAR(20) NULL, StudyDescription VARCHAR(255) NULL, AccessionNumber VARCHAR(255) NULL,
  ModalitiesInStudy VARCHAR(255) NULL, InstitutionName VARCHAR(255) NULL, ReferringPhysician VARCHAR(255) NULL,
  PerformingPhysiciansName VARCHAR(255) NULL, InsertTimestamp VARCHAR(20) NOT NULL,
  DisplayedNumberOfSeries INT NULL, DisplayedFieldsUpdatedTimestamp DATETIME NULL, PRIMARY KEY (StudyInstanceUID));
CREATE TABLE Series (
  SeriesInstanceUID VARCHAR(64) NOT NULL, StudyInstanceUID VARCHAR(64) NOT NULL, SeriesNumber INT NULL,
  SeriesDate DATE NULL, SeriesTime VARCHAR(20) NULL, SeriesDescription VARCHAR(255) NULL, Modality VARCHAR(20) NULL,
  BodyPartExamined VARCHAR(255) NULL, FrameOfReferenceUID VARCHAR(64) NULL, AcquisitionNumber INT NULL,
  ContrastAgent VARCHAR(255) NULL, ScanningSequence VARCHAR(45) NULL, EchoNumber INT NULL, TemporalPosition INT NULL,
  InsertTimestamp VARCHAR(20) NOT NULL, DisplayedCount INT NULL, DisplayedSize VARCHAR(20) NULL,
  DisplayedNumberOfFrames INT NULL, DisplayedFieldsUpdatedTimestamp DATETIME NULL, PRIMARY KEY (SeriesInstanceUID));
CREATE UNIQUE INDEX ImagesFilenameIndex ON Images (Filename);
CREATE INDEX ImagesSeriesIndex ON Images (SeriesInstanceUID);
CREATE TABLE Directories (Dirname VARCHAR(1024), PRIMARY KEY (Dirname));
"""

IMAGES_081 = """
CREATE TABLE Images (
  SOPInstanceUID VARCHAR(64) NOT NULL, Filename VARCHAR(1024) NULL, URL VARCHAR(2048) NULL,
  SeriesInstanceUID VARCHAR(64) NOT NULL, InsertTimestamp VARCHAR(20) NOT NULL,
  DisplayedFieldsUpdatedTimestamp DATETIME NULL, PRIMARY KEY (SOPInstanceUID));
"""
"""0.8.x: Images holds a Filename, a URL, or both."""


def schema(version: str) -> str:
    """The SQL that creates an empty database of CTK schema ``version`` ("0.7.0" or "0.8.1")."""
    if version == "0.7.0":
        return TABLES_070
    start = TABLES_070.index("CREATE TABLE Images")
    end = TABLES_070.index("CREATE TABLE Patients")
    return TABLES_070[:start] + IMAGES_081 + TABLES_070[end:]


def index_folder(dicom_folder: Path, database_folder: Path, version: str = "0.7.0") -> dict[str, list[str]]:
    """Import every DICOM file below ``dicom_folder`` into a new database in ``database_folder``
    (absolute file names, as Slicer stores files it did not copy); returns {series UID: files}."""
    import pydicom

    database_folder.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(database_folder / "ctkDICOM.sql")
    db.executescript(schema(version))
    db.execute("INSERT INTO SchemaInfo VALUES (?)", (version,))
    patients: dict[tuple[str, str], int] = {}
    studies, series_rows = set(), {}
    files: dict[str, list[str]] = {}
    now = "2024-01-01"
    for path in sorted(p for p in Path(dicom_folder).rglob("*") if p.is_file()):
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=True)
        if "SOPInstanceUID" not in ds:
            continue
        who = (str(ds.get("PatientName", "")), str(ds.get("PatientID", "")))
        if who not in patients:
            cursor = db.execute("INSERT INTO Patients (PatientsName, PatientID, InsertTimestamp) VALUES (?, ?, ?)",
                                (*who, now))  # fmt: skip
            patients[who] = cursor.lastrowid
        if ds.StudyInstanceUID not in studies:
            studies.add(ds.StudyInstanceUID)
            db.execute("INSERT INTO Studies (StudyInstanceUID, PatientsUID, StudyDate, StudyDescription, InsertTimestamp) "
                       "VALUES (?, ?, ?, ?, ?)", (ds.StudyInstanceUID, patients[who], str(ds.get("StudyDate", "")),
                                                  str(ds.get("StudyDescription", "")), now))  # fmt: skip
        uid = ds.SeriesInstanceUID
        if uid not in series_rows:
            series_rows[uid] = True
            db.execute("INSERT INTO Series (SeriesInstanceUID, StudyInstanceUID, SeriesNumber, SeriesDescription, Modality, "
                       "InsertTimestamp) VALUES (?, ?, ?, ?, ?, ?)",
                       (uid, ds.StudyInstanceUID, ds.get("SeriesNumber"), str(ds.get("SeriesDescription", "")),
                        str(ds.get("Modality", "")), now))  # fmt: skip
        if version == "0.7.0":
            db.execute("INSERT INTO Images VALUES (?, ?, ?, ?, NULL)", (ds.SOPInstanceUID, str(path.resolve()), uid, now))
        else:
            db.execute("INSERT INTO Images VALUES (?, ?, NULL, ?, ?, NULL)", (ds.SOPInstanceUID, str(path.resolve()), uid, now))
        files.setdefault(uid, []).append(str(path.resolve()))
    db.commit()
    db.close()
    return files
