"""The export value types: a Case is immutable, loads lazily, refuses what no format can write."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from MedPrepLib.errors import ExportError
from MedPrepLib.export.cases import Case, CaseFiles, check_channel_names, check_label_table
from MedPrepLib.volume import Volume

VOLUME = Volume(np.zeros((2, 3, 4), np.int16))


def test_case_is_frozen_and_loads_lazily():
    calls = []

    def load():
        calls.append(1)
        return VOLUME

    images = {"T1": load, "FLAIR": VOLUME}
    case = Case("case_0001", patient="p", images=images, label=load, columns={"site": 3})
    assert calls == [] and case.channels == ("T1", "FLAIR") and case.labelled
    assert case.image("T1") is VOLUME and case.load_label() is VOLUME and len(calls) == 2
    images["T2"] = VOLUME  # the caller's dict is copied
    assert case.channels == ("T1", "FLAIR") and case.columns == {"site": "3"}
    with pytest.raises(dataclasses.FrozenInstanceError):
        case.case_id = "x"
    with pytest.raises(TypeError):
        case.images["CT"] = VOLUME
    with pytest.raises(ExportError, match="not a Volume"):
        Case("c", patient="p", images={"CT": lambda: np.zeros(3)}).image("CT")


@pytest.mark.parametrize("bad", ["", ".hidden", "_x", "a.b", "a/b", "Doe Jane", 7])
def test_case_ids_that_cannot_be_file_names(bad):
    with pytest.raises(ExportError):
        Case(bad, patient="p", images={"CT": VOLUME})


def test_case_refusals():
    with pytest.raises(ExportError, match="no image"):
        Case("c", patient="p", images={})
    with pytest.raises(ExportError, match="split"):
        Case("c", patient="p", images={"CT": VOLUME}, split="validation")
    with pytest.raises(ExportError, match="no label"):
        Case("c", patient="p", images={"CT": VOLUME}, split="train")
    with pytest.raises(ExportError, match="patient"):
        Case("c", patient="", images={"CT": VOLUME})
    with pytest.raises(ExportError, match="test case has no fold"):
        CaseFiles("c", "test", 0, ("imagesTs/c_0000.nii.gz",), None, False)
    with pytest.raises(ExportError, match="needs a label"):
        CaseFiles("c", "train", 0, ("imagesTr/c_0000.nii.gz",), None, False)


def test_label_table_and_channels():
    assert list(check_label_table({"b": 2, "background": 0, "a": 1})) == ["background", "a", "b"]
    assert check_label_table({"background": 0, "a": 3}) == {"background": 0, "a": 3}
    for bad in ({"a": 1}, {"background": 0, "a": 0}, {"background": 0, "a": -1}, {"background": 0, "a": 1.5}, {"background": 0, "": 1}):
        with pytest.raises(ExportError):
            check_label_table(bad)
    with pytest.raises(ExportError, match="consecutive"):
        check_label_table({"background": 0, "a": 3}, consecutive=True)
    with pytest.raises(ExportError, match="repeat"):
        check_channel_names(["T1", "T1"])
    with pytest.raises(ExportError):
        check_channel_names([])
