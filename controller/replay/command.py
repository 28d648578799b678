"""`presence-controller replay`: what would these settings have done on my real history?

Reads the consumer's lag (and optionally its health) from a Prometheus server's range API or from
a CSV file (replay.sources), runs the effective decision settings and each `--compare` set
through the decision core (core/replay.py), and prints one row per setting (replay.report):
presence changes, minutes unavailable, incidents caught, ticks to detect, minutes unavailable
outside incidents. `--json` for machines, `--plot FILE.png` for people.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Mapping
from datetime import UTC, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from controller.config import ENV_PREFIX, NESTED_DELIMITER, Settings, unknown_variables
from controller.core.schedule import ScheduleError
from controller.core.schedule_grammar import parse_timestamp

if TYPE_CHECKING:
    import argparse
import os

from controller.replay.report import DECISION_FIELDS, as_json, check_plot, plot, run, table
from controller.replay.sources import (
    Range,
    ReplayError,
    fetch_prometheus,
    parse_since,
    read_csv,
    token_from,
)
from controller.runtime.clock import SYSTEM


def decision_settings(environ: Mapping[str, str], compare: str | None = None) -> Settings:
    """The effective decision settings from the environment (`PRESENCE_RISE`, ...,
    `PRESENCE_DAMPING__ENABLED`), with `compare` (`rise=2,fall=2`, `damping.enabled=false`)
    on top; validated like the controller's own."""
    values: dict[str, Any] = {}
    for field in DECISION_FIELDS:
        if field == "damping":
            prefix = f"{ENV_PREFIX}DAMPING{NESTED_DELIMITER}"
            nested = {
                k[len(prefix) :].lower(): v for k, v in environ.items() if k.startswith(prefix)
            }
            if nested:
                values["damping"] = nested
        elif (value := environ.get(f"{ENV_PREFIX}{field.upper()}")) is not None:
            values[field] = value
    for item in filter(None, (part.strip() for part in (compare or "").split(","))):
        key, sep, value = item.partition("=")
        if not sep:
            raise ReplayError(f"--compare {compare!r}: expected KEY=VALUE[,KEY=VALUE]", usage=True)
        path = _field_path(key)
        if path[0] == "interval":
            raise ReplayError(
                "--compare: interval cannot be compared: the ticks are the samples (one per "
                "effective INTERVAL from Prometheus, the rows of a CSV); run replay again with "
                "PRESENCE_INTERVAL=... to score another interval",
                usage=True,
            )
        if path[0] not in DECISION_FIELDS:
            known = ", ".join(f for f in DECISION_FIELDS if f != "damping")
            raise ReplayError(
                f"--compare: {key!r} is not a decision setting ({known}, damping.*)", usage=True
            )
        if len(path) == 2:
            values.setdefault("damping", {})[path[1]] = value.strip()
        else:
            values[path[0]] = value.strip()
    try:
        return Settings.from_values(
            health_url="http://replay.invalid/healthz",
            provider="waha",
            waha={"base_url": "http://replay.invalid"},
            # Nothing is probed: a timeout that fits any INTERVAL (the default 2 s would refuse
            # every INTERVAL up to 2 s).
            timeout=0.001,
            **values,
        )
    except ValidationError as exc:
        errors = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {str(e['msg']).removeprefix('Value error, ')}"
            for e in exc.errors(include_url=False)
        )
        where = f"--compare {compare}" if compare else "the PRESENCE_* environment"
        raise ReplayError(f"{where}: {errors}", usage=True) from None


def _field_path(key: str) -> tuple[str, ...]:
    """`RISE`, `PRESENCE_RISE`, `rise` -> ("rise",); `damping.enabled`, `DAMPING__ENABLED`
    -> ("damping", "enabled")."""
    name = key.strip().upper().removeprefix(ENV_PREFIX).lower()
    return tuple(name.replace(NESTED_DELIMITER, ".").split("."))


def main(args: argparse.Namespace) -> int:
    """`presence-controller replay`: 0 done, 1 the source failed, 2 bad arguments or settings."""
    from controller.exits import EXIT_CONFIG, EXIT_FAILED, EXIT_OK

    target = None
    try:
        if args.plot:
            target = check_plot(args.plot)
        unknown = unknown_variables(os.environ)
        if unknown:  # `run` refuses a misspelt setting: so does replay
            raise ReplayError("; ".join(unknown), usage=True)
        effective = decision_settings(os.environ)
        settings = [("effective", effective)]
        settings += [(c, decision_settings(os.environ, c)) for c in args.compare]
        if args.csv is not None:
            if args.query or args.health_query or args.since or args.start or args.end:
                raise ReplayError("--query, --since, --start, --end go with --prometheus", True)
            samples = read_csv(Path(args.csv))
        else:
            samples = asyncio.run(_fetch(args, effective.interval))
        found, scores = run(samples, settings, args.incident_min)
    except ReplayError as exc:
        print(f"presence-controller replay: {exc}", file=sys.stderr)
        return EXIT_CONFIG if exc.usage else EXIT_FAILED
    if args.json:
        print(json.dumps(as_json(samples, found, scores, settings), indent=2))
    else:
        table(samples, found, scores, effective.lag_high, args.incident_min, sys.stdout)
    if target is not None:
        try:
            plot(samples, found, scores, effective.lag_high, effective.lag_low, target)
        except ReplayError as exc:
            print(f"presence-controller replay: {exc}", file=sys.stderr)
            return EXIT_CONFIG
        sys.stdout.flush()
        print(f"plot written to {target}", file=sys.stderr)
    return EXIT_OK


async def _fetch(args: argparse.Namespace, step: float) -> list[Any]:
    if not args.query:
        raise ReplayError("--prometheus needs --query PROMQL (the lag series)", usage=True)
    if args.since and (args.start or args.end):
        raise ReplayError("give --since, or --start and --end, not both", usage=True)
    if args.since:
        end = SYSTEM.wall().replace(microsecond=0)
        start = end - timedelta(seconds=parse_since(args.since))
    elif args.start and args.end:
        try:
            start, end = parse_timestamp(args.start), parse_timestamp(args.end)
        except ScheduleError as exc:
            raise ReplayError(f"--start/--end: {exc}", usage=True) from None
        if not start < end:
            raise ReplayError("--start must be before --end", usage=True)
    else:
        raise ReplayError("--prometheus needs --since, or --start and --end", usage=True)
    span = Range(start.astimezone(UTC), end.astimezone(UTC), step)
    samples = await fetch_prometheus(
        args.prometheus,
        args.query,
        args.health_query,
        span,
        token=token_from(args.bearer_token_file),
        request_timeout=args.timeout,
        progress=stderr_line,
    )
    return samples


def stderr_line(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
