"""Times and rates as people type them."""

from datetime import UTC, datetime, timedelta, timezone

import pytest

from sellmesh.ops.errors import BadInput
from sellmesh.ops.moment import from_millis, parse_moment, parse_rate, to_millis

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "age"),
    [
        ("90s", timedelta(seconds=90)),
        ("15m", timedelta(minutes=15)),
        ("2h", timedelta(hours=2)),
        ("3d", timedelta(days=3)),
        ("1w", timedelta(weeks=1)),
        ("now", timedelta(0)),
        (" 2H ", timedelta(hours=2)),
    ],
)
def test_reads_relative_ages_back_from_now(text: str, age: timedelta) -> None:
    assert parse_moment(text, now=NOW) == NOW - age


def test_reads_iso_times_with_zone_and_treats_naive_ones_as_utc() -> None:
    assert parse_moment("2026-11-25T10:30:00Z", now=NOW) == datetime(2026, 11, 25, 10, 30, tzinfo=UTC)
    assert parse_moment("2026-11-25T10:30:00", now=NOW) == datetime(2026, 11, 25, 10, 30, tzinfo=UTC)
    plus_two = parse_moment("2026-11-25T12:30:00+02:00", now=NOW)
    assert plus_two == datetime(2026, 11, 25, 10, 30, tzinfo=UTC)
    assert plus_two.utcoffset() == timezone(timedelta(hours=2)).utcoffset(None)
    assert parse_moment("2026-11-25", now=NOW) == datetime(2026, 11, 25, tzinfo=UTC)


@pytest.mark.parametrize("text", ["yesterday", "2x", "-2h", "", "2026-13-01", "h2"])
def test_refuses_what_is_not_a_time(text: str) -> None:
    with pytest.raises(BadInput, match="cannot read"):
        parse_moment(text, now=NOW)


@pytest.mark.parametrize(("text", "rate"), [("20/s", 20.0), ("5", 5.0), ("0.5/s", 0.5), (" 10 / s ", 10.0)])
def test_reads_rates_per_second(text: str, rate: float) -> None:
    assert parse_rate(text) == rate


@pytest.mark.parametrize("text", ["0/s", "fast", "-1/s", "10/m", ""])
def test_refuses_rates_that_are_not_positive_per_second(text: str) -> None:
    with pytest.raises(BadInput, match="rate"):
        parse_rate(text)


def test_millis_round_trip() -> None:
    assert from_millis(to_millis(NOW)) == NOW


@pytest.mark.parametrize("text", ["999999999d", "99999999999w"])
def test_an_age_reaching_before_year_one_is_bad_input_not_a_crash(text: str) -> None:
    with pytest.raises(BadInput, match="before the first year"):
        parse_moment(text, now=NOW)


@pytest.mark.parametrize("text", ["1960-01-01", "0001-01-01T00:00:00Z", "3000w"])
def test_refuses_times_before_the_brokers_record_times_begin(text: str) -> None:
    with pytest.raises(BadInput, match="before 1970"):
        parse_moment(text, now=NOW)
