"""The mesh bench's ratios: against the model's ceiling measured before and after the mesh runs, and the
mesh's overhead as its p99 less the model's share."""

from bench.load import Result
from bench.mesh_load import bracketed_rate, ratio_rows


def _result(name: str, requests: int, seconds: float) -> Result:
    return Result(name, requests, seconds, [10.0] * requests, 0)


def test_the_ceiling_is_the_mean_of_before_and_after() -> None:
    assert bracketed_rate(_result("before", 600, 1.0), _result("after", 400, 1.0)) == 500.0


def test_mesh_rows_are_ratios_of_the_bracketed_ceiling_and_carry_their_overhead() -> None:
    rows: list[dict[str, float | int | str]] = [
        {"name": "ceiling: bare litellm calls, 2 processes", "per_second": 600.0, "p99_ms": 20.0},
        {"name": "mesh: as fast as it goes", "per_second": 50.0, "p99_ms": 300.0},
    ]
    ratio_rows(rows, model_rate=500.0, kafka_rate=5000.0, model_p50=10.0)
    assert rows[0]["vs_litellm"] == 1.2
    assert rows[0]["overhead_p99_ms"] == ""
    assert rows[1]["vs_litellm"] == 0.1
    assert rows[1]["vs_kafka"] == 0.01
    # 1.5 model calls a line at the ceiling's median: 15 ms of the p99 is the model's.
    assert rows[1]["overhead_p99_ms"] == 285.0
