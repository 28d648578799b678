"""The replay command: history sources, the report and plot; the decision over recorded
samples is the pure `core.replay`."""

from controller.replay.command import DECISION_FIELDS, decision_settings
from controller.replay.report import as_json, check_plot, plot, run, table
from controller.replay.sources import (
    MAX_CSV_BYTES,
    MAX_POINTS,
    MAX_REPLY_BYTES,
    POINTS_PER_QUERY,
    Range,
    ReplayError,
    fetch_prometheus,
    parse_since,
    read_csv,
    token_from,
)

__all__ = [
    "DECISION_FIELDS",
    "MAX_CSV_BYTES",
    "MAX_POINTS",
    "MAX_REPLY_BYTES",
    "POINTS_PER_QUERY",
    "Range",
    "ReplayError",
    "as_json",
    "check_plot",
    "decision_settings",
    "fetch_prometheus",
    "parse_since",
    "plot",
    "read_csv",
    "run",
    "table",
    "token_from",
]
