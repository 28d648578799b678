"""Replay's output: the incidents and each setting's score, as a table, JSON or a plot
(matplotlib, the optional `plot` extra)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC
from pathlib import Path
from typing import Any, TextIO

from controller.config import Settings
from controller.core.replay import Sample, Score, incidents, replay
from controller.replay.sources import ReplayError


def run(
    samples: Sequence[Sample], settings: list[tuple[str, Settings]], incident_min: float
) -> tuple[list[tuple[int, int]], list[Score]]:
    """The incidents (by the first setting's LAG_HIGH, so every row is scored on the same
    ones) and each setting's score."""
    found = incidents(samples, settings[0][1].lag_high, incident_min)
    return found, [replay(name, samples, s.hysteresis(), found) for name, s in settings]


def table(
    samples: Sequence[Sample],
    found: list[tuple[int, int]],
    scores: list[Score],
    lag_high: float,
    incident_min: float,
    out: TextIO,
) -> None:
    first, last = samples[0].at, samples[-1].at
    print(
        f"replay: {first:%Y-%m-%d %H:%M} -> {last:%Y-%m-%d %H:%M} UTC, {len(samples)} ticks, "
        f"{len(found)} incidents (lag >= {lag_high:g} for >= {incident_min:g}s)",
        file=out,
    )
    width = max(len("setting"), *(len(s.name) for s in scores))
    head = (
        f"{'setting':<{width}}  {'changes':>7}  {'unavailable':>11}  {'caught':>7}  "
        f"{'detect median':>13}  {'worst':>5}  {'unavailable outside':>19}"
    )
    print(head, file=out)
    for s in scores:
        median = "-" if s.detect_median is None else f"{s.detect_median:g} ticks"
        if s.detect_median == 1:
            median = "1 tick"
        worst = "-" if s.detect_worst is None else str(s.detect_worst)
        print(
            f"{s.name:<{width}}  {s.changes:>7}  {s.minutes_unavailable:>9.1f} m  "
            f"{f'{s.caught}/{len(found)}':>7}  {median:>13}  {worst:>5}  "
            f"{s.minutes_unavailable_outside:>17.1f} m",
            file=out,
        )


DECISION_FIELDS = (
    "interval",
    "rise",
    "fall",
    "hold_down",
    "startup_grace",
    "lag_high",
    "lag_low",
    "missing_lag",
    "damping",
)
"""The settings that shape a decision (everything else is about probing and acting)."""


def decision_values(settings: Settings) -> dict[str, Any]:
    """The decision settings a row was scored with, as plain values."""
    return settings.model_dump(mode="json", include=set(DECISION_FIELDS))


def as_json(
    samples: Sequence[Sample],
    found: list[tuple[int, int]],
    scores: list[Score],
    settings: list[tuple[str, Settings]],
) -> dict[str, Any]:
    used = dict(settings)
    return {
        "from": samples[0].at.isoformat(),
        "to": samples[-1].at.isoformat(),
        "ticks": len(samples),
        "incidents": [{"start": samples[a].at.isoformat(), "ticks": b - a} for a, b in found],
        "settings": [
            {
                "name": s.name,
                "values": decision_values(used[s.name]),
                "changes": s.changes,
                "minutes_unavailable": round(s.minutes_unavailable, 2),
                "caught": s.caught,
                "incidents": len(found),
                "detect_ticks": list(s.detect),
                "detect_median_ticks": s.detect_median,
                "detect_worst_ticks": s.detect_worst,
                "minutes_unavailable_outside": round(s.minutes_unavailable_outside, 2),
            }
            for s in scores
        ],
    }


