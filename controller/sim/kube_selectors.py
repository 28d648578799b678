"""The fake API server's label and field selectors (labelSelector: =, ==, !=, in, notin, key,
!key; fieldSelector on any string field by its dotted path), as the real server reads them."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from controller.sim.kube_rules import Failure, dig

_REQUIREMENT = re.compile(
    r"\s*(?P<neg>!)?(?P<key>[A-Za-z0-9./_-]+)\s*"
    r"(?:(?P<op>==|=|!=)\s*(?P<value>[A-Za-z0-9._-]*)|\s+(?P<set>in|notin)\s*\((?P<values>[^)]*)\))?\s*"
)


def selector(query: Any) -> Any:
    """labelSelector (=, ==, !=, in, notin, key, !key) and fieldSelector (metadata.name,
    metadata.namespace) as one predicate on an object."""
    checks = list(_requirements(query.get("labelSelector", ""), labels=True))
    checks += _requirements(query.get("fieldSelector", ""), labels=False)

    def matches(obj: dict[str, Any]) -> bool:
        return all(check(obj) for check in checks)

    return matches


def _split(selector: str) -> Iterator[str]:
    depth, part = 0, ""
    for char in selector:
        if char == "," and depth == 0:
            yield part
            part = ""
            continue
        depth += {"(": 1, ")": -1}.get(char, 0)
        part += char
    if part.strip():
        yield part


def _requirements(selector: str, labels: bool) -> Iterator[Any]:
    for part in _split(selector):
        found = _REQUIREMENT.fullmatch(part)
        if found is None:
            raise Failure(400, "BadRequest", f"unable to parse requirement: {part!r}")
        key, op, value = found["key"], found["op"] or found["set"], found["value"]
        values = {v.strip() for v in (found["values"] or "").split(",") if v.strip()}

        def read(obj: dict[str, Any], key: str = key) -> str | None:
            if labels:
                found = (obj.get("metadata") or {}).get("labels") or {}
                return found.get(key)
            value = dig(obj, tuple(key.split(".")))
            return value if isinstance(value, str) else None

        def check(
            obj: dict[str, Any],
            op: str | None = op,
            value: str | None = value,
            values: set[str] = values,
            negated: bool = bool(found["neg"]),
            read: Any = read,
        ) -> bool:
            have = read(obj)
            if op is None:
                return (have is None) if negated else (have is not None)
            if op in {"=", "=="}:
                return bool(have == value)
            if op == "!=":
                return bool(have != value)
            if op == "in":
                return have in values
            return have not in values

        yield check
