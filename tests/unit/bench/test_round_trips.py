"""The bench's round-trip counters: every command Redis ran but the counter's own INFO, and differences of runs."""

from bench.round_trips import RoundTrips, parse_commandstats


def test_commandstats_count_every_command_but_info() -> None:
    info = {
        "cmdstat_get": {"calls": 7, "usec": 10},
        "cmdstat_evalsha": {"calls": 2},
        "cmdstat_info": {"calls": 40},
        "errorstat_ERR": {"count": 3},
    }
    calls = parse_commandstats(info)
    assert calls == {"get": 7, "evalsha": 2}
    assert RoundTrips(calls, 0).redis_commands == 9


def test_a_run_is_what_the_counters_grew_by() -> None:
    before = RoundTrips({"get": 20, "set": 5}, 40)
    after = RoundTrips({"get": 100, "set": 5, "evalsha": 20}, 45)
    run = after - before
    assert run == RoundTrips({"get": 80, "evalsha": 20}, 5)
    assert run.redis_commands == 100


def test_the_busiest_commands_come_first_per_message() -> None:
    run = RoundTrips({"get": 80, "evalsha": 20, "set": 40}, 5)
    assert run.busiest_commands(per=20, top=2) == "get 4.0 set 2.0"
