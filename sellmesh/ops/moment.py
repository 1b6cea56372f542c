"""Parses the moments and rates people type: ISO timestamps, relative ages like `2h`, and `50/s`."""

import re
from datetime import UTC, datetime, timedelta

from sellmesh.ops.errors import BadInput

_RELATIVE = re.compile(r"^(\d+)\s*([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_RATE = re.compile(r"^(\d+(?:\.\d+)?)\s*(?:/\s*s)?$")


def parse_moment(text: str, *, now: datetime) -> datetime:
    """`now`, an age before `now` (`90s`, `15m`, `2h`, `3d`, `1w`), or an ISO 8601 time (naive means UTC)."""
    value = text.strip().lower()
    if value == "now":
        return now
    relative = _RELATIVE.match(value)
    if relative:
        try:
            return now - timedelta(seconds=int(relative.group(1)) * _UNIT_SECONDS[relative.group(2)])
        except OverflowError:
            raise BadInput(f"{text!r} reaches before the first year a clock can name") from None
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise BadInput(
            f"cannot read {text!r} as a time: use ISO 8601 (2026-11-25T14:00:00Z) or an age like 30m, 2h, 3d"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def parse_rate(text: str) -> float:
    """Messages per second, written `50/s` or `50`; must be positive."""
    match = _RATE.match(text.strip())
    if match is None or float(match.group(1)) <= 0:
        raise BadInput(f"cannot read {text!r} as a rate: use a positive number per second, like 20/s")
    return float(match.group(1))


def to_millis(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def from_millis(millis: int) -> datetime:
    return datetime.fromtimestamp(millis / 1000, UTC)
