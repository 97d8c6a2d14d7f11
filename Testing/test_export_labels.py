"""The dataset's label table and the per-case label check: a label one slice short, with 0.5
values or with a value outside the table is refused; a remap, the resample policy and the
volumes in ml give what the dataset must hold."""

from __future__ import annotations

import json

import numpy as np
import pytest

from MedPrepLib.errors import ExportError, LabelError
from MedPrepLib.export.labels import (
    LabelTable,
    found_values,
    parse_label_map,
    prepare_label,
    read_label_map,
)
from MedPrepLib.geometry import Geometry
from MedPrepLib.imageio import read_image, write_image
from MedPrepLib.recipe.run import LABEL_GRID_TOLERANCE_MM
from MedPrepLib.volume import Volume

SPACING = (0.8, 0.8, 2.5)
ORIGIN = (-10.0, 5.0, 30.0)
TABLE = parse_label_map({"liver": 1, "tumour": 2})


def image(shape=(10, 12, 14)) -> Volume:
    return Volume(np.zeros(shape, np.int16), spacing=SPACING, origin=ORIGIN)


def label_like(img: Volume, array) -> Volume:
    return Volume(np.asarray(array), img.geometry)


def blob(shape=(10, 12, 14), value=1, dtype=np.uint8) -> np.ndarray:
    a = np.zeros(shape, dtype)
    a[3:7, 4:8, 5:9] = value
    return a


# --- the label map ------------------------------------------------------------------------


def test_the_three_shapes_of_a_label_map():
    full = parse_label_map({"labels": {"liver": 1, "tumour": 2}, "remap": {"3": 1, "4": 2, "-1": 0}})
    assert dict(full.labels) == {"background": 0, "liver": 1, "tumour": 2}
    assert dict(full.remap) == {-1: 0, 3: 1, 4: 2}
    names = parse_label_map({"tumour": 2, "liver": 1})
    assert list(names.labels) == ["background", "liver", "tumour"] and not names.remap
    values = parse_label_map({"3": 1, "5": 2})
    assert dict(values.labels) == {"background": 0, "label_1": 1, "label_2": 2}
    assert dict(values.remap) == {3: 1, 5: 2}
    assert parse_label_map(full.to_dict()) == full  # the full form reads back


@pytest.mark.parametrize(
    ("obj", "match"),
    [
        ({"liver": 1, "3": 2}, "mixes label names and source values"),
        ({"labels": {"liver": 1}, "remap": {"3": 7}}, "sends 3 to 7, which the label table does not name"),
        ({"background": 1, "liver": 2}, "must name value 0 'background'"),
        ({"liver": 1, "tumour": 1}, "two names the same value"),
        ({"liver": "1"}, "values are integers"),
        ({"labels": {"liver": 1}, "remap": {"x": 1}}, "not an integer voxel value"),
        ({"3": 1.5}, "the target must be an integer"),
        ([1, 2], "JSON object"),
        ({}, "JSON object"),
    ],
)
def test_bad_label_maps_are_refused(obj, match):
    with pytest.raises(ExportError, match=match):
        parse_label_map(obj)


def test_read_label_map_file(tmp_path):
    path = tmp_path / "labels.json"
    path.write_text(json.dumps({"labels": {"liver": 1}, "remap": {"6": 1}}))
    assert dict(read_label_map(path).remap) == {6: 1}
    path.write_text("{not json")
    with pytest.raises(ExportError, match="not valid JSON"):
        read_label_map(path)


def test_table_from_the_values_found_and_the_nnunet_check():
    table = LabelTable.from_values([0, 3, 1])
    assert dict(table.labels) == {"background": 0, "label_1": 1, "label_3": 3}
    assert table.checked() == {"background": 0, "label_1": 1, "label_3": 3}
    with pytest.raises(ExportError, match="not consecutive"):
        table.checked(consecutive=True)
    with pytest.raises(ExportError, match="negative"):
        LabelTable.from_values([-1, 0])


# --- the per-case check ---------------------------------------------------------------------


def test_a_label_on_the_image_grid_becomes_uint8_with_its_facts():
    img = image()
    source = blob(dtype=np.int32) + (np.arange(14) == 13).astype(np.int32) * 2  # a tumour column at x = 13
    label, facts = prepare_label(label_like(img, source), img, TABLE)
    assert label.dtype == np.uint8 and label.geometry == img.geometry
    np.testing.assert_array_equal(label.array, source)
    assert facts.present == (1, 2) and not facts.resampled and facts.warnings == ()
    assert facts.voxels == {"liver": 64, "tumour": 120}
    ml = 0.8 * 0.8 * 2.5 / 1000
    assert facts.volumes_ml == {"liver": pytest.approx(64 * ml), "tumour": pytest.approx(120 * ml)}
    assert facts.to_dict()["volumes_ml"]["liver"] == pytest.approx(0.1024)


