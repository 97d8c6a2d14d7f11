"""The header index stores full paths of scanned files: it can be switched off and deleted."""

from __future__ import annotations

import pytest

pytest.importorskip("pydicom")

from dicom_factory import write_ct_series  # noqa: E402

from MedPrepLib.cli import main  # noqa: E402


@pytest.fixture
def home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("MEDPREP_CACHE", raising=False)
    return home


def _written(home):
    return sorted(p.name for p in home.rglob("*") if p.is_file())


def test_scan_writes_the_index_and_cache_clear_deletes_it(tmp_path, home, capsys):
    write_ct_series(tmp_path / "Doe_Jane", 3)
    assert main(["scan", str(tmp_path / "Doe_Jane")]) == 0
    index = home / ".cache" / "medprep" / "dicom-index.sqlite"
    assert index.is_file()
    assert "Doe_Jane" in index.read_bytes().decode("latin-1")  # the full paths: why it must be clearable
    capsys.readouterr()
    assert main(["cache", "info"]) == 0
    assert str(index) in capsys.readouterr().out
    assert main(["cache", "clear"]) == 0
    assert "removed" in capsys.readouterr().out
    assert _written(home) == []
    assert main(["cache", "clear"]) == 0
    assert "no header index" in capsys.readouterr().out


@pytest.mark.parametrize("how", ["env", "flag"])
def test_cache_off_writes_nothing(tmp_path, home, monkeypatch, how):
    write_ct_series(tmp_path / "Doe_Jane", 3)
    args = ["scan", str(tmp_path / "Doe_Jane")]
    if how == "env":
        monkeypatch.setenv("MEDPREP_CACHE", "off")
    else:
        args.append("--no-cache")
    assert main(args) == 0
    assert _written(home) == []
    assert not any(p.name.endswith(".sqlite") for p in tmp_path.rglob("*"))


def test_cache_clear_with_a_cache_dir(tmp_path, home, capsys):
    write_ct_series(tmp_path / "data", 3)
    where = tmp_path / "idx"
    assert main(["scan", str(tmp_path / "data"), "--cache-dir", str(where / "i.sqlite")]) == 0
    assert (where / "i.sqlite").is_file()
    assert main(["cache", "clear", "--cache-dir", str(where / "i.sqlite")]) == 0
    assert list(where.iterdir()) == []
