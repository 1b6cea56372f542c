"""The model's ceiling on every core: processes that warm up apart, call together, and report one result."""

from bench.bare_litellm import bare_litellm_processes


async def test_processes_share_the_calls_and_their_results_add_up() -> None:
    result = await bare_litellm_processes(2, 40, concurrency=4)
    assert result.name == "ceiling: bare litellm calls, 2 processes"
    assert (result.requests, result.errors, len(result.latencies_ms)) == (40, 0, 40)
    # From the first call of either process to the last of either: never longer than both took in turn.
    assert 0 < result.seconds < sum(result.latencies_ms) / 1000
