"""Intensity steps on real CT from the corpus: GE's out-of-field padding, the series' window."""

from __future__ import annotations

import numpy as np
import pytest

from MedPrepLib.recipe import Recipe, run_recipe
from MedPrepLib.sources import load_path

pytestmark = pytest.mark.corpus


def test_ge_padding_value_becomes_air_and_nothing_else_changes(corpus):
    """GE Discovery MI: PixelPaddingValue -2000 stored, intercept -1024 -> -3024 HU outside the
    field of view (the references keep it unmasked, see the corpus README)."""
    volume = load_path(corpus / "rt-utils" / "ct_ge_discoverymi_phantom2" / "dicom")
    padded = volume.array == -3024
    assert padded.any()
    res = run_recipe(Recipe.from_dict({"version": 1, "steps": [{"op": "pad_to_air", "out_of_field": False}]}), volume)
    out = res.image.array
    assert res.provenance["steps"][0]["record"] == {"padding_values": [-3024.0], "voxels_set_to_air": int(padded.sum())}
    assert np.all(out[padded] == -1000)
    np.testing.assert_array_equal(out[~padded], volume.array[~padded])
    # The series' own window (WindowCenter 0 / WindowWidth 40 here) then maps air to 0.
    res = run_recipe(
        Recipe.from_dict({"version": 1, "steps": [{"op": "pad_to_air"}, {"op": "window", "from_series": True}]}),
        volume,
    )
    assert res.provenance["steps"][1]["record"]["windows"] == [{"level": 0.0, "width": 40.0, "source": "series"}]
    assert np.all(res.image.array[padded] == 0)
    hu = volume.array[~padded].astype(np.float64)
    np.testing.assert_allclose(res.image.array[~padded], np.clip((hu + 20) / 40, 0, 1), atol=1e-6)
