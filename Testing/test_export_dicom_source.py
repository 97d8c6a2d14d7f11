"""DICOM folders and Slicer databases as export cases: patient -> study -> stack, the selection
rule, a reason for every stack left out, and no planted identity in anything returned.

The synthetic cohort (written with ``dicom_factory``) has patient names in its folder names and
headers: Quaxley^Janika with two CT studies (one holding a thinner stack with more slices, a thicker
one, a three-slice stack, a localizer, a dose report, a structured report and an RTSTRUCT),
Roebling^Ricarda with T1, FLAIR and T2 MR series, Poezold^Edgarine with a T1 only, Moelke^Annegret without a
PatientID, and a study with no patient at all.
"""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path

import numpy as np
import pydicom
import pytest
from dicom_factory import new_uid, save, write_ct_series, write_slice
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset

from MedPrepLib.dicom.load import load_stack
from MedPrepLib.errors import ArgumentError, ExportError, InputError
from MedPrepLib.export.cases import SourceCases
from MedPrepLib.export.dicom_source import StackSelection, dicom_cases
from MedPrepLib.export.stack_selection import StackFacts, channels_of, select_study
from MedPrepLib.sources import find_stacks
from MedPrepLib.volume import Volume

pytestmark = pytest.mark.pydicom_dependent

PLANTED = (
    "quaxley", "janika", "jd-4711", "roebling", "ricarda", "rr-0815", "poezold", "edgarine", "moelke", "annegret",
    "19700101", "19550505",
)  # fmt: skip
"""Pieces of the patients' names, IDs and birth dates, planted in headers and folder names."""

JANE = {"PatientName": "Quaxley^Janika", "PatientID": "JD-4711", "PatientBirthDate": "19700101"}
RICHARD = {"PatientName": "Roebling^Ricarda", "PatientID": "RR-0815"}
EDGAR = {"PatientName": "Poezold^Edgarine", "PatientID": "PE-1"}
ANNA = {"PatientName": "Moelke^Annegret", "PatientID": "", "PatientBirthDate": "19550505"}
NOBODY = {"PatientName": "", "PatientID": ""}


def _series(folder: Path, n: int, study: str, identity: dict, *, number: int, description: str, **kw) -> list[Path]:
    return write_ct_series(
        folder, n, study_uid=study, SeriesNumber=number, SeriesDescription=description, **identity, **kw
    )


