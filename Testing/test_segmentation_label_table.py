"""The dataset's label table for named structures (MedPrepLib.segmentation.label_table).

Segments are built by hand on small grids so every voxel count is known: name matching (exact,
case-insensitive, regular expressions, terminology codes), the same organ the same value whatever
the order and spelling of the source, unmatched structures ignored or refused, and the three
overlap policies with exact voxel counts — regions checked against nnU-Net's own LabelManager and
region transform.
"""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from MedPrepLib.errors import ExportError, LabelError
from MedPrepLib.export.labels import LabelTable
from MedPrepLib.geometry import Geometry
from MedPrepLib.segmentation.label_table import (
    SegmentLabelTable,
    parse_segment_label_map,
    read_segment_label_map,
    segmentation_to_label,
)
from MedPrepLib.segmentation.segments import Segment, Segmentation

SHAPE = (4, 10, 12)  # (z, y, x)
GRID = Geometry.from_shape(SHAPE, spacing=(0.5, 0.5, 2.0), origin=(3.0, -4.0, 10.0))

SCT_LIVER = (("SCT", "123037004", "Anatomical Structure"), ("SCT", "10200004", "Liver"))
SCT_KIDNEY_LEFT = (
    ("SCT", "123037004", "Anatomical Structure"),
    ("SCT", "64033007", "Kidney"),
    ("SCT", "7771000", "Left"),
)
SCT_KIDNEY_RIGHT = (
    ("SCT", "123037004", "Anatomical Structure"),
    ("SCT", "64033007", "Kidney"),
    ("SCT", "24028007", "Right"),
)


def box(z0, z1, y0, y1, x0, x1) -> np.ndarray:
    m = np.zeros(SHAPE, bool)
    m[z0:z1, y0:y1, x0:x1] = True
    return m


LIVER = box(0, 4, 0, 6, 0, 6)  # 4 * 6 * 6 = 144 voxels
TUMOUR = box(1, 3, 4, 8, 4, 8)  # 2 * 4 * 4 = 32; shares 2 * 2 * 2 = 8 with the liver
SPLEEN = box(0, 2, 0, 3, 9, 12)  # 2 * 3 * 3 = 18, alone
VESSEL = box(2, 4, 5, 7, 5, 9)  # 2 * 2 * 4 = 16; shares 6 with the tumour, 2 with the liver


def seg(*named, kind="seg.nrrd") -> Segmentation:
    """A segmentation from (name, full mask[, terminology]) in the given order, numbered 1, 2 ..."""
    segments = []
    for number, item in enumerate(named, start=1):
        name, mask, *term = item
        segments.append(Segment.from_full_mask(number, name, mask, terminology=term[0] if term else ()))
    return Segmentation(GRID, kind, segments)


MAP = {
    "labels": {"background": 0, "liver": 1, "tumour": 2, "spleen": 3},
    "match": {
        "liver": ["(?i)^liver$", "(?i)liver_gtv", {"code": "10200004", "scheme": "SCT"}],
        "tumour": ["(?i)^(tumou?r|gtv)"],
        "spleen": [{"name": "Milz"}],
        "background": ["(?i)^(body|couch)$"],
    },
}


# --- the table -----------------------------------------------------------------------------------


def test_a_plain_export_label_map_is_a_table_too():
    for obj in ({"liver": 1, "tumour": 2}, {"labels": {"liver": 1, "tumour": 2}, "remap": {"7": 2}}):
        t = parse_segment_label_map(obj)
        assert dict(t.table.labels) == {"background": 0, "liver": 1, "tumour": 2}
        assert (t.unmatched, t.overlap, t.match, t.priority, dict(t.within)) == ("ignore", "reject", {}, (), {})
    assert dict(parse_segment_label_map({"labels": {"liver": 1}, "remap": {"7": 1}}).table.remap) == {7: 1}


def test_the_full_form_round_trips_through_json_and_pickle(tmp_path):
    obj = dict(MAP, unmatched="reject", overlap="regions", priority=["tumour", "liver"], within={"tumour": "liver"})
    t = parse_segment_label_map(obj)
    again = parse_segment_label_map(json.loads(json.dumps(t.to_dict())))
    assert again.to_dict() == t.to_dict()
    assert t.to_dict()["match"] == MAP["match"] and t.to_dict()["within"] == {"tumour": "liver"}
    (tmp_path / "labels.json").write_text(json.dumps(obj))
    assert read_segment_label_map(tmp_path / "labels.json").to_dict() == t.to_dict()
    clone = pickle.loads(pickle.dumps(t))  # export workers get the table
    assert clone.to_dict() == t.to_dict()
    assert clone.label_for(Segment(1, "GTV_2", (0, 0, 0), np.ones((1, 1, 1), bool))) == "tumour"


