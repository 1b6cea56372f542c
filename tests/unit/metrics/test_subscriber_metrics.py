"""The subscriber wrapper counts every message it consumes, retries, dead-letters and times, per group and handler."""

from prometheus_client import REGISTRY

from sellmesh.subscriber import Handled, PermanentError, initialize_metrics
from tests.unit.metrics.exercise import close_command, record, subscription

LABELS = {"group": "metrics-test", "topic": "orders.commands.v1"}


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, {**LABELS, **labels}) or 0.0


async def test_a_handled_message_is_consumed_handled_and_timed_once() -> None:
    sub, _ = subscription("ok_handler", fail_with=None)
    before = value("sellmesh_handler_duration_seconds_count", handler="ok_handler")
    await sub.consume(record(close_command()))
    assert value("sellmesh_messages_consumed_total", handler="ok_handler") == 1
    assert value("sellmesh_messages_handled_total", handler="ok_handler", outcome="ok") == 1
    assert value("sellmesh_handler_duration_seconds_count", handler="ok_handler") == before + 1


async def test_a_redelivery_only_the_handler_recognised_counts_as_a_duplicate() -> None:
    # Idempotent subscriptions skip the Redis dedup: their handler's own keys tell the subscriber.
    sub, broker = subscription("idempotent_handler", fail_with=None, returns=Handled.DUPLICATE)
    await sub.consume(record(close_command()))
    assert value("sellmesh_messages_handled_total", handler="idempotent_handler", outcome="duplicate") == 1
    assert value("sellmesh_messages_handled_total", handler="idempotent_handler", outcome="ok") == 0
    assert broker.published == []


async def test_a_failing_handler_is_retried_then_dead_lettered_with_its_kind() -> None:
    sub, broker = subscription("flaky_handler", fail_with=RuntimeError)
    await sub.consume(record(close_command()))
    assert value("sellmesh_handler_retries_total", handler="flaky_handler") == 1
    assert value("sellmesh_messages_dead_lettered_total", handler="flaky_handler", kind="exhausted") == 1
    assert [topic for topic, _ in broker.published] == ["orders.commands.v1.dlq"]


async def test_invalid_bytes_and_permanent_errors_are_counted_apart() -> None:
    sub, _ = subscription("strict_handler", fail_with=PermanentError)
    await sub.consume(record(b"not json"))
    await sub.consume(record(close_command(), offset=1))
    assert value("sellmesh_messages_dead_lettered_total", handler="strict_handler", kind="invalid") == 1
    assert value("sellmesh_messages_dead_lettered_total", handler="strict_handler", kind="permanent") == 1
    assert value("sellmesh_handler_retries_total", handler="strict_handler") == 0
    assert value("sellmesh_handler_duration_seconds_count", handler="strict_handler") == 2


def test_a_subscription_starts_every_failure_series_at_zero() -> None:
    initialize_metrics(group="metrics-test", topic="orders.commands.v1", handler="quiet_handler")
    for name, extra in [
        ("sellmesh_messages_failed_total", {}),
        ("sellmesh_handler_retries_total", {}),
        ("sellmesh_messages_dead_lettered_total", {"kind": "exhausted"}),
        ("sellmesh_messages_handled_total", {"outcome": "invalid"}),
    ]:
        assert REGISTRY.get_sample_value(name, {**LABELS, "handler": "quiet_handler", **extra}) == 0.0
