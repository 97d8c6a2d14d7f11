"""Reading Slicer's DICOM database (ctkDICOM.sql) without Slicer.

The fixture databases are built here from CTK's documented schema (``Testing/slicer_database.py``:
the tables, columns and SchemaInfo version of ``Libs/DICOM/Core/Resources/dicom-schema.sql``,
0.7.0, and 0.8.1 where ``Images`` gained a ``URL`` column), pointing at synthetic DICOM files
written with pydicom.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pydicom
import pytest
import slicer_database
from test_dicom_scan_fixtures import write_ct_series

from MedPrepLib.cli import main
from MedPrepLib.dicom.slicerdb import SlicerDicomDatabase, is_slicer_database, scan_database
from MedPrepLib.errors import InputError

pytestmark = pytest.mark.pydicom_dependent

PATIENT_NAME = "Fixture^Patient"  # a made-up name, to prove it never leaks into results

def _schema(version: str) -> str:
    return slicer_database.schema(version)


def build_database(folder: Path, version: str, *, absolute: bool, n_series: int = 2) -> dict:
    """A Slicer-like database folder: dicom/ files + ctkDICOM.sql + ctkDICOMTagCache.sql."""
    folder.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(folder / "ctkDICOM.sql")
    db.executescript(_schema(version))
    db.execute("INSERT INTO SchemaInfo VALUES (?)", (version,))
    db.execute(
        "INSERT INTO Patients (PatientsName, PatientID, PatientsBirthDate, InsertTimestamp) VALUES (?, ?, ?, ?)",
        (PATIENT_NAME, "FIXTURE-ID-7", "19000101", "2024-01-01"),
    )
    tags = sqlite3.connect(folder / "ctkDICOMTagCache.sql")
    tags.execute("CREATE TABLE TagCache (SOPInstanceUID, Tag, Value, PRIMARY KEY (SOPInstanceUID, Tag))")
    study_uid = None
    series = {}
    for k in range(n_series):
        paths = write_ct_series(folder / "dicom" / f"series{k}", 3 + k, prefix=f"S{k}_")
        first = pydicom.dcmread(paths[0], stop_before_pixels=True)
        study_uid = study_uid or first.StudyInstanceUID
        uid = first.SeriesInstanceUID
        series[uid] = paths
        db.execute(
            "INSERT INTO Series (SeriesInstanceUID, StudyInstanceUID, SeriesNumber, SeriesDescription, Modality, "
            "InsertTimestamp) VALUES (?, ?, ?, ?, ?, ?)",
            (uid, study_uid, k + 1, f"series {k}", "CT", "2024-01-01"),
        )
        for j, p in enumerate(paths):
            sop = pydicom.dcmread(p, stop_before_pixels=True).SOPInstanceUID
            name = str(p) if absolute else str(p.relative_to(folder))
            if version == "0.7.0":
                db.execute("INSERT INTO Images VALUES (?, ?, ?, ?, NULL)", (sop, name, uid, "2024-01-01"))
            elif j == 0:  # 0.8.x: one entry with only a file:// URL
                db.execute(
                    "INSERT INTO Images VALUES (?, NULL, ?, ?, ?, NULL)", (sop, Path(p).as_uri(), uid, "2024-01-01")
                )
            else:
                db.execute("INSERT INTO Images VALUES (?, ?, NULL, ?, ?, NULL)", (sop, name, uid, "2024-01-01"))
            tag = "0020,000E" if version != "0.7.0" else "0020,000e"
            tags.execute("INSERT INTO TagCache VALUES (?, ?, ?)", (sop, tag, uid))
    db.execute(
        "INSERT INTO Studies (StudyInstanceUID, PatientsUID, StudyDate, StudyDescription, ModalitiesInStudy, "
        "InsertTimestamp) VALUES (?, 1, ?, ?, ?, ?)",
        (study_uid, "20000101", "synthetic study", "CT", "2024-01-01"),
    )
    db.commit()
    db.close()
    tags.commit()
    tags.close()
    return series


@pytest.mark.parametrize("version", ["0.7.0", "0.8.1"])
@pytest.mark.parametrize("absolute", [False, True])
def test_hierarchy_and_files(tmp_path, version, absolute):
    series = build_database(tmp_path / "db", version, absolute=absolute)
    with SlicerDicomDatabase(tmp_path / "db") as db:
        assert db.schema_version == version
        (patient,) = db.patients()
        assert patient.n_studies == 1 and PATIENT_NAME not in repr(patient) and "FIXTURE" not in repr(patient)
        (study,) = db.studies(patient)
        assert study.patient_key == patient.key and study.description == "synthetic study"
        entries = db.series(study)
        assert {e.series_instance_uid for e in entries} == set(series)
        assert [e.n_files for e in entries] == [3, 4] and [e.series_number for e in entries] == [1, 2]
        for e in entries:
            files = db.files(e)
            assert sorted(files) == sorted(str(p) for p in series[e.series_instance_uid])
            assert all(Path(f).is_absolute() for f in files)
        assert db.patient_display_name(patient) == PATIENT_NAME  # only when explicitly asked
        sop = pydicom.dcmread(series[entries[0].series_instance_uid][1], stop_before_pixels=True).SOPInstanceUID
        for spelling in ("0020,000E", "0020,000e"):
            assert db.cached_tag(sop, spelling) == entries[0].series_instance_uid


@pytest.mark.parametrize("version", ["0.7.0", "0.8.1"])
def test_scan_database_feeds_the_same_grouping(tmp_path, version):
    series = build_database(tmp_path / "db", version, absolute=False)
    result = scan_database(tmp_path / "db", cache=False)
    assert {s.series_instance_uid for s in result.stacks} == set(series)
    assert sorted(len(s.headers) for s in result.stacks) == [3, 4]
    assert not result.skipped
    text = json.dumps(result.to_json_dict())
    assert PATIENT_NAME not in text and "FIXTURE-ID-7" not in text
    one = sorted(series)[0]
    only = scan_database(tmp_path / "db", [one], cache=False)
    assert [s.series_instance_uid for s in only.stacks] == [one]


def test_database_is_opened_read_only_and_never_changed(tmp_path):
    build_database(tmp_path / "db", "0.8.1", absolute=True)
    db_file = tmp_path / "db" / "ctkDICOM.sql"
    before = hashlib.sha256(db_file.read_bytes()).hexdigest()
    with SlicerDicomDatabase(db_file) as db:
        db.series()
        with pytest.raises(sqlite3.OperationalError):
            db._conn.execute("DELETE FROM Images")
    scan_database(db_file, cache=False)
    assert hashlib.sha256(db_file.read_bytes()).hexdigest() == before


def test_missing_files_are_reported(tmp_path):
    series = build_database(tmp_path / "db", "0.7.0", absolute=False)
    victim = sorted(series.values())[0][1]
    victim.unlink()
    result = scan_database(tmp_path / "db", cache=False)
    assert [(s.path, s.reason) for s in result.skipped] == [(str(victim), "unreadable")]
    assert "missing on disk" in result.skipped[0].detail


def test_not_a_database(tmp_path):
    assert not is_slicer_database(tmp_path)
    with pytest.raises(InputError):
        SlicerDicomDatabase(tmp_path)
    bad = tmp_path / "ctkDICOM.sql"
    sqlite3.connect(bad).execute("CREATE TABLE Other (x)").connection.commit()
    assert is_slicer_database(tmp_path)
    with pytest.raises(InputError, match="not a Slicer"):
        SlicerDicomDatabase(tmp_path)


def test_cli_scans_a_database_folder(tmp_path, capsys):
    series = build_database(tmp_path / "db", "0.8.1", absolute=False)
    assert main(["scan", str(tmp_path / "db"), "--json", "--no-cache"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert {s["series_instance_uid"] for s in data["series"]} == set(series)
    assert data["skipped"] == []
    assert main(["scan", str(tmp_path / "db" / "ctkDICOM.sql"), "--json", "--no-cache"]) == 0
    assert json.loads(capsys.readouterr().out)["series"] == data["series"]