@pytest.mark.parametrize(
    ("obj", "words"),
    [
        ({"labels": {"liver": 1}, "match": {"liver": ["(unclosed"]}}, "not a regular expression"),
        ({"labels": {"liver": 1}, "match": {"lung": ["^lung"]}}, "'lung' is not a label"),
        ({"labels": {"liver": 1}, "match": {"liver": [{"colour": "red"}]}}, "is not a pattern"),
        ({"labels": {"liver": 1}, "match": {"liver": "^liver"}}, "lists of patterns"),
        ({"labels": {"liver": 1}, "priority": ["liver", "lung"]}, "'lung' is not a label"),
        ({"labels": {"liver": 1}, "priority": ["liver", "liver"]}, "twice"),
        ({"labels": {"a": 1, "b": 2}, "within": {"a": "b", "b": "a"}}, "circle"),
        ({"labels": {"a": 1}, "within": {"a": "background"}}, "background"),
        ({"labels": {"liver": 1}, "overlap": "union"}, "unknown overlap policy"),
        ({"labels": {"liver": 1}, "unmatched": "keep"}, "unknown unmatched policy"),
        ({"labels": {"Liver": 1, "liver": 2}, "match": {}}, "differ only in case"),
        ({"match": {"liver": ["^liver"]}}, 'needs the label names in "labels"'),
        ({"labels": {"liver": 0}, "match": {}}, "same value"),
    ],
)
def test_a_bad_table_is_an_export_error_that_says_what(obj, words):
    with pytest.raises(ExportError, match=words) as err:
        parse_segment_label_map(obj)
    assert not isinstance(err.value, LabelError)  # a bad table stops the export, it is no case's fault


def test_a_bad_label_map_file_is_an_export_error(tmp_path):
    (tmp_path / "bad.json").write_text("{ not json")
    with pytest.raises(ExportError):
        read_segment_label_map(tmp_path / "bad.json")


# --- matching --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "terminology", "label"),
    [
        ("liver", (), "liver"),
        ("  LIVER ", (), "liver"),  # the label's own name, ignoring case and spaces
        ("Liver_GTV_2", (), "liver"),  # a regular expression, searched
        ("Segment_1", SCT_LIVER, "liver"),  # the coded type
        ("GTV", (), "tumour"),
        ("Tumor", (), "tumour"),
        ("tumour", (), "tumour"),
        ("Milz", (), "spleen"),  # {"name": ...}: exact, case counts
        ("milz", (), None),
        ("BODY", (), "background"),
        ("PTV_60", (), None),
        ("my liver", (), None),  # anchored: not a liver
    ],
)
def test_names_match_exactly_ignoring_case_by_regex_and_by_code(name, terminology, label):
    t = parse_segment_label_map(MAP)
    assert t.label_for(Segment(7, name, (0, 0, 0), np.ones((1, 1, 1), bool), terminology=terminology)) == label


def test_codes_tell_left_from_right_by_their_modifier():
    t = parse_segment_label_map({
        "labels": {"kidney_left": 1, "kidney_right": 2},
        "match": {"kidney_left": [{"code": "64033007", "modifier": "7771000"}],
                  "kidney_right": [{"code": "64033007", "scheme": "SCT", "modifier": "24028007"}]},
    })  # fmt: skip
    one = np.ones((1, 1, 1), bool)
    assert t.label_for(Segment(1, "Segment_1", (0, 0, 0), one, terminology=SCT_KIDNEY_RIGHT)) == "kidney_right"
    assert t.label_for(Segment(2, "Segment_2", (0, 0, 0), one, terminology=SCT_KIDNEY_LEFT)) == "kidney_left"
    assert t.label_for(Segment(3, "Segment_3", (0, 0, 0), one, terminology=SCT_LIVER)) is None


