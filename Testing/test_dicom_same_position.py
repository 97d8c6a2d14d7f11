"""Several images at one position: a 4D series only when a tag separates its volumes.

Without temporal position, trigger time, acquisition number or time, diffusion weighting, echo
or stack id, N images at one position are not a volume (once they loaded as a single slice
with N "time points" ordered by nothing, and a made-up 1 mm z spacing): scan lists them as
skipped ``not_a_volume`` and loading refuses with that reason. Every real 4D case still loads.
"""

from __future__ import annotations

import numpy as np
import pytest

pydicom = pytest.importorskip("pydicom")

from dicom_factory import expected_stored, new_uid, write_enhanced_frames, write_slice  # noqa: E402

from MedPrepLib.dicom.scan import scan  # noqa: E402
from MedPrepLib.errors import UnsupportedDicomError  # noqa: E402
from MedPrepLib.sources import load_path  # noqa: E402

pytestmark = pytest.mark.pydicom_dependent

ROWS, COLS = 8, 10
AXIAL = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def _pile(folder, n=4, **per_file):
    """n single-frame images at one position, told apart by InstanceNumber only, plus the
    attributes ``per_file[name](k)`` (e.g. a temporal tag)."""
    uid = new_uid()
    for k in range(n):
        extra = {name: value(k) for name, value in per_file.items()}
        write_slice(
            folder / f"img{k}.dcm",
            expected_stored(k, ROWS, COLS),
            position=(0.0, 0.0, 12.0),
            series_uid=uid,
            instance_number=k + 1,
            **extra,
        )


def _refused_as_not_a_volume(folder, n_images: int, what: str = "images"):
    result = scan(folder, cache=False)
    assert result.stacks == []
    assert {s.reason for s in result.skipped} == {"not_a_volume"}
    assert result.to_json_dict()["skipped"][0]["reason"] == "not_a_volume"
    assert all(
        f"not a volume: {n_images} {what} at the same position and nothing orders them" in s.detail
        for s in result.skipped
    )
    with pytest.raises(UnsupportedDicomError) as exc:
        load_path(folder)
    assert f"not a volume: {n_images} {what} at the same position and nothing orders them" in str(exc.value)
    assert exc.value.path == str(folder)


def test_single_frame_images_at_one_position_without_an_ordering_tag(tmp_path):
    _pile(tmp_path, 4)
    _refused_as_not_a_volume(tmp_path, 4)


def test_equal_acquisition_times_order_nothing(tmp_path):
    _pile(tmp_path, 3, AcquisitionTime=lambda k: "101010.000", AcquisitionNumber=lambda k: 1)
    _refused_as_not_a_volume(tmp_path, 3)


def test_enhanced_frames_at_one_position_without_temporal_tags(tmp_path):
    frames = [
        {"stored": expected_stored(k, ROWS, COLS), "position": (0, 0, 5.0), "orientation": AXIAL} for k in range(5)
    ]
    write_enhanced_frames(tmp_path / "e.dcm", frames)
    _refused_as_not_a_volume(tmp_path, 5, "frames")


def test_enhanced_frames_repeating_positions_without_temporal_tags_are_no_4d(tmp_path):
    # three positions, each twice, nothing but the frame order: not a 4D series either; the
    # loader treats the repeats as a resent slice (equal pixels dropped, different ones refused)
    frames = [
        {"stored": expected_stored(k, ROWS, COLS), "position": (0, 0, 3.0 * (k % 3)), "orientation": AXIAL}
        for k in range(6)
    ]
    write_enhanced_frames(tmp_path / "e.dcm", frames)
    (stack,) = scan(tmp_path, cache=False).stacks
    assert stack.n_timepoints == 1 and stack.temporal_key is None
    with pytest.raises(Exception, match="same position"):
        load_path(tmp_path)


# --------------------------------------------------------------------------- real 4D keeps loading
@pytest.mark.parametrize(
    "tag",
    [
        {"TemporalPositionIdentifier": lambda k: k + 1},
        {"TriggerTime": lambda k: 40.0 * k},
        {"AcquisitionNumber": lambda k: k + 1},
        {"AcquisitionTime": lambda k: f"1010{10 + k:02d}.000"},
    ],
    ids=["temporal_position", "trigger_time", "acquisition_number", "acquisition_time"],
)
def test_one_slice_over_time_with_a_temporal_tag_is_4d(tmp_path, tag):
    _pile(tmp_path, 4, **tag)
    (stack,) = scan(tmp_path, cache=False).stacks
    assert stack.n_timepoints == 4
    volume = load_path(tmp_path)
    assert volume.shape == (1, ROWS, COLS, 4)
    for t in range(4):
        np.testing.assert_array_equal(volume.array[0, :, :, t], expected_stored(t, ROWS, COLS) - 1024)


def test_enhanced_frames_at_one_position_with_temporal_index_are_4d(tmp_path):
    frames = [
        {"stored": expected_stored(k, ROWS, COLS), "position": (0, 0, 5.0), "orientation": AXIAL, "temporal": 4 - k}
        for k in range(4)
    ]
    write_enhanced_frames(tmp_path / "e.dcm", frames)
    volume = load_path(tmp_path)
    assert volume.shape == (1, ROWS, COLS, 4)
    np.testing.assert_array_equal(volume.array[0, :, :, 0], expected_stored(3, ROWS, COLS))  # temporal 1


def _diffusion(path, weightings, n_slices):
    """An enhanced MR file of ``n_slices`` positions x the (b-value, direction) ``weightings``,
    frames volume by volume, without TemporalPositionIndex (as DWI objects are often written)."""
    write_enhanced_frames(
        path,
        [
            {"stored": expected_stored(10 * v + z, ROWS, COLS), "position": (0, 0, 4.0 * z), "orientation": AXIAL}
            for v in range(len(weightings))
            for z in range(n_slices)
        ],
    )
    ds = pydicom.dcmread(path)
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    for k, item in enumerate(ds.PerFrameFunctionalGroupsSequence):
        b, direction = weightings[k // n_slices]
        diffusion = Dataset()
        diffusion.DiffusionBValue = b
        diffusion.DiffusionDirectionality = "DIRECTIONAL" if direction else "NONE"
        if direction:
            gradient = Dataset()
            gradient.DiffusionGradientOrientation = list(direction)
            diffusion.DiffusionGradientDirectionSequence = Sequence([gradient])
        item.MRDiffusionSequence = Sequence([diffusion])
    ds.save_as(path)


@pytest.mark.parametrize("n_slices", [1, 3])
def test_enhanced_diffusion_volumes_are_told_apart_by_b_value_and_direction(tmp_path, n_slices):
    weightings = [(0.0, None), (1000.0, (1.0, 0.0, 0.0)), (1000.0, (0.0, 1.0, 0.0)), (1000.0, (0.0, 0.0, 1.0))]
    _diffusion(tmp_path / "dwi.dcm", weightings, n_slices)
    (stack,) = scan(tmp_path, cache=False).stacks
    assert stack.n_timepoints == 4 and stack.temporal_key == "diffusion"
    volume = load_path(tmp_path)
    assert volume.shape == (n_slices, ROWS, COLS, 4)
    for v in range(4):  # volumes in the order the file lists the weightings
        for z in range(n_slices):
            np.testing.assert_array_equal(volume.array[z, :, :, v], expected_stored(10 * v + z, ROWS, COLS))
