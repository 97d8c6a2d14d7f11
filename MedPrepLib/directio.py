"""Writing large files past the page cache (``O_DIRECT``), on local filesystems that take it.

A dataset's image files are written once and not read back by the process that writes them.
Written the usual way, every 4 KB of them first takes a fresh page of the kernel's page cache:
the kernel finds, zeroes and fills it, and on a virtual machine whose free memory goes back to
the host (free page reporting, ballooning) the host must first fault it in — measured here, that
made writing a compressed CT cost a sixth of an export's CPU time, more than reading its DICOM
files. And an export of hundreds of cases pushes everything else out of the cache, the
input series it is still reading included.

:class:`DirectFile` copies what is written into a page-aligned buffer of :data:`BUFFER_BYTES`
(one per thread, reused, so its pages stay resident) and writes it in whole blocks with
``O_DIRECT``, straight from that buffer to the device; the last block is padded and the file
cut to its true length. The bytes on disk are the same as a buffered write's.

:func:`open_for_writing` uses it only where it is safe and useful: Linux, a large file, a
local block filesystem (:data:`LOCAL_FILESYSTEMS`; not NFS, SMB or FUSE mounts, where direct
writes are synchronous round trips, nor tmpfs, which is memory anyway), and not switched off
with ``MEDPREP_DIRECT_IO=0``. If the kernel refuses a direct write (``EINVAL``: an alignment the
device does not take), the file carries on buffered, from where it was.
"""

from __future__ import annotations

import errno
import mmap
import os
import threading

BLOCK_BYTES = 4096
"""Alignment of direct writes (file offset, length and memory): the largest logical block size
of common devices, so right for all of them."""

BUFFER_BYTES = 8 << 20
"""Bytes collected before one direct write."""

DIRECT_MIN_BYTES = 16 << 20
"""Files expected below this size are written the usual way (their pages are few)."""

LOCAL_FILESYSTEMS = frozenset({"ext4", "ext3", "xfs", "btrfs", "f2fs", "jfs", "reiserfs", "bcachefs"})
"""Filesystem types (as in ``/proc/self/mountinfo``) that take direct writes at disk speed."""

_O_DIRECT = getattr(os, "O_DIRECT", 0)
_MOUNTINFO = "/proc/self/mountinfo"
_local = threading.local()
_LOCAL_BY_DEVICE: dict[int, bool] = {}  # st_dev -> on a filesystem of LOCAL_FILESYSTEMS


def _take_buffer() -> mmap.mmap:
    """This thread's page-aligned write buffer (anonymous memory is page-aligned), or a new one
    while that one serves another open file."""
    buf = getattr(_local, "buffer", None)
    if buf is None:
        buf = _local.buffer = mmap.mmap(-1, BUFFER_BYTES)
    if getattr(_local, "busy", False):
        return mmap.mmap(-1, BUFFER_BYTES)
    _local.busy = True
    return buf


def _give_back(buf: mmap.mmap) -> None:
    if buf is getattr(_local, "buffer", None):
        _local.busy = False
    else:
        buf.close()


def _unescape(field: str) -> str:
    """A mountinfo path field (spaces and the like are written as octal escapes)."""
    return field.encode().decode("unicode_escape").encode("latin-1").decode("utf-8", "replace") if "\\" in field else field


