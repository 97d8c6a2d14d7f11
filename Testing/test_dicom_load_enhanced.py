"""Enhanced multi-frame objects: geometry from functional groups, 4D from temporal indices,
echoes and orientations inside one file split into separate stacks (frame selections)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pydicom")

from dicom_factory import write_enhanced_mr  # noqa: E402

from MedPrepLib.dicom.group import group_stacks  # noqa: E402
from MedPrepLib.dicom.header import read_header  # noqa: E402
from MedPrepLib.dicom.load import load_stack  # noqa: E402
from MedPrepLib.sources import load_path  # noqa: E402

pytestmark = pytest.mark.pydicom_dependent


def _expected(facts, **where):
    out = {}
    for f in facts:
        if all(f[k] == v for k, v in where.items()):
            out[(f["slice"], f["time"])] = f["pixels"]
    return out


def test_enhanced_3d_uses_functional_group_geometry(tmp_path):
    path, facts = write_enhanced_mr(tmp_path / "e.dcm", 4, rescale=(2.0, -5.0))
    vol = load_path(tmp_path)
    assert vol.shape == (4, 12, 16)
    assert vol.spacing == pytest.approx((1.1, 0.9, 3.0))
    assert vol.origin == pytest.approx((-5, -6, 0))
    for (z, _), pixels in _expected(facts).items():
        np.testing.assert_array_equal(vol.array[z], pixels * 2 - 5)


def test_enhanced_4d_from_temporal_position_index(tmp_path):
    path, facts = write_enhanced_mr(tmp_path / "e.dcm", 3, n_times=2)
    vol = load_path(tmp_path)
    assert vol.shape == (3, 12, 16, 2)
    for (z, t), pixels in _expected(facts).items():
        np.testing.assert_array_equal(vol.array[z, ..., t], pixels)


def test_enhanced_echoes_become_stacks_of_selected_frames(tmp_path):
    path, facts = write_enhanced_mr(tmp_path / "e.dcm", 3, echo_times=(10.0, 25.0))
    stacks, skipped = group_stacks([read_header(str(path))])
    assert not skipped and len(stacks) == 2
    for e, stack in enumerate(sorted(stacks, key=lambda s: s.split_key["echo"])):
        assert stack.frame_selection is not None
        vol = load_stack(stack)
        assert vol.shape == (3, 12, 16)
        for (z, _), pixels in _expected(facts, echo=e).items():
            np.testing.assert_array_equal(vol.array[z], pixels)


def test_enhanced_two_orientations_in_one_file(tmp_path):
    path, facts = write_enhanced_mr(tmp_path / "e.dcm", 3, second_orientation=True)
    stacks, _ = group_stacks([read_header(str(path))])
    assert len(stacks) == 2
    directions = set()
    for stack in stacks:
        vol = load_stack(stack)
        assert vol.shape == (3, 12, 16)
        directions.add(vol.geometry.orientation)
        s = 0 if vol.geometry.direction[2, 2] > 0.5 else 1
        for (z, _), pixels in _expected(facts, stack=s).items():
            np.testing.assert_array_equal(vol.array[z], pixels)
    assert len(directions) == 2
