"""How far ``resample`` bridges missing slices: a few by interpolation, never a range gap."""

from __future__ import annotations

import numpy as np
import pytest
from dicom_factory import new_uid, write_ct_series

from MedPrepLib.errors import GeometryError
from MedPrepLib.sources import load_path


def test_three_missing_slices_are_bridged(tmp_path):
    uid = new_uid()
    write_ct_series(tmp_path, 4, origin=(-11.0, -11.0, 0.0), step=2.5, series_uid=uid)
    write_ct_series(tmp_path, 4, origin=(-11.0, -11.0, 17.5), step=2.5, series_uid=uid, prefix="B")  # 4 steps
    volume = load_path(tmp_path)
    assert volume.shape[0] == 11  # 0 .. 25 mm every 2.5 mm
    assert volume.spacing[2] == pytest.approx(2.5)
    assert any("uneven slice spacing" in w for w in volume.metadata["warnings"])


def test_a_range_gap_is_refused_with_the_numbers_even_when_resampling(tmp_path):
    uid = new_uid()
    write_ct_series(tmp_path, 3, origin=(-11.0, -11.0, 0.0), step=2.5, series_uid=uid)
    write_ct_series(tmp_path, 3, origin=(-11.0, -11.0, 100.0), step=2.5, series_uid=uid, prefix="B")
    with pytest.raises(GeometryError) as exc:
        load_path(tmp_path, geometry_policy="resample")
    message = str(exc.value)
    assert "95.000 mm" in message and "38.0 slice steps" in message and "separate ranges" in message
    # the raw stack is still there for whoever asks for it explicitly
    from MedPrepLib.sources import load_files

    raw = load_files(sorted(str(p) for p in tmp_path.iterdir()), regularize=False)
    assert raw.shape[0] == 6 and not raw.metadata["regularized"]
    assert np.isfinite(raw.array).all()
