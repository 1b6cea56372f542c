"""The one subscriber wrapper every handler runs in: decode, dedup, retry with backoff, dead-letter.

Offsets are committed only after the handler's work is done (or the message is safely in
the DLQ), one message at a time, so a rebalance never leaves finished work uncommitted and
never commits unfinished work.
"""

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from aiokafka import ConsumerRecord
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from pydantic import ValidationError
from redis.asyncio import Redis

from schemas.registry import adapter_for
from schemas.topics import dlq_of
from sellmesh.logging import log_context
from sellmesh.metrics import HANDLER_RETRIES, HANDLER_SECONDS, MESSAGES_HANDLED

log = logging.getLogger(__name__)

ERROR_TEXT_LIMIT = 1000


class PermanentError(Exception):
    """Retrying cannot help (a reference that will never resolve, a broken invariant): dead-letter now."""


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4
    base_seconds: float = 0.2
    max_seconds: float = 5.0

    def delay(self, attempt: int) -> float:
        """Exponential backoff with jitter, so replicas retrying one dependency do not stampede it."""
        raw = min(self.max_seconds, self.base_seconds * float(2 ** (attempt - 1)))
        return raw * random.uniform(0.5, 1.0)


class Dedup(Protocol):
    async def seen(self, key: str) -> bool: ...

    async def mark(self, key: str) -> None: ...


class RedisDedup:
    """Remembers finished event ids per consumer group for longer than any redelivery horizon."""

    def __init__(self, redis: Redis, *, ttl_seconds: int) -> None:
        self.redis = redis
        self.ttl_seconds = ttl_seconds

    async def seen(self, key: str) -> bool:
        return bool(await self.redis.exists(f"dedup:{key}"))

    async def mark(self, key: str) -> None:
        await self.redis.set(f"dedup:{key}", "1", ex=self.ttl_seconds)


Handler = Callable[[Any], Awaitable[None]]


def dead_letter_headers(
    record: ConsumerRecord[bytes, bytes], *, group: str, handler: str, error: BaseException, kind: str, attempts: int
) -> dict[str, str]:
    headers = {name: value.decode("utf-8", "replace") for name, value in record.headers or ()}
    headers.update(
        {
            "x-error-kind": kind,
            "x-error-type": type(error).__name__,
            "x-error-message": str(error)[:ERROR_TEXT_LIMIT],
            "x-original-topic": record.topic,
            "x-original-partition": str(record.partition),
            "x-original-offset": str(record.offset),
            "x-consumer-group": group,
            "x-handler": handler,
            "x-attempts": str(attempts),
            "x-failed-at": datetime.now(UTC).isoformat(),
        }
    )
    return headers


@dataclass
class Subscription:
    """Everything the wrapper needs to run one handler on one topic for one consumer group."""

    broker: KafkaBroker
    topic: str
    group: str
    name: str
    handler: Handler
    dedup: Dedup
    retry: RetryPolicy

    async def dead_letter(
        self, record: ConsumerRecord[bytes, bytes], error: BaseException, *, kind: str, attempts: int
    ) -> None:
        headers = dead_letter_headers(
            record, group=self.group, handler=self.name, error=error, kind=kind, attempts=attempts
        )
        # The original bytes and key, untouched, so a replay is byte-for-byte the message that failed.
        await self.broker.publish(record.value or b"", topic=dlq_of(self.topic), key=record.key, headers=headers)
        MESSAGES_HANDLED.labels(self.topic, self.name, "dead_lettered" if kind != "invalid" else "invalid").inc()
        log.error(
            "message dead-lettered",
            extra={"error_kind": kind, "error": str(error)[:ERROR_TEXT_LIMIT], "attempts": attempts},
        )

    async def consume(self, record: ConsumerRecord[bytes, bytes]) -> None:
        started = time.perf_counter()
        try:
            event = adapter_for(self.topic).validate_json(record.value or b"")
        except ValidationError as exc:
            with log_context(topic=self.topic, handler=self.name, offset=record.offset):
                await self.dead_letter(record, exc, kind="invalid", attempts=0)
            return
        with log_context(
            tenant_id=event.tenant_id,
            correlation_id=event.correlation_id,
            event_id=event.event_id,
            topic=self.topic,
            handler=self.name,
        ):
            key = f"{self.group}:{self.name}:{event.event_id}"
            if await self.dedup.seen(key):
                MESSAGES_HANDLED.labels(self.topic, self.name, "duplicate").inc()
                return
            if await self._run_with_retries(record, event):
                await self.dedup.mark(key)
                MESSAGES_HANDLED.labels(self.topic, self.name, "ok").inc()
        HANDLER_SECONDS.labels(self.topic, self.name).observe(time.perf_counter() - started)

    async def _run_with_retries(self, record: ConsumerRecord[bytes, bytes], event: Any) -> bool:
        for attempt in range(1, self.retry.attempts + 1):
            try:
                await self.handler(event)
                return True
            except PermanentError as exc:
                await self.dead_letter(record, exc, kind="permanent", attempts=attempt)
                return False
            except Exception as exc:
                if attempt == self.retry.attempts:
                    await self.dead_letter(record, exc, kind="exhausted", attempts=attempt)
                    return False
                HANDLER_RETRIES.labels(self.topic, self.name).inc()
                log.warning(
                    "handler failed, retrying", extra={"attempt": attempt, "error": repr(exc)[:ERROR_TEXT_LIMIT]}
                )
                await asyncio.sleep(self.retry.delay(attempt))
        return False


def subscribe(
    broker: KafkaBroker,
    topic: str,
    *,
    group: str,
    name: str,
    handler: Handler,
    dedup: Dedup,
    retry: RetryPolicy,
) -> Subscription:
    """Register `handler` for `topic` in consumer group `group`, wrapped in decode/dedup/retry/DLQ."""
    subscription = Subscription(broker, topic, group, name, handler, dedup, retry)

    async def on_message(msg: KafkaMessage) -> None:
        try:
            await subscription.consume(msg.raw_message)
        except Exception:
            # Only infrastructure failures get here (Redis or the DLQ publish is down). Pause so
            # the redelivery that NACK_ON_ERROR causes does not spin, then let it happen.
            log.exception("message not finished; it will be redelivered")
            await asyncio.sleep(1.0)
            raise

    on_message.__name__ = f"on_{name}"
    broker.subscriber(
        topic,
        group_id=group,
        ack_policy=AckPolicy.NACK_ON_ERROR,
        auto_offset_reset="earliest",
        title=f"{group}/{name}",
    )(on_message)
    return subscription
