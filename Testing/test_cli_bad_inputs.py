"""The bad-input catalogue through the real command line (a subprocess each): unwritable outputs,
interrupted runs, refused argument combinations. Every refusal is one line on stderr, a
non-zero exit, no traceback, and nothing left at the output name or in a staging folder.
(Pixel-data and stack cases: ``test_cli_bad_inputs_pixels.py``, ``test_cli_bad_inputs_stacks.py``.)
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
from cli_run import assert_refused, cli_env, leftovers, run_medprep

from MedPrepLib.atomic import STAGING_PREFIX, remove_stale_staging


@pytest.fixture(scope="module")
def small_image(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("in") / "ct.nii.gz"
    image = sitk.GetImageFromArray(np.arange(6 * 8 * 10, dtype=np.int16).reshape(6, 8, 10))
    sitk.WriteImage(image, str(path))
    return path


@pytest.fixture(scope="module")
def recipe(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("recipe") / "r.json"
    path.write_text('{"version": 1, "steps": [{"op": "clip_scale", "min": 0, "max": 100}]}')
    return path


@pytest.fixture(scope="module")
def big_image(tmp_path_factory) -> Path:
    """~100 MB of noise: writing it as .nii.gz takes seconds, long enough to be interrupted."""
    path = tmp_path_factory.mktemp("big") / "big.nii"
    noise = np.random.default_rng(0).integers(-1000, 2000, (200, 512, 512), dtype=np.int16)
    sitk.WriteImage(sitk.GetImageFromArray(noise), str(path), False)
    return path


@contextmanager
def _tmpfs(where: Path, options: str):
    """A tmpfs mounted at ``where`` with mount ``options`` for the block; skips without root."""
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(where)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.decode().strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", str(where)], check=False)


@pytest.fixture
def read_only_folder(tmp_path):
    with _tmpfs(tmp_path / "ro", "ro,size=1m") as where:
        yield where


@pytest.fixture
def full_disk(tmp_path):
    with _tmpfs(tmp_path / "tiny", "size=256k") as where:
        yield where


def _commands(image: Path, recipe: Path, out: Path) -> dict[str, list]:
    return {
        "convert": ["convert", image, out / "o.nii.gz"],
        "preprocess": ["preprocess", image, out / "o.nii.gz", "--recipe", recipe],
    }


@pytest.mark.parametrize("command", ["convert", "preprocess"])
def test_read_only_file_system(small_image, recipe, read_only_folder, command):
    proc = run_medprep(*_commands(small_image, recipe, read_only_folder)[command])
    assert_refused(proc, contains=(f"cannot write to {read_only_folder}", "read-only file system"))


@pytest.mark.parametrize("command", ["convert", "preprocess"])
def test_no_space_left(big_image, recipe, full_disk, command):
    """SimpleITK's NIfTI writer leaves a truncated file on a full disk and reports success."""
    proc = run_medprep(*_commands(big_image, recipe, full_disk)[command])
    assert_refused(proc, contains=("cannot write to", "no space left on device"))
    assert leftovers(full_disk) == []


def test_a_folder_that_takes_no_files(small_image):
    proc = run_medprep("convert", small_image, "/proc/medprep-test.nii.gz")
    assert_refused(proc, contains="cannot write to /proc: this folder takes no new files")


def test_label_without_label_output_is_refused(small_image, recipe, tmp_path):
    proc = run_medprep("preprocess", small_image, tmp_path / "o.nii.gz", "--recipe", recipe, "--label", small_image)
    assert_refused(proc, contains="--label-output")
    assert leftovers(tmp_path) == []


def _start_convert(big_image: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "MedPrepLib", "convert", str(big_image), str(out / "o.nii.gz")],
        env=cli_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def _wait_for_partial_output(proc: subprocess.Popen, out: Path, timeout: float = 60) -> Path:
    """The staging folder once the data file in it has grown past 1 MB (the write is under way)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for folder in out.glob(STAGING_PREFIX + "*"):
            partial = folder / "o.nii.gz"
            try:
                if partial.stat().st_size > 1 << 20:
                    return folder
            except FileNotFoundError:
                pass
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.02)
    proc.kill()
    raise AssertionError("the write never started")


@pytest.mark.parametrize("signame", ["SIGTERM", "SIGHUP", "SIGINT"])
def test_signal_during_a_long_write_cleans_up_and_stops_at_once(big_image, tmp_path, signame):
    out = tmp_path / "out"
    out.mkdir()
    proc = _start_convert(big_image, out)
    _wait_for_partial_output(proc, out)
    sent = time.monotonic()
    proc.send_signal(getattr(signal, signame))
    _, err = proc.communicate(timeout=60)
    waited = time.monotonic() - sent
    assert proc.returncode == 128 + getattr(signal, signame), err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert leftovers(out) == []
    # The write in progress needs seconds more; a chunked writer stops between two 4 MB pieces.
    assert waited < 3.0, f"took {waited:.1f} s to stop after {signame}"


def test_after_sigkill_the_next_run_removes_the_dead_process_staging_folder(big_image, small_image, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    proc = _start_convert(big_image, out)
    staging = _wait_for_partial_output(proc, out)
    proc.kill()
    proc.communicate(timeout=60)
    assert staging.is_dir()  # SIGKILL cannot be handled: the debris is there
    done = run_medprep("convert", small_image, out / "small.nii.gz")
    assert done.returncode == 0, done.stderr
    assert leftovers(out) == ["small.nii.gz"]


def test_stale_staging_rules(tmp_path):
    """Removed: this host's folders whose process is gone. Kept: live processes, other hosts,
    anything not of MedPrep's staging naming (the header index lives beside data too)."""
    from MedPrepLib.atomic import _host

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    names = {
        "dead": f"{STAGING_PREFIX}{_host()}-{dead.pid}-abc123",
        "alive": f"{STAGING_PREFIX}{_host()}-{os.getppid()}-abc123",
        "other_host": f"{STAGING_PREFIX}some-other-host-{dead.pid}-abc123",
        "index": ".medprep-index.sqlite",
        "user": ".medprep-notes",
        "legacy_old": ".medprep-a1b2c3d4",  # MedPrep 0.1's naming, two days old: debris
        "legacy_new": ".medprep-e5f6g7h8",  # the same naming, written a minute ago: perhaps live
    }
    for name in names.values():
        (tmp_path / name).mkdir()
        (tmp_path / name / "partial").write_bytes(b"x" * 100)
    two_days_ago = time.time() - 2 * 24 * 3600
    os.utime(tmp_path / names["legacy_old"], (two_days_ago, two_days_ago))
    removed = remove_stale_staging(tmp_path)
    assert sorted(p.name for p in removed) == sorted([names["dead"], names["legacy_old"]])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(v for k, v in names.items() if k not in ("dead", "legacy_old"))
    shutil.rmtree(tmp_path / names["alive"])


def test_demo_into_a_read_only_folder(read_only_folder):
    proc = run_medprep("demo", read_only_folder / "demo")
    assert_refused(proc, contains=(f"cannot write to {read_only_folder}", "read-only file system"))
