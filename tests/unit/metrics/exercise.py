"""Drives the runtime's metric-bearing code paths without infrastructure, for the metrics tests."""

import uuid
from datetime import UTC, datetime
from typing import Any

from aiokafka import ConsumerRecord

from schemas.envelope import Actor, ActorKind
from schemas.orders import CloseOrder
from schemas.topics import ORDERS_COMMANDS
from sellmesh.subscriber import Handled, RetryPolicy, Subscription


class MemoryDedup:
    def __init__(self) -> None:
        self.keys: set[str] = set()

    async def seen(self, key: str) -> bool:
        return key in self.keys

    async def mark(self, key: str) -> None:
        self.keys.add(key)


class RecordingBroker:
    """Stands in for the broker's publish: keeps what was dead-lettered."""

    def __init__(self) -> None:
        self.published: list[tuple[str, bytes]] = []

    async def publish(self, message: bytes, *, topic: str, **_: Any) -> None:
        self.published.append((topic, message))


def record(value: bytes, *, offset: int = 0) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord(
        topic=ORDERS_COMMANDS,
        partition=0,
        offset=offset,
        timestamp=0,
        timestamp_type=0,
        key=b"k",
        value=value,
        checksum=None,
        serialized_key_size=1,
        serialized_value_size=len(value),
        headers=[("tenant_id", str(uuid.uuid4()).encode())],
    )


def close_command() -> bytes:
    command = CloseOrder(
        event_id=uuid.uuid4(),
        tenant_id=uuid.uuid4(),
        correlation_id=uuid.uuid4(),
        occurred_at=datetime.now(UTC),
        producer="gateway",
        order_id=uuid.uuid4(),
        actor=Actor(kind=ActorKind.OWNER, id="owner"),
    )
    return command.model_dump_json().encode()


def subscription(
    handler_name: str, *, fail_with: type[Exception] | None, returns: Handled | None = None
) -> tuple[Subscription, RecordingBroker]:
    broker = RecordingBroker()

    async def handle(_: Any) -> Handled | None:
        if fail_with is not None:
            raise fail_with("refused for the test")
        return returns

    built = Subscription(
        broker,  # type: ignore[arg-type]  # only publish is used
        ORDERS_COMMANDS,
        "metrics-test",
        handler_name,
        handle,
        MemoryDedup(),
        RetryPolicy(attempts=2, base_seconds=0.0, max_seconds=0.0),
    )
    return built, broker
