"""Write annotations the way kubelet does: Go `%q` quoting and AtomicWriter's `..data` swap."""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

_SHORT = {7: "\\a", 8: "\\b", 12: "\\f", 10: "\\n", 13: "\\r", 9: "\\t", 11: "\\v"}


def quote_go(value: str) -> str:
    """Go's strconv.Quote: printable runes as they are, the rest escaped."""
    out = ['"']
    for ch in value:
        code = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch.isprintable():
            out.append(ch)
        elif code in _SHORT:
            out.append(_SHORT[code])
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def format_annotations(annotations: Mapping[str, str]) -> str:
    """kubelet's fieldpath.FormatMap: sorted `key="value"` lines, no trailing newline."""
    return "\n".join(f"{key}={quote_go(annotations[key])}" for key in sorted(annotations))


class DownwardAPIVolume:
    """A directory updated like kubelet's AtomicWriter; `file` is the path a container reads."""

    def __init__(self, directory: Path, name: str = "annotations") -> None:
        self.directory = directory
        self.name = name
        self.file = directory / name
        self._generation = 0

    def write(self, annotations: Mapping[str, str]) -> None:
        """Publish new annotations, formatted as the kubelet does."""
        self.write_text(format_annotations(annotations))

    def write_text(self, text: str) -> None:
        """Publish a new version of the file (any content: a Secret volume's key is written the
        same way): new timestamped dir, `..data_tmp` symlink renamed over `..data`,
        user-visible symlink created once, old version removed."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._generation += 1
        stamp = datetime.now(UTC).strftime("%Y_%m_%d_%H_%M_%S")
        version = self.directory / f"..{stamp}.{os.getpid()}{self._generation:06d}"
        version.mkdir()
        (version / self.name).write_text(text, encoding="utf-8")
        data = self.directory / "..data"
        old = Path(os.readlink(data)) if data.is_symlink() else None
        tmp = self.directory / "..data_tmp"
        if tmp.is_symlink():
            tmp.unlink()
        tmp.symlink_to(version.name)
        tmp.rename(data)  # the atomic step: readers see the old or the new version, never a mix
        if not self.file.is_symlink():
            self.file.symlink_to(Path("..data") / self.name)
        if old is not None:
            shutil.rmtree(self.directory / old, ignore_errors=True)
