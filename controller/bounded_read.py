"""Read a small file from outside (annotations, config, a secret) without trusting it: a regular
file only (never a FIFO or a device, which could block forever or never end), opened without
blocking, and never more than a limit."""

from __future__ import annotations

import os
import stat
from pathlib import Path


class FileTooLarge(OSError):
    """The file holds more than the limit."""


class NotARegularFile(OSError):
    """The path is a FIFO, a device, a directory or a socket."""


Version = tuple[int, int, int, int]
"""(device, inode, size, mtime) of an opened file: changes when it is replaced or rewritten."""


def read_bounded(path: Path | str, limit: int) -> bytes:
    """The bytes of the regular file at `path` (symlinks followed), at most `limit` of them.

    Raises OSError (FileNotFoundError, PermissionError, ...), NotARegularFile or FileTooLarge;
    `strerror` says what is wrong in words.
    """
    _, data = read_if_changed(path, limit, None)
    assert data is not None
    return data


def read_if_changed(
    path: Path | str, limit: int, known: Version | None
) -> tuple[Version, bytes | None]:
    """Like `read_bounded`, but returns no bytes when the opened file still has the `known`
    version (the version is taken from the file actually opened, never from a second lookup)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise NotARegularFile(0, f"not a regular file ({_kind(st.st_mode)})", str(path))
        version = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
        if version == known:
            return version, None
        chunks = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, min(65536, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise FileTooLarge(0, f"larger than {_size(limit)}", str(path))
        return version, b"".join(chunks)
    finally:
        os.close(fd)


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISDIR(mode):
        return "a directory"
    return "a device or socket"


def _size(limit: int) -> str:
    return f"{limit // 1024} KiB" if limit < 1024 * 1024 else f"{limit // (1024 * 1024)} MiB"
