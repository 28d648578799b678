"""The `replay` subcommand's arguments: defined without importing the command (the controller's
other commands start without it)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def add_parser(sub: Any, seconds: Callable[[str], float]) -> None:
    """The `replay` subcommand's arguments (`seconds`: the CLI's duration type)."""
    replay = sub.add_parser(
        "replay",
        help="run the decision settings (and --compare sets) over recorded lag history",
        description="Replay recorded lag (and health) through the decision core with the "
        "PRESENCE_* decision settings of the environment and each --compare set; one row per "
        "setting. Incidents: lag >= LAG_HIGH for at least --incident-min.",
    )
    source = replay.add_mutually_exclusive_group(required=True)
    source.add_argument("--prometheus", metavar="URL", help="Prometheus base URL (range API)")
    source.add_argument("--csv", metavar="FILE", help="CSV with the header time,lag[,healthy]")
    replay.add_argument("--query", metavar="PROMQL", help="the lag series (with --prometheus)")
    replay.add_argument(
        "--health-query", metavar="PROMQL", help="health series: > 0 healthy (optional)"
    )
    replay.add_argument("--since", metavar="DURATION", help="range ending now: 7d, 36h, 90m")
    replay.add_argument("--start", metavar="T", help="RFC 3339 start (with --end)")
    replay.add_argument("--end", metavar="T", help="RFC 3339 end (with --start)")
    replay.add_argument("--bearer-token-file", metavar="FILE", help="Prometheus bearer token")
    replay.add_argument(
        "--timeout", type=seconds, default=30.0, help="per request, seconds (default 30)"
    )
    replay.add_argument(
        "--compare",
        action="append",
        default=[],
        metavar="KEY=VALUE[,KEY=VALUE]",
        help="another setting to score, e.g. rise=2,fall=2 or damping.enabled=false (repeatable)",
    )
    replay.add_argument(
        "--incident-min",
        type=seconds,
        default=60.0,
        metavar="DURATION",
        help="shortest incident (default 1m)",
    )
    replay.add_argument("--json", action="store_true", help="machine-readable output")
    replay.add_argument("--plot", metavar="FILE.png", help="draw lag, incidents and presence")
