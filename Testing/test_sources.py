"""MedPrepLib.sources: the one place a path is resolved to stacks and a volume. Library messages
name stack ids, never command-line flags; the command line says how to give an id."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("pydicom")

from dicom_factory import write_ct_series  # noqa: E402

from MedPrepLib.cli import main  # noqa: E402
from MedPrepLib.errors import InputError, SeriesSelectionError  # noqa: E402
from MedPrepLib.imageio import write_image  # noqa: E402
from MedPrepLib.sources import choose_stack, find_stacks, load_path  # noqa: E402
from MedPrepLib.volume import Volume  # noqa: E402


def test_a_folder_a_file_and_a_dicomdir_name_the_same_stacks(tmp_path):
    paths = write_ct_series(tmp_path / "ct", 4)
    folder = find_stacks(tmp_path / "ct")
    one = find_stacks(paths[0])
    assert len(folder.stacks) == 1 and len(folder.stacks[0].headers) == 4
    assert len(one.stacks) == 1 and one.stacks[0].series_instance_uid == folder.stacks[0].series_instance_uid
    with pytest.raises(InputError, match="no such file or folder"):
        find_stacks(tmp_path / "missing")


def test_choosing_among_several_stacks_names_ids_not_flags(tmp_path, capsys):
    write_ct_series(tmp_path, 4, prefix="A")
    write_ct_series(tmp_path, 3, prefix="B", rows=16, cols=16)
    found = find_stacks(tmp_path)
    with pytest.raises(SeriesSelectionError) as exc:
        choose_stack(found.stacks, found.skipped, None, str(tmp_path))
    assert "choose one stack id" in str(exc.value) and "--series" not in str(exc.value)
    assert all(s.id in str(exc.value) for s in found.stacks)
    assert main(["convert", str(tmp_path), str(tmp_path / "o.nii.gz")]) == 2
    assert "give the stack id with --series ID" in capsys.readouterr().err


def test_an_image_file_takes_no_stack_id(tmp_path):
    path = write_image(Volume(np.zeros((2, 3, 4), np.int16)), tmp_path / "v.nii.gz")
    assert load_path(path).shape == (2, 3, 4)
    with pytest.raises(InputError, match="applies to DICOM input only") as exc:
        load_path(path, series="s1")
    assert "--series" not in str(exc.value)