def test_an_exact_name_wins_over_a_pattern_and_two_patterns_are_refused():
    t = parse_segment_label_map({"labels": {"liver": 1, "liver_tumour": 2}, "match": {"liver": ["(?i)liver"]}})
    one = np.ones((1, 1, 1), bool)
    assert t.label_for(Segment(1, "Liver_Tumour", (0, 0, 0), one)) == "liver_tumour"
    assert t.label_for(Segment(2, "Liver lobe", (0, 0, 0), one)) == "liver"
    loose = parse_segment_label_map(
        {"labels": {"liver": 1, "tumour": 2}, "match": {"liver": ["(?i)liver"], "tumour": ["(?i)tum"]}}
    )
    with pytest.raises(LabelError, match=r"segment 4 \('liver tumour'\) matches labels 'liver', 'tumour'"):
        loose.label_for(Segment(4, "liver tumour", (0, 0, 0), one))


def test_the_same_organ_gets_the_same_value_whatever_its_order_or_spelling():
    t = parse_segment_label_map(dict(MAP, overlap="priority"))
    a = seg(("Liver", LIVER), ("GTV", TUMOUR), ("Milz", SPLEEN))
    b = seg(("Milz", SPLEEN), ("body", np.ones(SHAPE, bool)), ("Tumor", TUMOUR), ("Segment_9", LIVER, SCT_LIVER))
    c = seg(("tumour", TUMOUR), ("LIVER_GTV", LIVER), ("spleen", SPLEEN), kind="RTSTRUCT")
    expected = np.zeros(SHAPE, np.uint8)
    expected[LIVER], expected[TUMOUR], expected[SPLEEN] = 1, 2, 3
    labels = [segmentation_to_label(s, t)[0] for s in (a, b, c)]
    for label in labels:
        assert label.dtype == np.uint8 and label.geometry == GRID
        np.testing.assert_array_equal(label.array, expected)
    report = segmentation_to_label(b, t)[1]
    assert report.labels["liver"]["segments"] == [{"number": 4, "name": "Segment_9", "voxels": 144}]
    assert report.background == [{"number": 2, "name": "body", "voxels": int(np.prod(SHAPE))}]
    assert report.unmatched == []


def test_from_names_numbers_alphabetically_not_by_order():
    first = SegmentLabelTable.from_names(["Spleen", "liver", "Tumour"])
    second = SegmentLabelTable.from_names(["tumour", "Liver", "spleen", "LIVER"])
    assert [v for _, v in first.table.labels.items()] == [0, 1, 2, 3]
    assert {k.lower(): v for k, v in first.table.labels.items()} == {
        k.lower(): v for k, v in second.table.labels.items()
    }


# --- unmatched ---------------------------------------------------------------------------------------


def test_unmatched_structures_are_listed_and_left_out_or_refused():
    s = seg(("Liver", LIVER), ("PTV_60", TUMOUR), ("Couch", SPLEEN), ("Spinal cord PRV", SPLEEN))
    t = parse_segment_label_map(MAP)
    label, report = segmentation_to_label(s, t)
    assert report.unmatched == [
        {"number": 2, "name": "PTV_60", "voxels": 32},
        {"number": 4, "name": "Spinal cord PRV", "voxels": 18},
    ]
    assert report.background == [{"number": 3, "name": "Couch", "voxels": 18}]
    assert set(np.unique(label.array)) == {0, 1} and int((label.array == 1).sum()) == 144
    assert any("PTV_60" in w for w in report.warnings)
    with pytest.raises(LabelError, match=r"does not name: 2 'PTV_60', 4 'Spinal cord PRV'"):
        segmentation_to_label(s, t, unmatched="reject")
    with pytest.raises(LabelError, match="PTV_60"):
        segmentation_to_label(s, parse_segment_label_map(dict(MAP, unmatched="reject")))
    # known-but-unwanted structures (matched to background) pass under reject
    segmentation_to_label(seg(("Liver", LIVER), ("Couch", SPLEEN)), t, unmatched="reject")


def test_absent_and_empty_structures_are_reported_not_errors():
    s = seg(("Liver", LIVER), ("GTV", np.zeros(SHAPE, bool)))
    label, report = segmentation_to_label(s, parse_segment_label_map(MAP))
    assert report.labels["tumour"] == {
        "value": 2,
        "segments": [{"number": 2, "name": "GTV", "voxels": 0}],
        "voxels": 0,
        "written": 0,
    }
    assert report.labels["spleen"] == {"value": 3, "segments": [], "voxels": 0, "written": 0}
    assert any("empty" in w for w in report.warnings)


