"""Read what comes from outside without trusting it.

Files (annotations, config, a secret): a regular file only (never a FIFO or a device, which
could block forever or never end), opened without blocking, never more than a limit. HTTP
replies (consumer, gateway): never more than a limit while streaming, and never decompressed.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import httpx


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
    if limit < 1024:
        return f"{limit} bytes"
    return f"{limit // 1024} KiB" if limit < 1024 * 1024 else f"{limit // (1024 * 1024)} MiB"


class ReplyTooLarge(Exception):
    """An HTTP reply longer than the limit (declared or streamed)."""


class CompressedReply(Exception):
    """An HTTP reply compressed although `Accept-Encoding: identity` was asked: refused, since
    inflating even one chunk of it can take hundreds of megabytes."""


IDENTITY = {"Accept-Encoding": "identity"}
"""Headers that ask for an uncompressed reply: no decompression bomb can then be inflated."""


async def read_body(response: httpx.Response, limit: int) -> bytes:
    """The raw body of a streamed reply, at most `limit` bytes; never decompressed.

    Raises ReplyTooLarge or CompressedReply.
    """
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise CompressedReply(f"compressed reply ({encoding[:20]}) refused")
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ReplyTooLarge(f"reply of {int(declared)} bytes refused: limit is {_size(limit)}")
    body = bytearray()
    async for chunk in response.aiter_raw():
        body += chunk
        if len(body) > limit:
            raise ReplyTooLarge(f"reply refused past {_size(limit)}")
    return bytes(body)
