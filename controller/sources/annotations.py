"""The pod's annotations from a Downward API volume file.

kubelet writes one `key="value"` line per annotation, keys sorted, values quoted with Go's `%q`
(strconv.Quote), lines joined by `\\n` with no trailing newline; it swaps the whole directory
atomically (a `..data` symlink), so opening the file path always yields one complete version.
The file is re-read only when it changed (inode, size or mtime of the opened file). A file that
vanishes or becomes unreadable later (or is replaced by a FIFO or a device) keeps the last good
annotations, reported as stale. A file that reads but is garbage (lines that name no key, bytes
that are not UTF-8, more than `MAX_FILE_BYTES`) is reported as garbled: maintenance fails closed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from pathlib import Path

from controller.bounded_read import FileTooLarge, Version, read_if_changed

MAX_FILE_BYTES = 1024 * 1024
"""Kubernetes caps a pod's annotations at 256 KiB; Go-quoted (\\xNN) they can grow up to 4x."""
_KEY = re.compile(r"[!-~]+")
"""An annotation key is printable ASCII without spaces (Kubernetes allows far less): a line whose
key is anything else (binary, control characters) is not from the kubelet."""
_ESCAPE = re.compile(
    r'\\(?:x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|[0-7]{3}|[abfnrtv\\"\'])'
)
_SIMPLE = {"a": 7, "b": 8, "f": 12, "n": 10, "r": 13, "t": 9, "v": 11, "\\": 92, '"': 34, "'": 39}


def unquote_go(quoted: str) -> str:
    """Decode a Go double-quoted string literal as written by `%q` (strconv.Quote)."""
    if len(quoted) < 2 or quoted[0] != '"' or quoted[-1] != '"':
        raise ValueError('the value is not a "double-quoted" string')
    body = quoted[1:-1]
    out = bytearray()
    pos = 0
    for match in _ESCAPE.finditer(body):
        literal = body[pos : match.start()]
        if '"' in literal or "\\" in literal:
            break
        out += literal.encode()
        escape = match.group()[1:]
        kind = escape[0]
        if kind in _SIMPLE:
            out.append(_SIMPLE[kind])
        elif kind == "x":
            out.append(int(escape[1:], 16))
        elif kind in "uU":
            out += chr(int(escape[1:], 16)).encode("utf-8", "surrogatepass")
        else:
            out.append(int(escape, 8) & 0xFF)
        pos = match.end()
    rest = body[pos:]
    if '"' in rest or "\\" in rest:
        bad = pos + min(i for i in (rest.find('"'), rest.find("\\")) if i >= 0)
        what = "an unescaped quote" if body[bad] == '"' else "an invalid escape"
        raise ValueError(f"{what} at character {bad + 1} of the value")
    out += rest.encode()
    return out.decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class ParsedAnnotations:
    values: dict[str, str]
    broken: dict[str, str]
    """Keys whose line could not be parsed, with the reason (for fail-closed handling)."""
    errors: tuple[str, ...]
    garbled: str | None = None
    """Why the file as a whole is not a kubelet annotations file (lines without a key, binary):
    any of our keys may have been lost in it, so maintenance fails closed."""


def parse_annotations(text: str) -> ParsedAnnotations:
    """Parse kubelet's annotations file format; bad lines are reported, never fatal."""
    values: dict[str, str] = {}
    broken: dict[str, str] = {}
    errors: list[str] = []
    garbled: str | None = None
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        key, sep, quoted = line.partition("=")
        key = key.strip()
        if not sep or not _KEY.fullmatch(key):
            if garbled is None:
                garbled = f"line {number} names no annotation key"
            if len(errors) < _MAX_ERRORS:
                errors.append(f'annotations line {number} ({line[:40]!r}): expected key="value"')
            continue
        try:
            values[key] = unquote_go(quoted)
        except ValueError as exc:
            broken[key] = str(exc)
            if len(errors) < _MAX_ERRORS:
                errors.append(f"annotations line {number} ({key[:100]}): {exc}")
    return ParsedAnnotations(values, broken, tuple(errors), garbled)


_MAX_ERRORS = 5
"""Errors kept per read: a garbage file must not become a megabyte of error text."""


@dataclass(frozen=True, slots=True)
class AnnotationSnapshot:
    """The annotations as last read, and what went wrong reading them (if anything)."""

    values: dict[str, str] = field(default_factory=dict)
    broken: dict[str, str] = field(default_factory=dict)
    errors: tuple[str, ...] = ()
    stale: bool = False
    """True when the file could not be read now: `values` are the last good ones."""
    garbled: str | None = None
    """The file reads but is not an annotations file: maintenance fails closed."""
    version: int = 0
    """Bumped by the reader whenever what it reports changes: compare versions, never objects."""


class AnnotationFile:
    """Reads a Downward API annotations file, re-parsing only when it changed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._version: Version | None = None
        self._good = AnnotationSnapshot()
        self.snapshot = AnnotationSnapshot()
        self._published = 0

    def read(self) -> AnnotationSnapshot:
        """The current annotations; never raises."""
        try:
            try:
                loaded = self._load()
            except FileNotFoundError:
                # We may have resolved `..data` to the version kubelet is deleting right now.
                loaded = self._load()
            if loaded is None:
                return self.snapshot
            version, data = loaded
        except FileTooLarge as exc:
            garbled = f"annotations file {str(self.path)!r} {exc.strerror}"
            self._version = None
            return self._publish(AnnotationSnapshot(errors=(garbled,), garbled=garbled))
        except OSError as exc:
            reason = exc.strerror or type(exc).__name__
            error = (
                f"annotations file {str(self.path)!r} unreadable ({reason}): "
                "keeping the last good annotations"
            )
            self._version = None
            return self._publish(
                AnnotationSnapshot(
                    self._good.values, self._good.broken, (*self._good.errors, error), stale=True
                )
            )
        self._version = version
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            garbled = f"annotations file {str(self.path)!r} is not UTF-8 text"
            return self._publish(AnnotationSnapshot(errors=(garbled,), garbled=garbled))
        parsed = parse_annotations(text)
        snapshot = AnnotationSnapshot(parsed.values, parsed.broken, parsed.errors)
        if parsed.garbled is not None:
            garbled = f"annotations file {str(self.path)!r} garbled: {parsed.garbled}"
            return self._publish(
                AnnotationSnapshot(
                    parsed.values, parsed.broken, (*parsed.errors, garbled), garbled=garbled
                )
            )
        self._good = snapshot
        return self._publish(snapshot)

    def _publish(self, snapshot: AnnotationSnapshot) -> AnnotationSnapshot:
        self._published += 1
        self.snapshot = replace(snapshot, version=self._published)
        return self.snapshot

    def _load(self) -> tuple[Version, bytes] | None:
        """The file's version and bytes, or None when it is the version already parsed."""
        known = self._version if not self.snapshot.stale else None
        version, data = read_if_changed(self.path, MAX_FILE_BYTES, known)
        return None if data is None else (version, data)
