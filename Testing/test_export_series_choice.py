"""Choosing DICOM stacks by SeriesInstanceUID (``StackSelection.series_uids``, ``medprep export
--series-uid``): only the chosen series are candidates, every other stack is left out with the
reason "not among the chosen series", and no chosen UID reaches an output file, the recorded
command or the console."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from cli_run import run_medprep
from dicom_factory import new_uid, write_ct_series

from MedPrepLib.errors import ExportError
from MedPrepLib.export.dicom_source import dicom_cases
from MedPrepLib.export.runner import sanitized_command
from MedPrepLib.export.stack_selection import StackFacts, StackSelection, channels_of, resolve_modality, select_study
from MedPrepLib.sources import find_stacks

pytestmark = pytest.mark.pydicom_dependent

PATIENTS = ("Quaxley^Janika", "Roebling^Ricarda", "Poezold^Edgarine")


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> dict:
    """Three patients, one CT study each of a thin (14 slices) and a thick (10 slices) series;
    the second patient's study also holds an MR series of 12 slices."""
    root = tmp_path_factory.mktemp("series") / "dicom"
    series: dict[str, str] = {}
    for n, name in enumerate(PATIENTS):
        study = new_uid()
        identity = {"PatientName": name, "PatientID": f"ID-{n}", "StudyInstanceUID": study}
        folder = root / name.replace("^", "_")
        for kind, slices, step, number in (("thin", 14, 1.0, 2), ("thick", 10, 2.5, 3)):
            series[f"{n}{kind}"] = uid = new_uid()
            write_ct_series(folder / kind, slices, step=step, series_uid=uid, study_uid=study, SeriesNumber=number,
                            SeriesDescription=f"Thorax {kind}", **{k: v for k, v in identity.items() if k != "StudyInstanceUID"})  # fmt: skip
        if n == 1:
            series["1mr"] = uid = new_uid()
            write_ct_series(folder / "mr", 12, series_uid=uid, study_uid=study, SeriesNumber=9, SeriesDescription="t1",
                            modality="MR", PatientName=name, PatientID=f"ID-{n}")  # fmt: skip
    stacks = {s.series_instance_uid: s for s in find_stacks(root).stacks}
    return {"root": root, "series": series, "stacks": stacks}


# --- the rule -----------------------------------------------------------------------------------


def test_the_chosen_series_are_kept_sorted_and_described_by_their_count_only():
    chosen = StackSelection(modality="CT", series_uids=(" 1.2.3.9", "1.2.3.4", "1.2.3.9"))
    assert chosen.series_uids == ("1.2.3.4", "1.2.3.9")
    assert chosen.describe() == "CT, at least 10 slices, chosen series only (2)"
    assert "1.2.3" not in chosen.describe()
    assert chosen.to_dict()["series_uids"] == ("1.2.3.4", "1.2.3.9")  # the fingerprint's input (hashed)
    assert StackSelection().series_uids == () and "chosen" not in StackSelection().describe()


@pytest.mark.parametrize("bad", ["1.2.3.4", ("1.2.3.4", ""), ("1.2.3.4", None), ("  ",)])
def test_bad_chosen_series_are_refused_without_naming_a_uid(bad):
    with pytest.raises(ExportError, match="not a list of SeriesInstanceUIDs") as caught:
        StackSelection(series_uids=bad)
    assert "1.2.3.4" not in str(caught.value)


def test_only_chosen_series_are_candidates_even_with_fewer_slices(source):
    s = source["series"]
    thin, thick = source["stacks"][s["0thin"]], source["stacks"][s["0thick"]]
    facts = [StackFacts.of(thin), StackFacts.of(thick)]
    selection = StackSelection(modality="CT", series_uids=(s["0thick"],))
    outcome = select_study(facts, selection, channels_of(selection, None, "CT"), "CT")
    assert outcome.chosen["CT"].stack is thick
    assert outcome.reasons == {thin.id: "not among the chosen series"}
    nothing = select_study(facts, StackSelection(modality="CT", series_uids=("9.9",)),
                           channels_of(selection, None, "CT"), "CT")  # fmt: skip
    assert not nothing.is_case and set(nothing.reasons.values()) == {"not among the chosen series"}


def test_without_a_modality_the_chosen_series_decide_it(source):
    s = source["series"]
    studies = [[StackFacts.of(st)] for st in source["stacks"].values()]
    assert resolve_modality(studies, StackSelection())[0] == "CT"  # most studies hold CT
    modality, warning = resolve_modality(studies, StackSelection(series_uids=(s["1mr"],)))
    assert modality == "MR" and s["1mr"] not in warning
    found = dicom_cases(source["root"], selection=StackSelection(series_uids=(s["1mr"],)))
    (case,) = found.cases
    assert case.modality == "MR" and case.images["MR"].args[0].series_instance_uid == s["1mr"]