def test_two_structures_of_one_label_are_one_and_do_not_overlap_each_other():
    left, right = box(0, 4, 0, 6, 0, 4), box(0, 4, 0, 6, 2, 6)  # overlapping halves of the liver
    label, report = segmentation_to_label(seg(("liver", left), ("Liver_GTV", right)), parse_segment_label_map(MAP))
    assert report.labels["liver"]["voxels"] == 144 and report.overlaps == []
    np.testing.assert_array_equal(label.array, LIVER.astype(np.uint8))


# --- overlap --------------------------------------------------------------------------------------


def test_overlap_reject_names_the_segments_and_the_voxel_count():
    s = seg(("Milz", SPLEEN), ("Liver", LIVER), ("GTV", TUMOUR))
    with pytest.raises(LabelError) as err:
        segmentation_to_label(s, parse_segment_label_map(MAP))
    text = str(err.value)
    assert "'liver' (2 'Liver') and 'tumour' (3 'GTV') share 8 voxels" in text
    assert "priority" in text and "regions" in text and "spleen" not in text


def test_priority_paints_in_the_declared_order_later_wins():
    s = seg(("GTV", TUMOUR), ("Liver", LIVER))
    later_tumour = parse_segment_label_map(dict(MAP, overlap="priority", priority=["liver", "tumour"]))
    label, report = segmentation_to_label(s, later_tumour)
    assert (report.labels["liver"]["written"], report.labels["tumour"]["written"]) == (144 - 8, 32)
    assert (report.labels["liver"]["voxels"], report.labels["tumour"]["voxels"]) == (144, 32)
    assert report.overlaps == [{"labels": ["liver", "tumour"], "voxels": 8}] and report.overlap == "priority"
    assert np.all(label.array[TUMOUR] == 2)
    later_liver = parse_segment_label_map(dict(MAP, overlap="priority", priority=["tumour", "liver"]))
    label, report = segmentation_to_label(s, later_liver)
    assert (report.labels["liver"]["written"], report.labels["tumour"]["written"]) == (144, 32 - 8)
    assert np.all(label.array[LIVER] == 1)
    # without a declared order: by value (tumour 2 over liver 1); names not listed go first
    assert (
        segmentation_to_label(s, parse_segment_label_map(MAP), overlap="priority")[1].labels["tumour"]["written"] == 32
    )
    only_liver = parse_segment_label_map(dict(MAP, priority=["liver"]))
    assert segmentation_to_label(s, only_liver, overlap="priority")[1].labels["liver"]["written"] == 144


def nnunet_rebuild(table: SegmentLabelTable, label: np.ndarray):
    """The region masks nnU-Net trains on (its own transform), and the label map it writes back
    from perfect region predictions (LabelManager)."""
    pytest.importorskip("torch")
    LabelManager = pytest.importorskip("nnunetv2.utilities.label_handling.label_handling").LabelManager
    import torch
    from batchgeneratorsv2.transforms.utils.seg_to_regions import ConvertSegmentationToRegionsTransform

    spec = json.loads(json.dumps(table.nnunet_labels()))  # as dataset.json holds it
    manager = LabelManager(spec["labels"], spec.get("regions_class_order"))
    assert manager.has_regions
    regions = (
        ConvertSegmentationToRegionsTransform(manager.foreground_regions)
        ._apply_to_segmentation(torch.from_numpy(label.astype(np.int16)[None]))
        .numpy()
    )
    back = manager.convert_probabilities_to_segmentation(regions.astype(np.float32))
    return dict(zip([n for n in spec["labels"] if n != "background"], regions, strict=True)), np.asarray(back)


def test_regions_write_the_innermost_label_and_nnunet_rebuilds_every_structure():
    t = parse_segment_label_map(dict(MAP, overlap="regions", within={"tumour": "liver"}))
    assert t.nnunet_labels() == {
        "labels": {"background": 0, "liver": [1, 2], "spleen": 3, "tumour": 2},
        "regions_class_order": [1, 3, 2],
    }
    s = seg(("GTV", TUMOUR), ("Milz", SPLEEN), ("Liver", LIVER))
    label, report = segmentation_to_label(s, t)
    # 24 tumour voxels lie outside the drawn liver: the liver's region is liver + tumour
    assert report.labels["liver"] | {"segments": None} == {
        "value": 1,
        "segments": None,
        "voxels": 144,
        "written": 136,
        "region": 168,
    }
    assert report.labels["tumour"]["region"] == report.labels["tumour"]["written"] == 32
    assert report.labels["spleen"]["region"] == 18
    regions, back = nnunet_rebuild(t, label.array)
    np.testing.assert_array_equal(regions["liver"], LIVER | TUMOUR)
    np.testing.assert_array_equal(regions["tumour"], TUMOUR)
    np.testing.assert_array_equal(regions["spleen"], SPLEEN)
    np.testing.assert_array_equal(back, label.array)


