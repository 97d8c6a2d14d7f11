"""Large files past the page cache (MedPrepLib.directio): the same bytes as a buffered write,
whatever the size, the device's mood or the filesystem."""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest
import SimpleITK as sitk

from MedPrepLib import directio
from MedPrepLib.directio import BLOCK_BYTES, BUFFER_BYTES, DirectFile, open_for_writing
from MedPrepLib.imageio import write_image
from MedPrepLib.volume import Volume

needs_direct = pytest.mark.skipif(not directio._O_DIRECT, reason="no O_DIRECT on this platform")


def _payload(n: int, seed: int = 0) -> bytes:
    return np.random.default_rng(seed).integers(0, 256, n, dtype=np.uint8).tobytes()


def _direct_file(path):
    try:
        return DirectFile(path)
    except OSError as exc:
        pytest.skip(f"this filesystem refuses O_DIRECT ({exc.strerror})")


@needs_direct
@pytest.mark.parametrize("size", [0, 1, BLOCK_BYTES - 1, BLOCK_BYTES, BLOCK_BYTES + 1, BUFFER_BYTES, 2 * BUFFER_BYTES + 12345])
def test_direct_file_holds_exactly_what_was_written(tmp_path, size):
    data = _payload(size, size)
    with _direct_file(tmp_path / "f.bin") as f:
        for start in range(0, size, 3_000_001):  # pieces that fit no block or buffer boundary
            f.write(memoryview(data)[start : start + 3_000_001])
        assert f.direct
    assert (tmp_path / "f.bin").read_bytes() == data


@needs_direct
def test_a_refused_direct_write_carries_on_buffered(tmp_path, monkeypatch):
    real_write, calls = os.write, []

    def refusing(fd, data):
        calls.append(len(data))
        if len(calls) == 1:
            raise OSError(errno.EINVAL, "Invalid argument")
        return real_write(fd, data)

    data = _payload(BUFFER_BYTES + 5000)
    f = _direct_file(tmp_path / "f.bin")
    monkeypatch.setattr(directio.os, "write", refusing)
    with f:
        f.write(data)
        assert not f.direct
    assert (tmp_path / "f.bin").read_bytes() == data and len(calls) >= 2


@needs_direct
def test_two_open_files_do_not_share_a_buffer(tmp_path):
    a, b = _payload(BUFFER_BYTES + 7, 1), _payload(BUFFER_BYTES + 9, 2)
    with _direct_file(tmp_path / "a") as fa, _direct_file(tmp_path / "b") as fb:
        for i in range(0, len(a), 1 << 20):
            fa.write(a[i : i + (1 << 20)])
            fb.write(b[i : i + (1 << 20)])
    assert (tmp_path / "a").read_bytes() == a and (tmp_path / "b").read_bytes() == b


def test_small_files_remote_filesystems_and_the_switch_are_written_the_usual_way(tmp_path, monkeypatch):
    big = directio.DIRECT_MIN_BYTES
    with open_for_writing(tmp_path / "small", 1000) as f:
        assert not isinstance(f, DirectFile)
    monkeypatch.setattr(directio, "filesystem_type", lambda folder: "nfs4")
    monkeypatch.setattr(directio, "_LOCAL_BY_DEVICE", {})
    with open_for_writing(tmp_path / "remote", big) as f:
        assert not isinstance(f, DirectFile)
    monkeypatch.setattr(directio, "filesystem_type", lambda folder: "ext4")
    monkeypatch.setattr(directio, "_LOCAL_BY_DEVICE", {})
    monkeypatch.setenv("MEDPREP_DIRECT_IO", "0")
    with open_for_writing(tmp_path / "off", big) as f:
        assert not isinstance(f, DirectFile)
    monkeypatch.delenv("MEDPREP_DIRECT_IO")
    if directio._O_DIRECT:
        try:
            f = open_for_writing(tmp_path / "on", big)
        except OSError:  # pragma: no cover - an exotic filesystem under the test folder
            pytest.skip("the test folder's filesystem refuses O_DIRECT")
        with f:
            assert isinstance(f, DirectFile) or directio.filesystem_type(str(tmp_path)) not in directio.LOCAL_FILESYSTEMS


def test_filesystem_type_takes_the_innermost_mount(tmp_path, monkeypatch):
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        "22 1 253:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"
        "30 22 0:40 / /data/my\\040scans rw - nfs4 server:/export rw\n"
        "31 22 0:41 / /data rw - xfs /dev/vdb rw\n"
    )
    monkeypatch.setattr(directio, "_MOUNTINFO", str(mountinfo))
    assert directio.filesystem_type("/data/my scans/patient") == "nfs4"
    assert directio.filesystem_type("/data/my scansX") == "xfs"
    assert directio.filesystem_type("/home/user") == "ext4"


def test_a_large_image_is_the_same_file_either_way(tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    array = rng.integers(-1024, 2000, (80, 256, 256), dtype=np.int16)  # 10 MB: below the limit ...
    monkeypatch.setattr(directio, "DIRECT_MIN_BYTES", 1 << 20)  # ... which is lowered for the test
    opened = []
    real_direct = directio.DirectFile

    class Spy(real_direct):
        def __init__(self, path):
            super().__init__(path)
            opened.append(path)

    monkeypatch.setattr(directio, "DirectFile", Spy)
    volume = Volume(array, spacing=(0.7, 0.7, 2.5))
    write_image(volume, tmp_path / "direct.nii.gz")
    monkeypatch.setenv("MEDPREP_DIRECT_IO", "0")
    write_image(volume, tmp_path / "buffered.nii.gz")
    assert (tmp_path / "direct.nii.gz").read_bytes() == (tmp_path / "buffered.nii.gz").read_bytes()
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "direct.nii.gz"))), array)
    if directio._O_DIRECT and directio.filesystem_type(str(tmp_path)) in directio.LOCAL_FILESYSTEMS:
        assert len(opened) == 1  # the first write went past the page cache, the second did not
