"""The subscriber's retry budget: an outage of a dependency is waited out, a failing handler is dead-lettered."""

import uuid
from typing import Any

import httpx
import pytest
from aiokafka import ConsumerRecord
from redis.exceptions import ConnectionError as RedisConnectionError
from sqlalchemy.exc import OperationalError

from schemas.topics import HANDOFF_COMMANDS, dlq_of
from sellmesh.subscriber import (
    DependencyUnavailable,
    PermanentError,
    RetryPolicy,
    Subscription,
    dependency_unavailable,
)
from services.ingest.ratelimit import RateLimited
from services.payments.stripe_gateway import CheckoutRejected, CheckoutUnavailable
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


class GaveUp:
    """An `on_give_up` that keeps what it was told, or fails as its own dependency is down."""

    def __init__(self, fails: bool = False) -> None:
        self.fails = fails
        self.calls: list[tuple[Any, BaseException]] = []

    async def __call__(self, event: Any, error: BaseException) -> None:
        self.calls.append((event, error))
        if self.fails:
            raise RedisConnectionError("down too")


@pytest.mark.parametrize("error", [RuntimeError("bug"), PermanentError("never resolves")], ids=["spent", "permanent"])
async def test_a_message_dead_lettered_after_its_handler_failed_is_given_up_once_after_its_dead_letter(
    error: Exception,
) -> None:
    broker, gave_up = Published(), GaveUp()
    handler = FailsThen(error, failures=100)
    sent = record()
    sub = Subscription(broker, HANDOFF_COMMANDS, "g", "resolve", handler, Forgetful(), FAST, gave_up)  # type: ignore[arg-type]
    await sub.consume(sent)
    assert [topic for topic, _ in broker.messages] == [dlq_of(HANDOFF_COMMANDS)]
    [(event, last)] = gave_up.calls
    assert event.model_dump_json().encode() == sent.value and last is error


async def test_undecodable_bytes_are_not_given_up_and_a_failing_give_up_still_finishes_the_message() -> None:
    broker, gave_up = Published(), GaveUp(fails=True)
    junk = ConsumerRecord(HANDOFF_COMMANDS, 0, 8, 0, 0, b"k", b"{not json", None, 1, 9, [])
    sub = Subscription(
        broker, HANDOFF_COMMANDS, "g", "resolve", FailsThen(RuntimeError("bug"), 100), Forgetful(), FAST, gave_up
    )  # type: ignore[arg-type]
    await sub.consume(junk)
    assert gave_up.calls == []
    await sub.consume(record())  # the give-up's own failure is logged; the dead letter stands, nothing raises
    assert len(gave_up.calls) == 1
    assert [topic for topic, _ in broker.messages] == [dlq_of(HANDOFF_COMMANDS)] * 2


def test_a_channel_rate_limit_and_a_stripe_outage_are_waited_out_like_any_outage() -> None:
    assert dependency_unavailable(RateLimited("no token within 30 s"))
    assert dependency_unavailable(CheckoutUnavailable("stripe answered 503"))
    assert not dependency_unavailable(CheckoutRejected("stripe answered 400"))
