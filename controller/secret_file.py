"""A secret mounted as a file (a Kubernetes Secret volume), followed as it rotates.

The kubelet replaces the file atomically (a `..data` symlink swap) when the Secret changes.
`refresh()` costs an open and an fstat while nothing changed, so it can run every tick; a
change is read, validated and reported explicitly. A file that cannot be read, or holds no
credible token, keeps the last good value (the gateway keeps working with it) and says why.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from controller.bounded_read import Version, read_if_changed

MAX_SECRET_BYTES = 64 * 1024
"""A gateway token is well under a kilobyte."""


def one_word(text: str) -> bool:
    """Whether `text` can be a credential: no whitespace, no control or format character
    anywhere (an HTTP library refuses such a header, and quotes it in its error)."""
    return not any(char.isspace() or not char.isprintable() for char in text)


@dataclass(frozen=True, slots=True)
class SecretCheck:
    """What one `refresh()` found: `changed` when a new valid value was taken."""

    changed: bool = False
    error: str | None = None


class SecretFile:
    """The current value of a secret file; `validate(text)` raises ValueError on a bad one."""

    def __init__(self, path: Path, value: str, validate: Callable[[str], None]) -> None:
        self.path = path
        self.value = value
        self._validate = validate
        self._version: Version | None = None
        """None until the first refresh, which reads the file once."""
        self._error: str | None = None

    def refresh(self) -> SecretCheck:
        """Re-read the file if it changed since the last look; never raises."""
        try:
            version, data = read_if_changed(self.path, MAX_SECRET_BYTES, self._version)
        except OSError as exc:
            return self._failed(f"cannot read {str(self.path)!r}: {exc.strerror}")
        if data is None:
            return SecretCheck(error=self._error)
        self._version = version
        try:
            text = data.decode("utf-8").strip()
            self._validate(text)
        except UnicodeDecodeError:
            return self._failed(f"{str(self.path)!r} is not UTF-8 text")
        except ValueError as exc:
            return self._failed(f"{str(self.path)!r}: {exc}")
        self._error = None
        if text == self.value:
            return SecretCheck()
        self.value = text
        return SecretCheck(changed=True)

    def _failed(self, error: str) -> SecretCheck:
        self._error = f"{error}; keeping the last good token"
        return SecretCheck(error=self._error)
