"""Online hours closed on public holidays (`PRESENCE_ONLINE_HOURS_HOLIDAYS`, docs/maintenance.md).

Regions are ISO 3166 country codes or country-subdivision codes (`AT`, `DE-BY`); the `holidays`
package knows their public holidays and names. A holiday of any listed region closes the online
hours for that whole local day, midnight to midnight in the online hours' own zone. Pure apart
from a bounded cache of the package's answers (one entry per region and year).
"""

from __future__ import annotations

import bisect
import functools
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from controller.core.schedule import Schedule, Weekly, Window
from controller.core.weekly import zone_info

MAX_REGIONS = 20
"""More regions than a support team serves is a mistake, and each costs a lookup per year."""
_STEPS = 400
"""Changes the search for the next change walks at most (a year of holidays and working days)."""
_LANGUAGE = "en_US"
"""Holiday names in English where the package has them, else in the country's own language."""


class HolidayError(ValueError):
    """A region code the `holidays` package does not know; the message names it and why."""


@dataclass(frozen=True, slots=True)
class Region:
    country: str
    subdivision: str | None = None

    def __str__(self) -> str:
        return f"{self.country}-{self.subdivision}" if self.subdivision else self.country


def parse_regions(text: str) -> tuple[Region, ...]:
    """`DE-BY,AT` -> regions; raises HolidayError naming an unknown code and what is known."""
    import holidays

    known = holidays.list_supported_countries()
    regions: list[Region] = []
    codes = [code.strip() for code in text.split(",") if code.strip()]
    if not codes:
        raise HolidayError("expected country or subdivision codes such as 'DE-BY,AT'")
    if len(codes) > MAX_REGIONS:
        raise HolidayError(f"{len(codes)} regions: at most {MAX_REGIONS}")
    for code in codes:
        country, _, subdivision = code.upper().partition("-")
        if country not in known:
            raise HolidayError(
                f"unknown country {code[:20]!r}: expected an ISO 3166-1 alpha-2 code such as "
                "'DE', optionally with a subdivision ('DE-BY')"
            )
        subdivision = next((s for s in known[country] if s.upper() == subdivision), subdivision)
        if subdivision and subdivision not in known[country]:
            listed = ", ".join(known[country][:30]) or "none"
            raise HolidayError(
                f"unknown subdivision {code[:20]!r}: {country} has {listed}"
                + (" ..." if len(known[country]) > 30 else "")
            )
        region = Region(country, subdivision or None)
        if region not in regions:
            regions.append(region)
    return tuple(regions)


def single_zone(schedule: Schedule) -> str:
    """The zone of online hours that holidays apply in: their weekly windows must share one."""
    zones = sorted({w.zone for w in schedule.windows if isinstance(w, Weekly)})
    if len(zones) != 1:
        found = f"found {', '.join(zones)}" if zones else "found no weekly window"
        raise HolidayError(
            "holidays need online hours of weekly windows in one zone (a holiday is a local "
            f"day): {found}"
        )
    return zones[0]


@functools.lru_cache(maxsize=256)
def _year(region: Region, year: int) -> dict[date, str]:
    import holidays

    found = holidays.country_holidays(region.country, subdiv=region.subdivision, years=year)
    if _LANGUAGE in found.supported_languages:
        found = holidays.country_holidays(
            region.country, subdiv=region.subdivision, years=year, language=_LANGUAGE
        )
    return {day: str(name) for day, name in found.items()}


@dataclass(frozen=True, slots=True)
class OnlineHours:
    """Online hours, closed on the regions' public holidays (local days in `zone`)."""

    schedule: Schedule
    regions: tuple[Region, ...] = ()
    zone: str = "UTC"

    def __str__(self) -> str:
        return str(self.schedule)

    @property
    def holidays_text(self) -> str | None:
        return ",".join(str(r) for r in self.regions) if self.regions else None

    def holiday_on(self, day: date) -> str | None:
        """`Epiphany (DE-BY)`: the day's holiday names, with the regions that keep them."""
        names: dict[str, list[str]] = {}
        for region in self.regions:
            name = _year(region, day.year).get(day)
            if name is not None:
                names.setdefault(name, []).append(str(region))
        return "; ".join(f"{n} ({', '.join(r)})" for n, r in names.items()) or None

    def holiday(self, at: datetime) -> str | None:
        if not self.regions:
            return None
        return self.holiday_on(at.astimezone(zone_info(self.zone)).date())

    def active(self, at: datetime) -> Window | None:
        """The online-hours window open at `at`; None outside them or on a holiday."""
        return None if self.holiday(at) is not None else self.schedule.active(at)

    def inside(self, at: datetime) -> bool:
        return self.active(at) is not None

    def next_change(self, after: datetime) -> datetime | None:
        """The first instant after `after` where `inside()` flips; None if it never does."""
        if not self.regions:
            return self.schedule.next_change(after)
        state, at = self.inside(after), after
        for _ in range(_STEPS):
            candidates = [t for t in (self.schedule.next_change(at), self._boundary(at)) if t]
            if not candidates:
                return None
            at = min(candidates)
            if self.inside(at) is not state:
                return at
        return None

    def _boundary(self, after: datetime) -> datetime | None:
        """The next local midnight after `after` that starts or ends a holiday."""
        tz = zone_info(self.zone)
        year = after.astimezone(tz).year
        days = sorted(
            {
                d
                for r in self.regions
                for y in (year, year + 1)
                for d in _year(r, y)
                if d.year < 9000
            }
        )
        edges = sorted({e for d in days for e in (d, d + timedelta(days=1))})
        instants = [datetime.combine(d, time(0), tz).astimezone(UTC) for d in edges]
        index = bisect.bisect_right(instants, after)
        return instants[index] if index < len(instants) else None