def check_plot(target: str) -> Path:
    """The file `--plot` will write (`.png` added when it has no suffix), refused up front
    (before a long fetch) when matplotlib is missing, the format unknown or the folder absent."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ReplayError(
            "--plot needs matplotlib: pip install 'presence-controller[plot]' "
            "(make installs it in the development venv)",
            usage=True,
        ) from None
    path = Path(target)
    if not path.name or path.name in {".", ".."} or path.is_dir():
        raise ReplayError(f"--plot {target!r}: a file name is needed, not a folder", usage=True)
    if not path.suffix:
        path = path.with_suffix(".png")
    formats = FigureCanvasAgg(Figure()).get_supported_filetypes()
    if path.suffix[1:].lower() not in formats:
        known = ", ".join(f".{f}" for f in sorted(formats))
        raise ReplayError(f"--plot {target!r}: unknown format (one of {known})", usage=True)
    if not path.parent.is_dir():
        raise ReplayError(f"--plot {target!r}: no such folder {str(path.parent)!r}", usage=True)
    return path


_LEVEL = {"available": 1.0, "unknown": 0.5, "unavailable": 0.0}


def plot(
    samples: Sequence[Sample],
    found: list[tuple[int, int]],
    scores: list[Score],
    lag_high: float,
    lag_low: float,
    path: Path,
) -> None:
    """The lag with the watermarks and the incidents shaded, and each setting's presence."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    times = [s.at for s in samples]
    fig, (ax_lag, ax_p) = plt.subplots(
        2,
        1,
        figsize=(12, 4 + 0.5 * len(scores)),
        sharex=True,
        gridspec_kw={"height_ratios": [3, 0.6 + 0.5 * len(scores)]},
    )
    lag = [s.lag if s.lag is not None else math.nan for s in samples]
    ax_lag.plot(times, lag, lw=0.7, color="#555", label="queue lag (s)")
    ax_lag.axhline(lag_high, color="red", ls="--", lw=1, label=f"lag_high {lag_high:g}")
    ax_lag.axhline(lag_low, color="green", ls="--", lw=1, label=f"lag_low {lag_low:g}")
    for a, b in found:
        ax_lag.axvspan(times[a], times[min(b, len(times) - 1)], color="orange", alpha=0.25)
    for n, (a, b) in enumerate(missing_runs(samples)):
        # No lag read (a gap, NaN): MISSING_LAG decides what the controller made of it.
        ax_lag.axvspan(
            times[a], times[min(b, len(times) - 1)], facecolor="none", edgecolor="#999",
            hatch="//", lw=0, label="no data" if n == 0 else None,
        )  # fmt: skip
    finite = [v for v in lag if math.isfinite(v)]
    ax_lag.set_ylim(0, max(lag_high * 2.5, min(max(finite, default=0) * 1.05, lag_high * 6)))
    ax_lag.set_ylabel("lag (s)")
    ax_lag.legend(loc="upper right", fontsize=8)
    ax_lag.set_title(
        f"replay: {len(found)} incidents shaded; presence per setting below (high = available)"
    )
    labels = []
    for row, score in enumerate(reversed(scores)):
        base = row * 1.5
        ax_p.step(
            times,
            [base + _LEVEL[p.value] for p in score.track],
            where="post",
            lw=1,
        )
        labels.append((base + 0.5, f"{score.name} ({score.changes} changes)"))
    ax_p.set_yticks([y for y, _ in labels], [text for _, text in labels], fontsize=8)
    locator = mdates.AutoDateLocator(tz=UTC)  # type: ignore[no-untyped-call]
    ax_p.xaxis.set_major_locator(locator)
    concise = mdates.ConciseDateFormatter(locator, tz=UTC)  # type: ignore[no-untyped-call]
    ax_p.xaxis.set_major_formatter(concise)
    ax_p.set_xlabel(f"time (UTC), {times[0]:%Y-%m-%d %H:%M} to {times[-1]:%Y-%m-%d %H:%M}")
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=110)
    except OSError as exc:
        raise ReplayError(f"--plot {str(path)!r}: {exc.strerror or exc}", usage=True) from None
    finally:
        plt.close(fig)


def missing_runs(samples: Sequence[Sample]) -> list[tuple[int, int]]:
    """Runs of samples with no lag read: (first, one past the last)."""
    runs, start = [], None
    for i, sample in enumerate(samples):
        missing = sample.lag is None or math.isnan(sample.lag)
        if missing and start is None:
            start = i
        elif not missing and start is not None:
            runs.append((start, i))
            start = None
    if start is not None:
        runs.append((start, len(samples)))
    return runs
