"""The patient and sidecar fields of a study, read by the fast parser for plain files: the same
identity, pseudonym key, identifying tokens and sidecar as through pydicom, or declined."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
from conftest import corpus_case_dir, corpus_cases
from pydicom.datadict import dictionary_VR, tag_for_keyword
from pydicom.uid import ImplicitVRLittleEndian, generate_uid
from test_dicom_scan_fixtures import ct_slice, write_dataset

from MedPrepLib.dicom.fastheader import Declined, read_elements
from MedPrepLib.export import dicom_source, privacy
from MedPrepLib.export.dicom_source import _READ_ELEMENTS, _READ_KEYWORDS, _text

pytestmark = pytest.mark.pydicom_dependent
REPO = Path(__file__).resolve().parents[1]


def _pydicom(path: str):
    return pydicom.dcmread(path, stop_before_pixels=True, force=True, specific_tags=list(_READ_KEYWORDS))


def _views(ds) -> dict:
    """Everything the export derives from the fields (dicom_source._patient, privacy.sidecar)."""
    texts = {k: _text(ds, k) for k, (_, vr) in _READ_ELEMENTS.items() if vr not in ("DS", "IS")}
    numbers = {k: privacy._number(ds.get(k)) for k, (_, vr) in _READ_ELEMENTS.items() if vr in ("DS", "IS")}
    meta = {k: ds.get(k) for k in _READ_KEYWORDS if _text(ds, k)}
    return {
        "texts": texts,
        "numbers": numbers,
        "tokens": privacy._identity_tokens(meta),
        "sidecar": privacy.sidecar(meta, include_age=True, include_sex=True),
    }


def _fast_or_none(path: str):
    try:
        return read_elements(path, _READ_ELEMENTS)
    except Declined:
        return None


def test_the_table_is_pydicoms_dictionary():
    assert list(_READ_ELEMENTS) == list(_READ_KEYWORDS)
    for keyword, (tag, vr) in _READ_ELEMENTS.items():
        assert tag == tag_for_keyword(keyword) and vr == dictionary_VR(tag), keyword


@pytest.mark.corpus
def test_fast_fields_equal_pydicoms_on_every_corpus_file(corpus):
    taken = 0
    for case in corpus_cases():
        for root, _, names in os.walk(corpus_case_dir(case) / "dicom"):
            for name in sorted(names)[:3]:  # the first files of each folder: what read_patient reads
                path = os.path.join(root, name)
                fast = _fast_or_none(path)
                if fast is None:
                    continue
                taken += 1
                assert _views(fast) == _views(_pydicom(path)), path
    assert taken > 0


def _slice(tmp_path: Path, name: str, syntax=None, **fields) -> str:
    ds = ct_slice(generate_uid(), generate_uid(), 0.0, 1)
    for keyword, value in fields.items():
        setattr(ds, keyword, value)
    path = tmp_path / f"{name}.dcm"
    write_dataset(ds, path, **({"transfer_syntax": syntax} if syntax else {}))
    return str(path)


@pytest.mark.parametrize(
    "fields, fast",
    [
        ({"PatientName": "Doe^Jane^Q", "PatientBirthDate": "19610203", "InstitutionName": "St Elsewhere",
          "PatientAge": "063Y", "PatientSex": "F", "ConvolutionKernel": "B30f", "PixelSpacing": [0.7, 0.7]}, True),
        ({"OtherPatientIDs": ["MRN-1", "MRN-2"]}, False),  # several values: pydicom's list
        ({"PatientName": "Müller^Jürgen"}, False),  # Latin-1 text
        ({"SpecificCharacterSet": "ISO 2022 IR 87", "PatientName": b"Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B"}, False),
        ({"PatientID": "  padded  ", "StationName": "CT01"}, True),
    ],
)  # fmt: skip
@pytest.mark.parametrize("syntax", [None, ImplicitVRLittleEndian])
def test_fast_fields_on_planted_values(tmp_path, fields, fast, syntax):
    path = _slice(tmp_path, "one", syntax, **fields)
    got = _fast_or_none(path)
    assert (got is not None) == fast
    reference = _views(_pydicom(path))
    assert _views(dicom_source._read_header(path)) == reference
    if got is not None:
        assert _views(got) == reference


def test_a_plain_study_is_read_without_importing_pydicom(tmp_path):
    path = _slice(tmp_path, "plain", PatientName="Doe^John", PatientID="ID-77")
    code = (
        "import sys; from MedPrepLib.export.dicom_source import _read_header, _text; "
        f"ds = _read_header({path!r}); "
        "assert _text(ds, 'PatientID') == 'ID-77' and _text(ds, 'PatientName') == 'Doe^John', ds; "
        "assert 'pydicom' not in sys.modules, 'pydicom was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