def test_regions_nest_several_levels_like_brats():
    whole, core, enhancing = box(0, 4, 0, 10, 0, 12), box(1, 4, 2, 8, 2, 10), box(2, 3, 3, 5, 3, 5)
    t = parse_segment_label_map({
        "labels": {"whole_tumour": 1, "tumour_core": 2, "enhancing": 3}, "overlap": "regions",
        "within": {"enhancing": "tumour_core", "tumour_core": "whole_tumour"},
    })  # fmt: skip
    assert t.nnunet_labels()["labels"] == {
        "background": 0,
        "whole_tumour": [1, 2, 3],
        "tumour_core": [2, 3],
        "enhancing": 3,
    }
    label, report = segmentation_to_label(
        seg(("enhancing", enhancing), ("whole_tumour", whole), ("tumour_core", core)), t
    )
    assert [report.labels[n]["written"] for n in ("whole_tumour", "tumour_core", "enhancing")] == [
        480 - 144,
        144 - 4,
        4,
    ]
    regions, back = nnunet_rebuild(t, label.array)
    for name, mask in (("whole_tumour", whole), ("tumour_core", core), ("enhancing", enhancing)):
        np.testing.assert_array_equal(regions[name], mask)
    np.testing.assert_array_equal(back, label.array)


def test_regions_refuse_overlapping_labels_that_are_not_nested():
    t = parse_segment_label_map({
        "labels": {"liver": 1, "tumour": 2, "vessel": 3}, "overlap": "regions",
        "within": {"tumour": "liver", "vessel": "liver"},
    })  # fmt: skip
    inside_only = segmentation_to_label(
        seg(("liver", LIVER), ("tumour", box(0, 1, 0, 2, 0, 2)), ("vessel", box(2, 3, 3, 5, 3, 5))), t
    )
    assert inside_only[1].labels["liver"]["region"] == 144
    with pytest.raises(LabelError, match=r"'tumour' \(2 'tumour'\) and 'vessel' \(3 'vessel'\) share 6 voxels") as err:
        segmentation_to_label(seg(("liver", LIVER), ("tumour", TUMOUR), ("vessel", VESSEL)), t)
    assert "within" in str(err.value)
    flat = parse_segment_label_map(MAP)
    with pytest.raises(LabelError, match="share 8 voxels"):
        segmentation_to_label(seg(("Liver", LIVER), ("GTV", TUMOUR)), flat, overlap="regions")


def test_the_label_grows_to_uint16_for_values_above_255():
    t = parse_segment_label_map({"labels": {"liver": 300}})
    label, report = segmentation_to_label(seg(("liver", LIVER)), t)
    assert label.dtype == np.uint16 and int((label.array == 300).sum()) == 144 == report.labels["liver"]["written"]


def test_nothing_of_the_input_is_changed_and_unknown_policies_are_refused():
    s = seg(("Liver", LIVER), ("GTV", TUMOUR))
    before = [x.mask.copy() for x in s.segments]
    segmentation_to_label(s, parse_segment_label_map(MAP), overlap="priority")
    assert all(np.array_equal(a, x.mask) for a, x in zip(before, s.segments, strict=True))
    with pytest.raises(ExportError, match="unknown overlap policy"):
        segmentation_to_label(s, parse_segment_label_map(MAP), overlap="union")
    with pytest.raises(ExportError, match="unknown unmatched policy"):
        segmentation_to_label(s, parse_segment_label_map(MAP), unmatched="keep")


def test_a_table_is_the_export_label_table_inside():
    t = parse_segment_label_map(MAP)
    assert isinstance(t.table, LabelTable) and t.table.checked(consecutive=True) == {
        "background": 0,
        "liver": 1,
        "tumour": 2,
        "spleen": 3,
    }
