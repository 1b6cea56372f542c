"""First-response deadlines that count only a tenant's business hours (pure: zoneinfo and plain data)."""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

# A deadline further than this is a misconfiguration (no open day at all), not a date to wait for.
MAX_DAYS_AHEAD = 3 * 366


@dataclass(frozen=True)
class BusinessHours:
    """Open windows per weekday (0 = Monday) in local time; no windows at all means always open."""

    timezone: str = "UTC"
    windows: Mapping[int, tuple[time, time | None]] = field(default_factory=dict)

    @property
    def always_open(self) -> bool:
        return not self.windows


def _clock(text: str) -> time | None:
    """ "HH:MM" as a time; "24:00" is the end of the day, which has no `time`: None."""
    if text == "24:00":
        return None
    hours, minutes = text.split(":")
    return time(int(hours), int(minutes))


def business_hours(timezone: str, windows: Iterable[tuple[int, str, str]]) -> BusinessHours:
    """From the settings' (weekday, "HH:MM" opens, "HH:MM" closes) triples, already validated by the gateway."""
    parsed: dict[int, tuple[time, time | None]] = {}
    for day, opens, closes in windows:
        start = _clock(opens)
        if start is None:
            continue
        parsed[day] = (start, _clock(closes))
    return BusinessHours(timezone=timezone, windows=parsed)


def _window(day: date, hours: BusinessHours, zone: ZoneInfo) -> tuple[datetime, datetime] | None:
    span = hours.windows.get(day.weekday())
    if span is None:
        return None
    opens, closes = span
    start = datetime.combine(day, opens, tzinfo=zone)
    end_day, end_time = (day + timedelta(days=1), time(0)) if closes is None else (day, closes)
    end = datetime.combine(end_day, end_time, tzinfo=zone)
    # Differences are taken in UTC: Python subtracts same-zone aware datetimes by wall clock, across DST too.
    return start.astimezone(UTC), end.astimezone(UTC)


def business_deadline(start: datetime, seconds: float, hours: BusinessHours) -> datetime:
    """The moment `seconds` of open business time have passed since `start` (an aware datetime)."""
    begin = start.astimezone(UTC)
    remaining = timedelta(seconds=seconds)
    if hours.always_open:
        return begin + remaining
    zone = ZoneInfo(hours.timezone)
    # Start a day early: a window of the previous local day cannot reach past midnight, but this one's may.
    day = begin.astimezone(zone).date() - timedelta(days=1)
    for _ in range(MAX_DAYS_AHEAD):
        window = _window(day, hours, zone)
        day += timedelta(days=1)
        if window is None:
            continue
        opens, closes = max(window[0], begin), window[1]
        if opens >= closes:
            continue
        if remaining <= closes - opens:
            return opens + remaining
        remaining -= closes - opens
    raise ValueError("business hours never open")


def is_quiet(last_activity: datetime, now: datetime, quiet_seconds: int) -> bool:
    """Nobody wrote for `quiet_seconds` (wall time: quiet is quiet, business hours or not)."""
    return now - last_activity >= timedelta(seconds=quiet_seconds)
