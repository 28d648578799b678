"""The workload's and the namespace's annotations, as their watches hold them.

A watch that cannot read keeps the last good object (reported as its error). A watched object
that disappears keeps its last `maintenance` annotations for KEEP_GONE (fail closed: deleting a
Deployment under maintenance must not put the bot online while its pods are still running),
reported; one re-created counts as it is.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from controller.kube.watch import ObjectWatch

KEEP_GONE = 300.0
"""How long a source that disappeared keeps its maintenance annotations."""


def annotations_of(source: ObjectWatch, now: float, prefix: str) -> dict[str, str]:
    """The source's annotations (of our `prefix` or not): as last read; for one that
    disappeared less than KEEP_GONE ago, only its last maintenance annotations; else none."""
    obj, keys = source.items.get(source.name or ""), None
    if obj is None and keeping(source, now):
        obj, keys = source.gone, (f"{prefix}maintenance", f"{prefix}maintenance-reason")
    notes = ((obj or {}).get("metadata") or {}).get("annotations") or {}
    return {str(k): str(v) for k, v in notes.items() if keys is None or k in keys}


def keeping(source: ObjectWatch, now: float) -> bool:
    """The source disappeared, and its maintenance is still kept."""
    since = source.gone_since
    return since is not None and now - since < KEEP_GONE


def gone_note(source: ObjectWatch, now: float, wall: datetime) -> str | None:
    """What /status.fleet.error says of a source that disappeared (None: it did not)."""
    if not keeping(source, now):
        return None
    since = source.gone_since or now
    until = wall + timedelta(seconds=since + KEEP_GONE - now)
    return (
        f"{source.what} not found ({now - since:.0f}s): its maintenance annotations are kept "
        f"until {until:%H:%M:%S} UTC"
    )
