"""The bench's round-trip counters: every command Redis ran but the counter's own INFO, and differences of runs."""

from bench.round_trips import RoundTrips, parse_commandstats


def test_commandstats_sum_every_command_but_info() -> None:
    info = {
        "cmdstat_get": {"calls": 7, "usec": 10},
        "cmdstat_evalsha": {"calls": 2},
        "cmdstat_info": {"calls": 40},
        "errorstat_ERR": {"count": 3},
    }
    assert parse_commandstats(info) == 9


def test_a_run_is_what_the_counters_grew_by() -> None:
    assert RoundTrips(120, 45) - RoundTrips(20, 40) == RoundTrips(100, 5)