def test_chosen_series_absent_from_the_source_are_counted_in_a_warning(source):
    s = source["series"]
    found = dicom_cases(source["root"], selection=StackSelection(modality="CT", series_uids=(s["0thin"], "1.2.999.1")))
    assert "1 of the 2 chosen series are not among the source's image stacks" in " ".join(found.warnings)
    assert [c.images["CT"].args[0].series_instance_uid for c in found.cases] == [s["0thin"]]
    studies = [e.reason for e in found.excluded if e.what.startswith("study ")]
    assert studies == ["no stack passes the selection (CT, at least 10 slices, chosen series only (2))"] * 2
    assert not any(uid in text for uid in s.values() for e in found.excluded for text in (e.what, e.reason))


# --- the recorded command -------------------------------------------------------------------------


def test_the_recorded_command_holds_no_series_uid():
    argv = ["/data/Doe^Jane", "/out", "--series-uid", "1.2.840.1", "--series-uid=1.2.840.2", "--series-u", "1.2.840.3",
            "--folds", "2"]  # fmt: skip
    text = sanitized_command(argv)
    assert text == (
        "medprep export <SOURCE> <OUT> --series-uid <SERIES_UID> --series-uid=<SERIES_UID> "
        "--series-uid <SERIES_UID> --folds 2"
    )
    # an abbreviated flag is still a flag: the path after it is a path
    assert sanitized_command(["--over", "/data/Doe^Jane", "/out"]) == "medprep export --overwrite <SOURCE> <OUT>"


def test_the_cli_parser_appends_every_series_uid():
    from MedPrepLib.cli import build_parser
    from MedPrepLib.cli.export import _selection

    args = build_parser().parse_args(["export", "src", "out", "--series-uid", "1.2.3", "--series-uid", "1.2.4"])
    assert args.series_uid == ["1.2.3", "1.2.4"]
    assert _selection(args).series_uids == ("1.2.3", "1.2.4")
    assert _selection(build_parser().parse_args(["export", "src", "out"])).series_uids == ()


# --- end to end ----------------------------------------------------------------------------------


def _every_text(folder: Path) -> str:
    out = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        out.append(path.name + (gzip.decompress(data) if path.name.endswith(".gz") else data).decode("latin-1"))
    return "\n".join(out)


def test_an_export_takes_exactly_the_chosen_series(source, tmp_path):
    s = source["series"]
    chosen = [s["0thick"], s["1thin"]]  # the first patient's thick series: fewer slices, still taken
    key = tmp_path / "key.csv"
    result = run_medprep("export", source["root"], tmp_path / "raw", "--modality", "CT", "--series-uid", chosen[0],
                         "--series-uid", chosen[1], "--folds", "2", "--key-file", key)  # fmt: skip
    assert result.returncode == 0, result.stderr
    folder = tmp_path / "raw" / "Dataset500_MedPrep"
    record = json.loads((folder / "medprep.json").read_text())
    assert len(record["cases"]) == 2
    assert sorted(c["shape"][2] for c in (case["facts"] for case in record["cases"])) == [10, 14]
    stacks = [(e["what"], e["reason"]) for e in record["excluded"] if e["what"].startswith("stack ")]
    assert len(stacks) == 5 and {reason for _, reason in stacks} == {"not among the chosen series"}
    # stacks are named without their ids in a dataset (privacy.scrub): by modality, series and study
    assert sorted(what.split(" of ")[0] for what, _ in stacks) == sorted(
        ["stack (CT, series 2, 'Thorax thin')"] * 2 + ["stack (CT, series 3, 'Thorax thick')"] * 2
        + ["stack (MR, series 9, 't1')"]
    )  # fmt: skip
    studies = [e["reason"] for e in record["excluded"] if e["what"].startswith("study ")]
    assert studies == ["no stack passes the selection (CT, at least 10 slices, chosen series only (2))"]
    assert record["command"].count("--series-uid <SERIES_UID>") == 2
    # no series UID (chosen or not), no patient, no source path in any file or on the console
    shown = _every_text(folder) + result.stdout + result.stderr
    for uid in s.values():
        assert uid not in shown
    for name in PATIENTS:
        assert name.split("^")[0] not in shown
    assert str(source["root"]) not in shown
    assert len(key.read_text().splitlines()) == 3  # the key file, outside the dataset, is the exception
