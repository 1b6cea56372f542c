"""First-response deadlines in business time: plain functions over fixed dates, DST included."""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from services.handoff.sla import BusinessHours, business_deadline, business_hours, is_quiet

BERLIN = ZoneInfo("Europe/Berlin")
WEEKDAYS_9_TO_17 = business_hours("Europe/Berlin", [(day, "09:00", "17:00") for day in range(5)])


def berlin(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=BERLIN)


def test_always_open_counts_wall_time() -> None:
    start = datetime(2026, 11, 28, 23, 50, tzinfo=UTC)
    assert business_deadline(start, 900, BusinessHours()) == start + timedelta(minutes=15)


def test_inside_business_hours_the_deadline_is_plain_arithmetic() -> None:
    # Wednesday 25 November 2026, 10:00 in Berlin.
    assert business_deadline(berlin(2026, 11, 25, 10, 0), 900, WEEKDAYS_9_TO_17) == berlin(2026, 11, 25, 10, 15)


def test_time_left_at_closing_carries_over_to_the_next_opening() -> None:
    deadline = business_deadline(berlin(2026, 11, 25, 16, 50), 900, WEEKDAYS_9_TO_17)
    assert deadline == berlin(2026, 11, 26, 9, 5)


def test_a_ticket_opened_on_friday_evening_is_due_on_monday_morning() -> None:
    deadline = business_deadline(berlin(2026, 11, 27, 20, 0), 900, WEEKDAYS_9_TO_17)
    assert deadline == berlin(2026, 11, 30, 9, 15)
    assert deadline.tzinfo is UTC or deadline.utcoffset() == timedelta(0)


def test_a_ticket_opened_before_opening_starts_counting_at_opening() -> None:
    assert business_deadline(berlin(2026, 11, 25, 6, 0), 60, WEEKDAYS_9_TO_17) == berlin(2026, 11, 25, 9, 1)


def test_a_deadline_longer_than_a_day_spans_several_business_days() -> None:
    # Ten business hours from Thursday 16:00: one hour Thursday, eight Friday, one Monday.
    deadline = business_deadline(berlin(2026, 11, 26, 16, 0), 10 * 3600, WEEKDAYS_9_TO_17)
    assert deadline == berlin(2026, 11, 30, 10, 0)


def test_business_hours_follow_the_local_clock_across_a_dst_change() -> None:
    # Berlin leaves summer time on Sunday 25 October 2026: 09:00 local is 07:00 UTC on Friday, 08:00 on Monday.
    deadline = business_deadline(berlin(2026, 10, 23, 16, 59), 120, WEEKDAYS_9_TO_17)
    assert deadline == berlin(2026, 10, 26, 9, 1)
    assert deadline.astimezone(UTC) == datetime(2026, 10, 26, 8, 1, tzinfo=UTC)


def test_a_window_can_close_at_midnight() -> None:
    late = business_hours("UTC", [(2, "18:00", "24:00"), (3, "18:00", "24:00")])
    start = datetime(2026, 11, 25, 23, 50, tzinfo=UTC)  # a Wednesday
    assert business_deadline(start, 1200, late) == datetime(2026, 11, 26, 18, 10, tzinfo=UTC)


def test_the_start_is_read_in_any_zone() -> None:
    start_utc = datetime(2026, 11, 25, 15, 55, tzinfo=UTC)  # 16:55 in Berlin
    assert business_deadline(start_utc, 600, WEEKDAYS_9_TO_17) == berlin(2026, 11, 26, 9, 5)


def test_hours_that_never_open_are_an_error_not_a_wait_forever() -> None:
    never = BusinessHours(timezone="UTC", windows={0: (datetime.min.time(), datetime.min.time())})
    with pytest.raises(ValueError, match="never open"):
        business_deadline(datetime(2026, 11, 25, tzinfo=UTC), 60, never)


def test_quiet_means_nobody_wrote_for_the_whole_period() -> None:
    last = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    assert not is_quiet(last, last + timedelta(seconds=3599), 3600)
    assert is_quiet(last, last + timedelta(seconds=3600), 3600)