def test_remap_gives_the_table_values():
    img = image()
    source = blob(value=30, dtype=np.int16)
    source[0, 0, :3] = 40
    source[9, 11, 13] = -1
    table = parse_label_map({"labels": {"liver": 1, "tumour": 2}, "remap": {"30": 1, "40": 2, "-1": 0}})
    label, facts = prepare_label(label_like(img, source), img, table)
    expected = np.zeros(source.shape, np.uint8)
    expected[source == 30] = 1
    expected[source == 40] = 2
    np.testing.assert_array_equal(label.array, expected)
    assert facts.voxels == {"liver": 64, "tumour": 3}
    assert found_values(label_like(img, source)) == (-1, 0, 30, 40)


def test_a_large_remap_without_a_lookup_table():
    img = image()
    source = blob(value=70000, dtype=np.int32)
    table = parse_label_map({"70000": 1})
    label, facts = prepare_label(label_like(img, source), img, table)
    np.testing.assert_array_equal(label.array, (source == 70000).astype(np.uint8))
    assert facts.present == (1,)


def test_values_above_255_are_written_as_uint16():
    img = image()
    table = parse_label_map({"liver": 1, "vessel": 300})
    label, facts = prepare_label(label_like(img, blob(value=300, dtype=np.int32)), img, table)
    assert label.dtype == np.uint16 and facts.voxels == {"liver": 0, "vessel": 64}


def test_a_label_one_slice_short_is_refused_naming_both_grids():
    img = image((10, 12, 14))
    short = Volume(blob((9, 12, 14)), spacing=SPACING, origin=ORIGIN)
    with pytest.raises(LabelError, match="the label has 9 slices, the image 10") as info:
        prepare_label(short, img, TABLE)
    assert "14 x 12 x 9 voxels" in str(info.value) and "14 x 12 x 10 voxels" in str(info.value)
    assert isinstance(info.value, ExportError)


def test_other_grid_differences_are_named():
    img = image()
    moved = Volume(blob(), spacing=SPACING, origin=(ORIGIN[0] + 1.5, ORIGIN[1], ORIGIN[2]))
    with pytest.raises(LabelError, match="origin is 1.5 mm from the image's"):
        prepare_label(moved, img, TABLE)
    finer = Volume(blob(), spacing=(0.8, 0.8, 1.25), origin=ORIGIN)
    with pytest.raises(LabelError, match=r"spacing is \(0.8, 0.8, 1.25\) mm"):
        prepare_label(finer, img, TABLE)
    flipped = Volume(blob(), spacing=SPACING, origin=ORIGIN, direction=np.diag([-1.0, 1.0, 1.0]))
    with pytest.raises(LabelError, match="axes point another way"):
        prepare_label(flipped, img, TABLE)


def test_a_grid_within_the_tolerance_takes_the_image_grid_exactly():
    img = image()
    off = LABEL_GRID_TOLERANCE_MM / 2
    near = Volume(blob(), spacing=(0.8 + off, 0.8, 2.5), origin=(ORIGIN[0] - off, ORIGIN[1], ORIGIN[2]))
    label, facts = prepare_label(near, img, TABLE)
    assert label.geometry == img.geometry and not facts.resampled
    beyond = Volume(blob(), spacing=SPACING, origin=(ORIGIN[0] + 3 * LABEL_GRID_TOLERANCE_MM, ORIGIN[1], ORIGIN[2]))
    with pytest.raises(LabelError):
        prepare_label(beyond, img, TABLE)


def test_non_integer_values_are_refused():
    img = image()
    soft = blob(dtype=np.float32)
    soft[5, 5, 5] = 0.5
    with pytest.raises(LabelError, match=r"non-integer values \(e\.g\. 0\.5\).*integer class values") as info:
        prepare_label(label_like(img, soft), img, TABLE)
    assert "linear interpolation" in str(info.value)
    whole = blob(dtype=np.float32) * 2  # float, but whole numbers: fine
    label, facts = prepare_label(label_like(img, whole), img, TABLE)
    assert label.dtype == np.uint8 and facts.present == (2,)


def test_values_outside_the_table_are_refused():
    img = image()
    with pytest.raises(LabelError, match=r"value\(s\) 3, which the label table does not name"):
        prepare_label(label_like(img, blob(value=3)), img, TABLE)
    negative = blob(dtype=np.int16)
    negative[0, 0, 0] = -1
    with pytest.raises(LabelError, match=r"value\(s\) -1,"):
        prepare_label(label_like(img, negative), img, TABLE)


