"""The subscriber's retry budget: an outage of a dependency is waited out, a failing handler is dead-lettered."""

import uuid
from typing import Any

import httpx
import pytest
from aiokafka import ConsumerRecord
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy.exc import OperationalError

from schemas.topics import HANDOFF_COMMANDS, dlq_of
from sellmesh.subscriber import DependencyUnavailable, RetryPolicy, Subscription, dependency_unavailable
from tests.builders import random_tenant_id, resolve_command

# No real waiting: the policy's delays are a few milliseconds, its outage budget one second.
FAST = RetryPolicy(attempts=3, base_seconds=0.001, max_seconds=0.002, unavailable_seconds=1.0)


class Published:
    """Stands in for the broker: keeps what would have been published (the dead letters)."""

    def __init__(self) -> None:
        self.messages: list[tuple[str, bytes]] = []

    async def publish(self, body: bytes, *, topic: str, **_: Any) -> None:
        self.messages.append((topic, body))


class Forgetful:
    async def seen(self, key: str) -> bool:
        return False

    async def mark(self, key: str) -> None:
        return None


class FailsThen:
    """Raises `error` for the first `failures` calls, then succeeds."""

    def __init__(self, error: Exception, failures: int) -> None:
        self.error = error
        self.failures = failures
        self.calls = 0

    async def __call__(self, _: Any) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error


def record() -> ConsumerRecord[bytes, bytes]:
    command = resolve_command(random_tenant_id(), f"conv-{uuid.uuid4().hex[:8]}")
    value = command.model_dump_json().encode()
    return ConsumerRecord(HANDOFF_COMMANDS, 0, 7, 0, 0, b"k", value, None, 1, len(value), [])


def subscription(handler: FailsThen, broker: Published) -> Subscription:
    return Subscription(broker, HANDOFF_COMMANDS, "g", "resolve", handler, Forgetful(), FAST)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "error",
    [
        DependencyUnavailable("graph api answered 429"),
        RedisConnectionError("Connection closed by server."),
        OperationalError("SELECT 1", {}, Exception("terminating connection due to administrator command")),
        httpx.ConnectError("connection refused"),
    ],
)
async def test_an_unavailable_dependency_is_waited_out_past_the_attempt_budget(error: Exception) -> None:
    broker = Published()
    handler = FailsThen(error, failures=FAST.attempts + 5)
    await subscription(handler, broker).consume(record())
    assert handler.calls == FAST.attempts + 6
    assert broker.messages == []


async def test_a_failing_handler_is_dead_lettered_after_its_attempts() -> None:
    broker = Published()
    handler = FailsThen(RuntimeError("bug"), failures=100)
    await subscription(handler, broker).consume(record())
    assert handler.calls == FAST.attempts
    assert [topic for topic, _ in broker.messages] == [dlq_of(HANDOFF_COMMANDS)]


async def test_an_outage_longer_than_the_budget_is_dead_lettered() -> None:
    broker = Published()
    policy = RetryPolicy(attempts=2, base_seconds=0.01, max_seconds=0.01, unavailable_seconds=0.05)
    handler = FailsThen(DependencyUnavailable("down"), failures=10_000)
    sub = Subscription(broker, HANDOFF_COMMANDS, "g", "resolve", handler, Forgetful(), policy)  # type: ignore[arg-type]
    await sub.consume(record())
    assert [topic for topic, _ in broker.messages] == [dlq_of(HANDOFF_COMMANDS)]
    assert handler.calls < 10_000


def test_errors_about_the_message_are_not_outages() -> None:
    assert not dependency_unavailable(ValueError("bad sku"))
    assert not dependency_unavailable(KeyError("missing"))