def filesystem_type(folder: str) -> str | None:
    """The filesystem type of the mount holding ``folder`` (Linux), or None when unknown."""
    try:
        with open(_MOUNTINFO, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    path = os.path.realpath(folder)
    best, best_type = -1, None
    for line in lines:
        left, sep, right = line.partition(" - ")
        fields = left.split()
        if not sep or len(fields) < 5 or not right:
            continue
        mount = _unescape(fields[4])
        inside = path == mount or path.startswith(mount.rstrip("/") + "/")
        if inside and len(mount) > best:
            best, best_type = len(mount), right.split()[0]
    return best_type


def direct_io_enabled(folder: str | os.PathLike) -> bool:
    """Whether large files written into ``folder`` go past the page cache (see the module doc)."""
    if not _O_DIRECT or os.environ.get("MEDPREP_DIRECT_IO", "1").strip().lower() in ("0", "no", "false", "off"):
        return False
    try:
        device = os.stat(folder).st_dev
    except OSError:
        return False
    if device not in _LOCAL_BY_DEVICE:  # every file is staged in a folder of its own: ask once per device
        _LOCAL_BY_DEVICE[device] = filesystem_type(os.fspath(folder)) in LOCAL_FILESYSTEMS
    return _LOCAL_BY_DEVICE[device]


class DirectFile:
    """A new file written with ``O_DIRECT`` through an aligned buffer (a binary file's
    ``write``/``flush``/``close``; a context manager). ``direct`` tells whether it still is."""

    def __init__(self, path: str | os.PathLike):
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)
        self._fd = os.open(path, flags | _O_DIRECT, 0o666)
        self.direct = True
        self._buf = _take_buffer()
        self._view = memoryview(self._buf)
        self._fill = 0  # bytes in the buffer
        self._size = 0  # bytes written so far (the file's length once closed)

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        n, pos = len(view), 0
        while pos < n:
            take = min(n - pos, BUFFER_BYTES - self._fill)
            self._view[self._fill : self._fill + take] = view[pos : pos + take]
            self._fill += take
            pos += take
            if self._fill == BUFFER_BYTES:
                self._drain(BUFFER_BYTES)
                self._fill = 0
        self._size += n
        return n

    def _drain(self, length: int) -> None:
        """Write the first ``length`` buffered bytes at the current end of the file."""
        done = 0
        while done < length:
            try:
                done += os.write(self._fd, self._view[done:length])
            except OSError as exc:
                if exc.errno != errno.EINVAL or not self.direct:
                    raise
                self._buffered()  # the device wants another alignment: carry on the usual way
            if self.direct and done % BLOCK_BYTES:
                self._buffered()  # a short direct write leaves an unaligned offset

    def _buffered(self) -> None:
        import fcntl

        fcntl.fcntl(self._fd, fcntl.F_SETFL, fcntl.fcntl(self._fd, fcntl.F_GETFL) & ~_O_DIRECT)
        self.direct = False

    def flush(self) -> None:
        """Nothing to do: the bytes reach the file at :meth:`close` at the latest."""

    def close(self) -> None:
        if self._fd < 0:
            return
        try:
            if self._fill:
                if self.direct:  # a whole last block, then the file cut to its true length
                    padded = -(-self._fill // BLOCK_BYTES) * BLOCK_BYTES
                    self._view[self._fill : padded] = bytes(padded - self._fill)
                    self._drain(padded)
                    os.ftruncate(self._fd, self._size)
                else:
                    self._drain(self._fill)
                self._fill = 0
        finally:
            self._release()

    def abandon(self) -> None:
        """Close without writing what is buffered (the file is being thrown away)."""
        if self._fd >= 0:
            self._release()

    def _release(self) -> None:
        self._view.release()
        _give_back(self._buf)
        os.close(self._fd)
        self._fd = -1

    def __enter__(self) -> DirectFile:
        return self

    def __exit__(self, kind, value, tb) -> None:
        if kind is None:
            self.close()
        else:
            self.abandon()


def open_for_writing(path: str | os.PathLike, expected_bytes: int):
    """A new binary file at ``path``: a :class:`DirectFile` when ``expected_bytes`` is large
    and the folder's filesystem takes direct writes, else ``open(path, "wb")``."""
    if expected_bytes >= DIRECT_MIN_BYTES and direct_io_enabled(os.path.dirname(os.path.abspath(path))):
        try:
            return DirectFile(path)
        except OSError as exc:
            if exc.errno not in (errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP):
                raise
    return open(path, "wb")
