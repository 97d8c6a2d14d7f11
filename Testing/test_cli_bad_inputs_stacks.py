"""Bad stacks through the real command: images at one position with nothing that orders them."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("pydicom")

from cli_run import assert_refused, leftovers, run_medprep  # noqa: E402
from dicom_factory import expected_stored, new_uid, write_slice  # noqa: E402

pytestmark = pytest.mark.pydicom_dependent


def test_images_at_one_position_are_not_a_volume(tmp_path):
    data = tmp_path / "data"
    uid = new_uid()
    for k in range(4):
        write_slice(
            data / f"img{k}.dcm", expected_stored(k, 8, 8), position=(0, 0, 0), series_uid=uid, instance_number=k + 1
        )
    out = tmp_path / "out"
    out.mkdir()
    proc = run_medprep("convert", data, out / "ct.nii.gz")
    assert_refused(proc, contains=("not a volume", "4 images at the same position"))
    assert leftovers(out) == []
    proc = run_medprep("scan", data, "--json")
    assert proc.returncode == 0, proc.stderr
    listing = json.loads(proc.stdout)
    assert listing["series"] == []
    assert [s["reason"] for s in listing["skipped"]] == ["not_a_volume"] * 4
    assert all("not a volume" in s["detail"] for s in listing["skipped"])
