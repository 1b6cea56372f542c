"""Parses the moments and rates people type: ISO timestamps, relative ages like `2h`, and `50/s`."""

import re
from datetime import UTC, datetime, timedelta

from sellmesh.ops.errors import BadInput

_RELATIVE = re.compile(r"^(\d+)\s*([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_RATE = re.compile(r"^(\d+(?:\.\d+)?)\s*(?:/\s*s)?$")


# Kafka's record times count from 1970: a lookup by an earlier time is refused by the client.
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def parse_moment(text: str, *, now: datetime) -> datetime:
    """`now`, an age before `now` (`90s`, `15m`, `2h`, `3d`, `1w`), or an ISO 8601 time (naive means UTC), from
    1970 on."""
    moment = _parse_moment(text, now=now)
    if moment < _EPOCH:
        raise BadInput(f"{text!r} is before 1970-01-01, where the broker's record times begin")
    return moment


def _parse_moment(text: str, *, now: datetime) -> datetime:
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