def _non_image(path: Path, sop_class: str, modality: str, study: str, identity: dict) -> None:
    """A DICOM object without pixel data (structured report, RT structure set)."""
    sop = new_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = sop_class, sop
    meta.TransferSyntaxUID = "1.2.840.10008.1.2.1"
    ds = FileDataset(str(path), Dataset(), file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = sop_class, sop, modality
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SeriesNumber = study, new_uid(), 99
    for key, value in identity.items():
        setattr(ds, key, value)
    save(ds, path)


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("cohort") / "Quaxley_Janika_and_others"
    uids = {name: new_uid() for name in ("jane_a", "jane_b", "richard", "edgar", "anna", "nobody")}
    jane = root / "Quaxley_Janika"
    a = jane / "2020 Thorax"
    _series(a / "thick", 12, uids["jane_a"], JANE, number=2, description="Thorax 1.0", step=1.0, KVP="100")
    _series(a / "thin", 20, uids["jane_a"], JANE, number=3, description="Thorax 0.6", step=0.6,
            Manufacturer="ACME", ManufacturerModelName="Quaxley-Scanner", KVP="120")  # fmt: skip
    _series(a / "short", 3, uids["jane_a"], JANE, number=4, description="extra for Janika")
    _series(
        a / "loc", 2, uids["jane_a"], JANE, number=1, description="AX", image_type=("ORIGINAL", "PRIMARY", "LOCALIZER")
    )
    write_slice(a / "dose" / "Quaxley_Janika_dose.dcm", np.zeros((8, 8)), position=(0, 0, 0), series_uid=new_uid(),
                study_uid=uids["jane_a"], sop_class="1.2.840.10008.5.1.4.1.1.7",
                image_type=("DERIVED", "SECONDARY", "DOSE_INFO"), SeriesDescription="Dose Report", **JANE)  # fmt: skip
    _non_image(a / "sr" / "Janika_dose_sr.dcm", "1.2.840.10008.5.1.4.1.1.88.67", "SR", uids["jane_a"], JANE)
    _non_image(a / "rt" / "Janika_rtstruct.dcm", "1.2.840.10008.5.1.4.1.1.481.3", "RTSTRUCT", uids["jane_a"], JANE)
    _series(jane / "2021 Abdomen", 15, uids["jane_b"], JANE, number=2, description="Abdomen")
    richard = root / "Roebling_Ricarda" / "brain"
    for number, description in ((3, "t1_mprage_sag"), (5, "FLAIR_tra"), (7, "t2_tse")):
        _series(
            richard / description, 12, uids["richard"], RICHARD, number=number, description=description, modality="MR"
        )
    _series(
        root / "Poezold_Edgarine" / "t1", 14, uids["edgar"], EDGAR, number=3, description="t1_mprage", modality="MR"
    )
    _series(root / "Moelke_Annegret" / "ct", 11, uids["anna"], ANNA, number=2, description="Chest")
    _series(root / "nobody" / "ct", 10, uids["nobody"], NOBODY, number=2, description="Chest")
    return {"root": root, "uids": uids, "stacks": find_stacks(root).stacks}


def _texts(found: SourceCases) -> list[str]:
    """Every text dicom_cases returns except ``key_row`` (the key file's own)."""
    out = list(found.warnings)
    for e in found.excluded:
        out += [e.what, e.reason]
    for c in found.cases:
        out += [*c.key, c.patient, c.modality, *c.warnings, *c.images, c.fingerprint, repr(dict(c.sidecar))]
    return out


def _no_identity(found: SourceCases) -> None:
    for text in _texts(found):
        low = text.lower()
        assert not [p for p in PLANTED if p in low], text
        assert not [p for p in ("2020 thorax", ".dcm", "cohort", os.sep + "tmp") if p in low], text  # no path


def _case_of(found: SourceCases, study_uid: str):
    (case,) = [c for c in found.cases if c.key[1] == study_uid]
    return case


def _stack(cohort, description: str):
    (stack,) = [s for s in cohort["stacks"] if s.series_description == description]
    return stack


def _reason(found: SourceCases, stack) -> str:
    (reason,) = [e.reason for e in found.excluded if e.what.startswith(f"stack {stack.id} ")]
    return reason


def test_ct_cases_one_per_study_with_the_stack_of_most_slices(cohort):
    found = dicom_cases(cohort["root"])
    uids = cohort["uids"]
    assert sorted(c.key[1] for c in found.cases) == sorted(uids[k] for k in ("jane_a", "jane_b", "anna", "nobody"))
    assert found.cases == sorted(found.cases, key=lambda c: c.key)
    assert any("selecting CT, which 4 of 6 studies hold" in w for w in found.warnings)

    a = _case_of(found, uids["jane_a"])
    assert list(a.images) == ["CT"] and a.modality == "CT" and a.label is None
    assert a.key == (a.patient, uids["jane_a"]) and re.fullmatch(r"[0-9a-f]{64}", a.patient)
    assert a.key_row == ("JD-4711", uids["jane_a"], str(cohort["root"]))
    assert a.sidecar["manufacturer"] == "ACME" and a.sidecar["slice_thickness_mm"] == 0.6 and a.sidecar["kvp"] == 120
    assert "model" not in a.sidecar  # it holds the patient's name
    volume = pickle.loads(pickle.dumps(a.images["CT"]))()  # worker processes get it pickled
    assert isinstance(volume, Volume) and volume.array.shape == (20, 24, 32)
    assert volume.spacing[2] == pytest.approx(0.6)

    b = _case_of(found, uids["jane_b"])
    assert b.patient == a.patient and b.key_row[0] == "JD-4711"
    anna, nobody = _case_of(found, uids["anna"]), _case_of(found, uids["nobody"])
    assert len({a.patient, anna.patient, nobody.patient}) == 3 and anna.key_row[0] == ""
    assert any("no PatientID or PatientName" in w for w in nobody.warnings)
    assert not any("PatientID" in w for w in anna.warnings)  # name and birth date identify her
    _no_identity(found)


def test_every_stack_not_taken_and_every_skipped_file_has_a_reason(cohort):
    found = dicom_cases(cohort["root"])
    taken = {f.args[0].id for c in found.cases for f in c.images.values()}
    named = [e.what.split()[1] for e in found.excluded if e.what.startswith("stack ")]
    assert sorted(taken | set(named)) == sorted(s.id for s in cohort["stacks"])
    assert not taken & set(named) and len(named) == len(set(named))

    thick, thin, short = (_stack(cohort, d) for d in ("Thorax 1.0", "Thorax 0.6", "extra for Janika"))
    assert thin.id in taken
    assert (
        _reason(found, thick)
        == f"another stack of the study has more slices: {thin.id} (20 against 12) is taken for CT"
    )
    assert _reason(found, short).startswith("too few slices: 3, fewer than 10")
    (what,) = [e.what for e in found.excluded if e.what.startswith(f"stack {short.id} ")]
    assert what.startswith(f"stack {short.id} (CT, series 4) of study ")  # its description names the patient
    (what,) = [e.what for e in found.excluded if e.what.startswith(f"stack {thick.id} ")]
    assert re.fullmatch(rf"stack {thick.id} \(CT, series 2, 'Thorax 1.0'\) of study [12] of patient \d", what)
    for description in ("t1_mprage_sag", "FLAIR_tra", "t2_tse", "t1_mprage"):
        assert _reason(found, _stack(cohort, description)) == "modality MR; the selection takes CT"
    studies = {e.what: e.reason for e in found.excluded if e.what.startswith("study ")}
    assert len(studies) == 2 and set(studies.values()) == {"no stack passes the selection (CT, at least 10 slices)"}
    files = {e.reason: e.what for e in found.excluded if e.what.endswith(("file", "files"))}
    assert files == {
        "localizer / scout image": "2 files",
        "secondary capture or screen save (dose report, annotated screenshot)": "1 file",
        "non-image object (structured report, RT plan, presentation state, ...)": "1 file",
        "segmentation or RT structure set (a label source, not an image)": "1 file",
    }


def test_studies_are_numbered_by_patient_without_identity(cohort):
    found = dicom_cases(cohort["root"], selection=StackSelection(modality="MR"))
    assert not any("selecting" in w for w in found.warnings)  # the modality was given
    where = {e.what.split()[1]: e.what.split(" of ", 1)[1] for e in found.excluded if e.what.startswith("stack ")}
    assert all(re.fullmatch(r"study \d of patient \d", w) for w in where.values())
    thin, abdomen = _stack(cohort, "Thorax 0.6"), _stack(cohort, "Abdomen")
    jane_a, jane_b = where[thin.id], where[abdomen.id]
    assert jane_a.split(" of ")[1] == jane_b.split(" of ")[1] and jane_a != jane_b  # one patient, two studies
    assert (
        len({w.split(" of ")[1] for w in where.values()}) == 4
    )  # Jane, Anna, nobody (CT); Richard (FLAIR and T2 lose the tie)
    _no_identity(found)


def test_channels_make_multi_modal_cases_and_a_study_missing_one_is_excluded(cohort):
    found = dicom_cases(
        cohort["root"], selection=StackSelection(modality="mr"), channels={"T1": "t1_mprage", "FLAIR": "flair"}
    )
    (case,) = found.cases
    assert case.key[1] == cohort["uids"]["richard"] and list(case.images) == ["T1", "FLAIR"] and case.modality == "MR"
    assert case.key_row[0] == "RR-0815"
    assert {n: f.args[0].series_description for n, f in case.images.items()} == {
        "T1": "t1_mprage_sag",
        "FLAIR": "FLAIR_tra",
    }
    assert _reason(found, _stack(cohort, "t2_tse")) == "series description does not match T1 't1_mprage', FLAIR 'flair'"
    assert _reason(found, _stack(cohort, "t1_mprage")) == "would be T1, but its study has no stack for FLAIR"
    assert _reason(found, _stack(cohort, "Thorax 0.6")) == "modality CT; the selection takes MR"
    missing = [e.reason for e in found.excluded if e.what.startswith("study ") and "channel FLAIR" in e.reason]
    assert missing == [
        "no stack for channel FLAIR (description pattern FLAIR 'flair'; selection: MR, at least 10 slices)"
    ]
    assert sum("no stack for channels T1, FLAIR" in e.reason for e in found.excluded) == 4  # the CT studies
    _no_identity(found)


def test_selection_by_description_and_thickness(cohort):
    uids = cohort["uids"]
    thick, thin = _stack(cohort, "Thorax 1.0"), _stack(cohort, "Thorax 0.6")
    by_name = dicom_cases(cohort["root"], selection=StackSelection(modality="CT", description=r"thorax 1\.0"))
    assert [c.key[1] for c in by_name.cases] == [uids["jane_a"]]
    assert by_name.cases[0].images["CT"].args[0].id == thick.id
    assert _reason(by_name, thin) == "series description does not match CT 'thorax 1\\\\.0'"
    thicker = dicom_cases(cohort["root"], selection=StackSelection(modality="CT", min_thickness_mm=0.8))
    assert _case_of(thicker, uids["jane_a"]).images["CT"].args[0].id == thick.id
    assert _reason(thicker, thin) == "slice thickness 0.6 mm, below the minimum 0.8 mm"
    thinner = dicom_cases(cohort["root"], selection=StackSelection(modality="CT", max_thickness_mm=0.8))
    assert [c.key[1] for c in thinner.cases] == [uids["jane_a"]]
    assert _reason(thinner, thick) == "slice thickness 1 mm, above the maximum 0.8 mm"


def test_ties_go_to_thinner_slices_then_the_lower_series_number(cohort):
    a, b = (StackFacts.of(_stack(cohort, d)) for d in ("Thorax 1.0", "Thorax 0.6"))
    same = [StackFacts(a.stack, 12, 1.0), StackFacts(b.stack, 12, 0.6)]
    channels = channels_of(StackSelection(), None, "CT")
    outcome = select_study(same, StackSelection(), channels, "CT")
    assert outcome.chosen["CT"].stack is b.stack
    assert outcome.reasons[a.stack.id].startswith(f"{b.stack.id} has as many slices (12) and is taken for CT")
    outcome = select_study(
        [StackFacts(a.stack, 12, 1.0), StackFacts(b.stack, 12, 1.0)], StackSelection(), channels, "CT"
    )
    assert outcome.chosen["CT"].stack is a.stack  # series 2 before series 3


def test_fingerprint_follows_the_chosen_files_and_the_selection(cohort, tmp_path):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(cohort["root"] / "Quaxley_Janika", root)
    first = {c.key: c.fingerprint for c in dicom_cases(root).cases}
    assert first == {c.key: c.fingerprint for c in dicom_cases(root).cases}
    thick = next(root.glob("*/thick/*.dcm"))
    os.utime(thick, ns=(1, 1))  # not chosen: no case changes
    assert first == {c.key: c.fingerprint for c in dicom_cases(root).cases}
    thin = next(root.glob("*/thin/*.dcm"))
    os.utime(thin, ns=(1, 1))
    second = {c.key: c.fingerprint for c in dicom_cases(root).cases}
    assert len(second) == 2 and sum(first[k] != second[k] for k in first) == 1
    other = {c.key: c.fingerprint for c in dicom_cases(root, selection=StackSelection(min_slices=5)).cases}
    assert all(other[k] != second[k] for k in second)


def test_bad_selections_and_sources_are_refused_without_a_path(cohort, tmp_path):
    with pytest.raises(ExportError, match="both given"):
        dicom_cases(cohort["root"], selection=StackSelection(description="t1"), channels={"T1": "t1"})
    with pytest.raises(ExportError, match="not a regular expression"):
        dicom_cases(tmp_path / "never scanned", channels={"T1": "t1_(mprage"})
    with pytest.raises(ExportError, match="empty"):
        dicom_cases(cohort["root"], channels={"": "t1"})
    for bad in (
        {"min_slices": 0},
        {"max_thickness_mm": -1},
        {"min_thickness_mm": 3, "max_thickness_mm": 1},
        {"modality": " "},
    ):
        with pytest.raises(ExportError):
            StackSelection(**bad)
    with pytest.raises(ArgumentError, match="geometry_policy"):
        dicom_cases(cohort["root"], geometry_policy="guess")
    empty = tmp_path / "Quaxley_Janika_empty"
    (empty / "notes").mkdir(parents=True)
    (empty / "notes" / "Quaxley.txt").write_text("not DICOM")
    found = dicom_cases(empty)
    assert not found.cases and found.warnings == ["the source holds no loadable image stack (1 file skipped)"]
    assert [(e.what, e.reason) for e in found.excluded] == [("1 file", "not a DICOM file")]
    missing = tmp_path / "Quaxley_Janika_missing"
    with pytest.raises(InputError) as info:
        dicom_cases(missing)
    assert "Quaxley" not in str(info.value) and info.value.detail == str(missing)


def test_a_study_whose_files_vanished_after_the_scan_is_left_out(cohort, tmp_path, monkeypatch):
    import MedPrepLib.export.dicom_source as source

    monkeypatch.setattr(source, "_read_header", lambda path: None)
    found = dicom_cases(cohort["root"] / "Moelke_Annegret")
    assert not found.cases
    assert [e.what for e in found.excluded if e.what.startswith("study")] == ["study 1 of an unknown patient"]
    assert any(e.reason == "its study's patient is unknown" for e in found.excluded)


def test_slicer_database(tmp_path):
    from test_dicom_slicerdb import PATIENT_NAME, build_database

    build_database(tmp_path / "db", "0.8.1", absolute=False)
    found = dicom_cases(tmp_path / "db", selection=StackSelection(min_slices=3))
    assert len(found.cases) == 2 and len({c.patient for c in found.cases}) == 1  # one patient, two studies
    assert {c.key_row[0] for c in found.cases} == {"SYNTH-0001"}
    assert {c.images["CT"]().array.shape[0] for c in found.cases} == {3, 4}
    by_file = dicom_cases(tmp_path / "db" / "ctkDICOM.sql", selection=StackSelection(min_slices=3))
    assert [c.fingerprint for c in by_file.cases] == [c.fingerprint for c in found.cases]
    assert all(PATIENT_NAME.split("^")[0].lower() not in t.lower() for t in _texts(found))


def test_real_corpus(corpus):
    found = dicom_cases(corpus, selection=StackSelection(modality="MR", min_slices=4))
    stacks = find_stacks(corpus).stacks
    taken = {f.args[0].id for c in found.cases for f in c.images.values()}
    named = {e.what.split()[1] for e in found.excluded if e.what.startswith("stack ")}
    assert taken | named == {s.id for s in stacks} and not taken & named
    assert found.cases and all(c.modality == "MR" and c.key_row[2] == str(corpus) for c in found.cases)
    tokens: set[str] = set()
    for case in found.cases:
        stack = case.images["MR"].args[0]
        ds = pydicom.dcmread(sorted(stack.paths)[0], stop_before_pixels=True)
        assert case.key_row[:2] == (str(ds.get("PatientID", "")).strip(), ds.StudyInstanceUID)
        tokens |= {t for t in re.split(r"[\^=\s,.]+", str(ds.get("PatientName", "")).lower()) if len(t) >= 4}
    for text in _texts(found):
        assert not [t for t in tokens if t in text.lower() and t not in ("anonymized", "anonymous")], text
    hfp = next(s for s in stacks if s.modality == "MR" and len(s.headers) == 35)
    assert hfp.id in taken
    case = next(c for c in found.cases if c.images["MR"].args[0].id == hfp.id)
    volume = case.images["MR"]()
    assert volume.array.shape[0] == 35 and volume.geometry == load_stack(hfp).geometry
    assert any(r.startswith("too few slices") for r in (e.reason for e in found.excluded))