def test_an_empty_label_is_a_warning():
    img = image()
    label, facts = prepare_label(label_like(img, np.zeros(img.shape, np.uint8)), img, TABLE)
    assert facts.empty and facts.present == () and facts.voxels == {"liver": 0, "tumour": 0}
    assert facts.warnings == ("the label is empty (background only)",)


def test_resample_policy_gives_a_label_on_exactly_the_image_grid():
    img = image((10, 12, 14))
    # a label at half the resolution covering the same field of view: voxel edges coincide
    coarse_spacing = (1.6, 1.6, 5.0)
    coarse_origin = tuple(o + (c - s) / 2 for o, c, s in zip(ORIGIN, coarse_spacing, SPACING))
    coarse = np.zeros((5, 6, 7), np.int16)
    coarse[1:3, 2:4, 2:5] = 1
    coarse[4, 5, 6] = 2
    label = Volume(coarse, spacing=coarse_spacing, origin=coarse_origin)
    with pytest.raises(LabelError, match="the label has 5 slices, the image 10"):
        prepare_label(label, img, TABLE)
    out, facts = prepare_label(label, img, TABLE, grid_policy="resample")
    assert out.geometry == img.geometry and out.dtype == np.uint8
    assert set(np.unique(out.array)) <= set(TABLE.values)
    expected = coarse.repeat(2, 0).repeat(2, 1).repeat(2, 2).astype(np.uint8)
    np.testing.assert_array_equal(out.array, expected)
    assert facts.resampled and facts.present == (1, 2)
    assert any("resampled onto its image's grid (nearest)" in w for w in facts.warnings)
    out_linear, _ = prepare_label(label, img, TABLE, grid_policy="resample", interpolation="label_linear")
    assert out_linear.geometry == img.geometry and set(np.unique(out_linear.array)) <= {0, 1, 2}


def test_resample_onto_a_shifted_image_fills_background_and_refuses_a_lost_value():
    img = image()
    shifted = Volume(blob(), spacing=SPACING, origin=(ORIGIN[0] + 2 * SPACING[0], ORIGIN[1], ORIGIN[2]))
    out, facts = prepare_label(shifted, img, TABLE, grid_policy="resample")
    np.testing.assert_array_equal(out.array[:, :, 2:], blob()[:, :, :-2])
    assert out.geometry == img.geometry and facts.voxels == {"liver": 64, "tumour": 0}
    away = Volume(blob(), spacing=SPACING, origin=(ORIGIN[0] + 100.0, ORIGIN[1], ORIGIN[2]))  # outside the image
    with pytest.raises(LabelError, match=r"label 1 \(liver\) vanished"):
        prepare_label(away, img, TABLE, grid_policy="resample")


def test_the_inputs_are_not_modified_and_bad_arguments_are_refused():
    img = image()
    source = blob(value=30, dtype=np.int16)
    kept = source.copy()
    prepare_label(label_like(img, source), img, parse_label_map({"30": 1}))
    np.testing.assert_array_equal(source, kept)
    with pytest.raises(ExportError, match="grid policy"):
        prepare_label(label_like(img, source), img, TABLE, grid_policy="nearest")
    with pytest.raises(ExportError, match="interpolation"):
        prepare_label(label_like(img, source), img, TABLE, interpolation="linear")
    with pytest.raises(LabelError, match="components per voxel"):
        prepare_label(Volume(np.zeros((*img.shape, 2), np.uint8), img.geometry), img, TABLE)
    label, _ = prepare_label(label_like(img, blob().astype(bool)), img, TABLE)
    assert label.dtype == np.uint8


def test_label_files_round_trip_through_the_check(tmp_path):
    img = image((10, 12, 14))
    write_image(
        Volume(blob((9, 12, 14)).astype(np.float32) / 2, spacing=SPACING, origin=ORIGIN), tmp_path / "short.nii.gz"
    )
    write_image(label_like(img, blob()), tmp_path / "good.nrrd")
    # NIfTI stores geometry in float32: the label read back still counts as the image's grid
    write_image(img, tmp_path / "image.nii.gz")
    read_back = read_image(tmp_path / "image.nii.gz")
    label, facts = prepare_label(read_image(tmp_path / "good.nrrd"), read_back, TABLE)
    assert label.geometry == read_back.geometry and facts.voxels == {"liver": 64, "tumour": 0}
    with pytest.raises(LabelError, match="the label has 9 slices, the image 10"):
        prepare_label(read_image(tmp_path / "short.nii.gz"), read_back, TABLE)
    assert Geometry.isclose(read_back.geometry, img.geometry, atol_mm=LABEL_GRID_TOLERANCE_MM)
