"""What `kubectl presence maintenance|force` writes: the controller's own annotations, checked
with the controller's own grammar before anything is sent. Pure: arguments and the time in, a
JSON merge patch of `metadata.annotations` (None removes a key) and a sentence out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from controller.config.values import parse_duration
from controller.core.annotations import FORCE, FORCE_UNTIL, MAINTENANCE, MAINTENANCE_REASON
from controller.core.schedule import LATEST, Always, ScheduleError
from controller.core.schedule_grammar import parse, parse_timestamp

MAX_FOR = timedelta(days=366)
"""`--for` longer than a year is a typo, not a plan."""


class UsageError(ValueError):
    """The arguments cannot make a valid annotation; the message says why (exit code 2)."""


@dataclass(frozen=True, slots=True)
class Edit:
    annotations: dict[str, str | None]
    """The keys to set (None: remove), prefixed."""
    says: str
    """What it does, in words."""


def end_of(
    at: datetime, duration: str | None, until: str | None, indefinitely: bool, what: str
) -> datetime | None:
    """The end of a maintenance or a force from `--for`, `--until` or `--indefinitely` (exactly
    one); None: no end."""
    given = [name for name, v in (("--for", duration), ("--until", until)) if v is not None]
    if indefinitely:
        given.append("--indefinitely")
    if len(given) != 1:
        raise UsageError(
            f"{what} needs an end: one of --for 2h, --until 2026-12-24T06:00:00Z or "
            "--indefinitely" + (f" (got {' and '.join(given)})" if given else "")
        )
    if indefinitely:
        return None
    if duration is not None:
        try:
            seconds = float(parse_duration(duration))  # type: ignore[arg-type]
        except ValueError as exc:
            raise UsageError(f"--for: {exc}") from None
        if not 0 < seconds <= MAX_FOR.total_seconds():
            raise UsageError(f"--for: {duration!r}: expected more than 0 and at most 366d")
        return (at + timedelta(seconds=seconds)).replace(microsecond=0)
    assert until is not None
    try:
        end = parse_timestamp(until)
    except ScheduleError as exc:
        raise UsageError(f"--until: {exc}") from None
    if end <= at:
        raise UsageError(f"--until: {until} has passed already (it is {stamp(at)})")
    return end


def maintenance_start(
    prefix: str, at: datetime, *, duration: str | None = None, until: str | None = None,
    windows: str | None = None, indefinitely: bool = False, reason: str | None = None,
) -> Edit:  # fmt: skip
    """`maintenance start`: until an end, in windows, or (with --indefinitely) until ended."""
    if windows is not None:
        if duration is not None or until is not None:
            raise UsageError("--windows is its own schedule: not with --for or --until")
        try:
            schedule = parse(windows)
        except ScheduleError as exc:
            raise UsageError(f"--windows: {exc}") from None
        if not schedule:
            raise UsageError("--windows: the spec is never active; use `maintenance end`")
        if any(isinstance(w, Always) for w in schedule.windows) and not indefinitely:
            raise UsageError("--windows: 'true' has no end: add --indefinitely, or give --for")
        value, says = str(schedule), f"maintenance in the windows {str(schedule)!r}"
    else:
        end = end_of(at, duration, until, indefinitely, "maintenance")
        value = stamp(end) if end is not None else "true"
        says = f"maintenance until {stamp(end)}" if end else "maintenance until ended"
    text = " ".join((reason or "").split()) or None
    return Edit(
        {prefix + MAINTENANCE: value, prefix + MAINTENANCE_REASON: text},
        says + (f": {text}" if text else ""),
    )


def maintenance_end(prefix: str) -> Edit:
    return Edit({prefix + MAINTENANCE: None, prefix + MAINTENANCE_REASON: None}, "no maintenance")


def force(
    prefix: str, state: str, at: datetime, *, duration: str | None = None,
    until: str | None = None, indefinitely: bool = False,
) -> Edit:  # fmt: skip
    """`force available|unavailable`; `force clear`."""
    if state == "clear":
        if duration is not None or until is not None or indefinitely:
            raise UsageError("force clear takes no end")
        return Edit({prefix + FORCE: None, prefix + FORCE_UNTIL: None}, "no force")
    end = end_of(at, duration, until, indefinitely, f"force {state}")
    expiry = stamp(end) if end is not None else None
    says = f"force {state}" + (f" until {expiry}" if expiry else " until cleared")
    return Edit({prefix + FORCE: state, prefix + FORCE_UNTIL: expiry}, says)


def stamp(at: datetime) -> str:
    """RFC 3339 in UTC, to the second: what the annotations hold."""
    if at >= LATEST:
        raise UsageError("the end lies past the year 9000")
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
