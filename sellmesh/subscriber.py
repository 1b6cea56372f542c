"""The one subscriber wrapper every handler runs in: decode, dedup, retry with backoff, dead-letter.

Offsets are committed only after the handler's work is done (or the message is safely in
the DLQ): once per fetched batch, after every record of it is finished or rewound for redelivery,
and on a rebalance for what is finished so far, so a rebalance never leaves finished work
uncommitted and never commits unfinished work.
"""

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from enum import Enum
from typing import Any, Literal, Protocol, TypeAlias

import httpx
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from faststream import AckPolicy
from faststream.exceptions import NackMessage
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from pydantic import ValidationError
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError

from schemas.registry import adapter_for
from schemas.topics import dlq_of
from sellmesh.commits import Commits
from sellmesh.logging import log_context
from sellmesh.metrics import (
    HANDLER_RETRIES,
    HANDLER_SECONDS,
    MESSAGES_CONSUMED,
    MESSAGES_DEAD_LETTERED,
    MESSAGES_FAILED,
    MESSAGES_HANDLED,
    current_handler,
)
from sellmesh.rebalance import FinishBeforeRevoke, InHand

log = logging.getLogger(__name__)

ERROR_TEXT_LIMIT = 1000


class PermanentError(Exception):
    """Retrying cannot help (a reference that will never resolve, a broken invariant): dead-letter now."""


class DependencyUnavailable(Exception):
    """A dependency is down, unreachable or rate-limiting: every message would fail alike, so retrying waits
    for it (within `RetryPolicy.unavailable_seconds`) instead of spending the message's attempts."""


def dependency_unavailable(error: BaseException) -> bool:
    """Errors that say nothing about the message: a lost connection to PostgreSQL, Redis, the broker or an API."""
    if isinstance(error, DependencyUnavailable | RedisConnectionError | RedisTimeoutError | httpx.TransportError):
        return True
    if isinstance(error, KafkaError):
        return bool(error.retriable)
    if isinstance(error, OperationalError | InterfaceError | DisconnectionError):
        return True
    return isinstance(error, DBAPIError) and error.connection_invalidated


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4
    base_seconds: float = 0.2
    max_seconds: float = 5.0
    # How long a message waits out an unavailable dependency before it counts as failed. Under aiokafka's
    # max.poll.interval (300 s), so a consumer waiting for a database failover keeps its partitions; a batch
    # starts no record after `BATCH_START_WITHIN_SECONDS` for the same reason.
    unavailable_seconds: float = 120.0

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


class NoDedup:
    """For handlers that are idempotent by their own unique keys: two Redis round trips per message saved."""

    async def seen(self, key: str) -> bool:
        return False

    async def mark(self, key: str) -> None:
        return None


class Handled(Enum):
    """What a handler may return instead of None. An idempotent handler has no Redis dedup in front of it,
    so only it can tell a redelivery apart: it returns DUPLICATE, and the message counts as a duplicate."""

    DUPLICATE = "duplicate"


Handler = Callable[[Any], Awaitable[Handled | None]]
# Called once a decoded message went to the DLQ after its handler failed (spent retries or a permanent error):
# where a dead letter alone would leave someone waiting (a customer's reply that was never sent), the service
# records what it gave up on. Not for undecodable bytes: there is no message to speak of.
GiveUp = Callable[[Any, BaseException], Awaitable[None]]


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
    on_give_up: GiveUp | None = None

    async def dead_letter(
        self, record: ConsumerRecord[bytes, bytes], error: BaseException, *, kind: str, attempts: int
    ) -> None:
        headers = dead_letter_headers(
            record, group=self.group, handler=self.name, error=error, kind=kind, attempts=attempts
        )
        # The original bytes and key, untouched, so a replay is byte-for-byte the message that failed.
        await self.broker.publish(record.value or b"", topic=dlq_of(self.topic), key=record.key, headers=headers)
        MESSAGES_HANDLED.labels(
            self.group, self.topic, self.name, "dead_lettered" if kind != "invalid" else "invalid"
        ).inc()
        MESSAGES_DEAD_LETTERED.labels(self.group, self.topic, self.name, kind).inc()
        log.error(
            "message dead-lettered",
            extra={"error_kind": kind, "error": str(error)[:ERROR_TEXT_LIMIT], "attempts": attempts},
        )

    async def _give_up(self, event: Any, error: BaseException) -> None:
        if self.on_give_up is None:
            return
        try:
            await self.on_give_up(event, error)
        except Exception:
            # The DLQ holds the message: a redrive runs the handler again, and on-call is alerted by the dead letter.
            log.exception("could not record a dead-lettered message as given up")

    async def consume(self, record: ConsumerRecord[bytes, bytes]) -> None:
        started = time.perf_counter()
        MESSAGES_CONSUMED.labels(self.group, self.topic, self.name).inc()
        token = current_handler.set(f"{self.group}/{self.name}")
        try:
            await self._consume(record)
        finally:
            current_handler.reset(token)
            HANDLER_SECONDS.labels(self.group, self.topic, self.name).observe(time.perf_counter() - started)

    async def _consume(self, record: ConsumerRecord[bytes, bytes]) -> None:
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
                MESSAGES_HANDLED.labels(self.group, self.topic, self.name, "duplicate").inc()
                return
            handled = await self._run_with_retries(record, event)
            if handled is not None:
                await self.dedup.mark(key)
                MESSAGES_HANDLED.labels(self.group, self.topic, self.name, handled).inc()

    async def _run_with_retries(
        self, record: ConsumerRecord[bytes, bytes], event: Any
    ) -> Literal["ok", "duplicate"] | None:
        """The outcome to count ("ok" or "duplicate"), or None when the message went to the DLQ."""
        attempt = 0
        first_failure: float | None = None
        while True:
            attempt += 1
            try:
                result = await self.handler(event)
                return "duplicate" if result is Handled.DUPLICATE else "ok"
            except PermanentError as exc:
                await self.dead_letter(record, exc, kind="permanent", attempts=attempt)
                await self._give_up(event, exc)
                return None
            except Exception as exc:
                first_failure = first_failure or time.monotonic()
                # An outage is not the message's fault: dead-lettering would empty the topic into the DLQ.
                waiting = dependency_unavailable(exc) and (
                    time.monotonic() - first_failure < self.retry.unavailable_seconds
                )
                if attempt >= self.retry.attempts and not waiting:
                    await self.dead_letter(record, exc, kind="exhausted", attempts=attempt)
                    await self._give_up(event, exc)
                    return None
                HANDLER_RETRIES.labels(self.group, self.topic, self.name).inc()
                log.warning(
                    "handler failed, retrying",
                    extra={"attempt": attempt, "unavailable": waiting, "error": repr(exc)[:ERROR_TEXT_LIMIT]},
                )
                await asyncio.sleep(self.retry.delay(attempt))


def initialize_metrics(*, group: str, topic: str, handler: str) -> None:
    """Create every series of a subscription at zero, so rates and alerts see the first failure too."""
    MESSAGES_CONSUMED.labels(group, topic, handler)
    HANDLER_RETRIES.labels(group, topic, handler)
    MESSAGES_FAILED.labels(group, topic, handler)
    for outcome in ("ok", "duplicate", "dead_lettered", "invalid"):
        MESSAGES_HANDLED.labels(group, topic, handler, outcome)
    for kind in ("invalid", "permanent", "exhausted"):
        MESSAGES_DEAD_LETTERED.labels(group, topic, handler, kind)


# A fetched batch: the next record and whatever else is already fetched, at most this many. One FastStream call
# serves the batch.
BATCH_MAX_RECORDS = 100
# A batch starts no record this long after it began; the rest are fetched again by the next poll. A partition's
# records run one after another, each waiting out an outage up to `RetryPolicy.unavailable_seconds`, and a batch
# that outlasted aiokafka's max.poll.interval (300 s) would drop the consumer from its group mid-batch: its
# commits refused, its partitions run again elsewhere while it still runs them. 120 + 120 s stays under that.
BATCH_START_WITHIN_SECONDS = 120.0
# Pause before a message left unfinished (Redis or the DLQ publish is down) is delivered again, so it does not spin.
UNFINISHED_PAUSE_SECONDS = 1.0


def subscribe(
    broker: KafkaBroker,
    topic: str,
    *,
    group: str,
    name: str,
    handler: Handler,
    dedup: Dedup,
    retry: RetryPolicy,
    consumers: int = 1,
    session_timeout_ms: int = 10_000,
    fetch_max_wait_ms: int = 500,
    commit_interval_ms: int = 200,
) -> Subscription:
    """One handler on one topic with a consumer group of its own (`consume` with one subscription)."""
    subscription = Subscription(broker, topic, group, name, handler, dedup, retry)
    consume(
        broker,
        [subscription],
        consumers=consumers,
        session_timeout_ms=session_timeout_ms,
        fetch_max_wait_ms=fetch_max_wait_ms,
        commit_interval_ms=commit_interval_ms,
    )
    return subscription


def consume(
    broker: KafkaBroker,
    subscriptions: Sequence[Subscription],
    *,
    consumers: int = 1,
    session_timeout_ms: int = 10_000,
    fetch_max_wait_ms: int = 500,
    commit_interval_ms: int = 200,
) -> None:
    """Run `subscriptions`, all of one consumer group, on one consumer over all their topics.

    Each record goes to every subscription of its topic and counts as finished once all of them finished it;
    each subscription keeps its own dedup marks, retries and dead letters. One consumer per group, not per
    subscription: every idle consumer is a held fetch the broker answers several times a second.

    With one consumer (the default) records are fetched in batches and each partition of a batch is handled
    in a task of its own: partitions at once, each in order, and finished offsets are committed at most every
    `commit_interval_ms` (`commits.py`). With `consumers` > 1 FastStream runs that many consumers of each topic
    in the group, one record at a time each, and commits after each record.
    """
    if not subscriptions:
        raise ValueError("a consumer needs at least one subscription")
    group = subscriptions[0].group
    if any(s.group != group for s in subscriptions):
        raise ValueError(f"one consumer runs one group: {sorted({s.group for s in subscriptions})}")
    names = [s.name for s in subscriptions]
    if len(set(names)) != len(names):
        # The name is part of each dedup mark and metric series: two alike would share them.
        raise ValueError(f"subscriptions of group {group} need distinct names: {names}")
    by_topic: dict[str, list[Subscription]] = {}
    for subscription in subscriptions:
        initialize_metrics(group=group, topic=subscription.topic, handler=subscription.name)
        by_topic.setdefault(subscription.topic, []).append(subscription)
    topics = list(by_topic)

    async def finish_one(subscription: Subscription, record: ConsumerRecord[bytes, bytes]) -> bool:
        try:
            await subscription.consume(record)
        except Exception:
            # Only infrastructure failures get here (Redis or the DLQ publish is down).
            MESSAGES_FAILED.labels(group, subscription.topic, subscription.name).inc()
            log.exception("message not finished; it will be redelivered")
            return False
        return True

    def finisher(in_hand: InHand) -> Callable[[ConsumerRecord[bytes, bytes]], Awaitable[bool]]:
        async def finished(record: ConsumerRecord[bytes, bytes]) -> bool:
            """Handle one record in every subscription of its topic; False when it must be delivered again (the
            subscriptions that did finish it skip it then, by their dedup marks or their own unique keys)."""
            handlers = by_topic[record.topic]
            try:
                with in_hand.holding(record):
                    if len(handlers) == 1:  # the common case, without a task per handler
                        done = await finish_one(handlers[0], record)
                    else:
                        done = all(await asyncio.gather(*(finish_one(s, record) for s in handlers)))
                    if not done:
                        raise _Unfinished
            except _Unfinished:
                return False
            return True

        return finished

    options: dict[str, Any] = {
        "group_id": group,
        "ack_policy": AckPolicy.NACK_ON_ERROR,
        "auto_offset_reset": "earliest",
        "title": group,
        "session_timeout_ms": session_timeout_ms,
        "heartbeat_interval_ms": session_timeout_ms // 3,
        "fetch_max_wait_ms": fetch_max_wait_ms,
        "decoder": _the_message,
        "parser": _parse_leniently,
    }
    handler_name = f"on_{group.replace('-', '_')}"
    if consumers > 1:
        # FastStream runs several consumers with manual commits for one topic only: one subscriber per topic,
        # all in the group.
        for topic in topics:
            _attach_workers(broker, topic, finisher, consumers=consumers, name=handler_name, options=options)
    else:
        _attach_batches(
            broker, topics, finisher, name=handler_name, options=options, commit_seconds=commit_interval_ms / 1000
        )


Finisher = Callable[[InHand], Callable[[ConsumerRecord[bytes, bytes]], Awaitable[bool]]]


def _listener(group: str) -> tuple[InHand, FinishBeforeRevoke]:
    in_hand = InHand()
    # Bounded like a graceful stop: a handler waiting out an outage must not hold the whole group's rebalance.
    return in_hand, FinishBeforeRevoke(in_hand, group=group, wait_seconds=10.0)


def _attach_workers(
    broker: KafkaBroker, topic: str, finisher: Finisher, *, consumers: int, name: str, options: dict[str, Any]
) -> None:
    """`consumers` consumers of `topic`, one record at a time each."""
    in_hand, listener = _listener(options["group_id"])
    on_message = _one_at_a_time(finisher(in_hand), in_hand)
    on_message.__name__ = name
    # Several workers with manual commits make FastStream run one consumer per worker in the group.
    subscriber = broker.subscriber(topic, max_workers=consumers, listener=listener, **options)
    subscriber(on_message)
    listener.subscriber = subscriber


def _one_at_a_time(
    finished: Callable[[ConsumerRecord[bytes, bytes]], Awaitable[bool]], in_hand: InHand
) -> Callable[[KafkaMessage], Awaitable[None]]:
    async def on_message(msg: KafkaMessage) -> None:
        record: ConsumerRecord[bytes, bytes] = msg.raw_message
        if not in_hand.may_start(record):
            # Fetched before its partition's revoke began: it is the next owner's, from the offset the revoke
            # commits. A rewind, not an ack (FastStream would commit past it), and no error: nothing failed.
            # Checked in the same step as `finished` marks the record in hand, so the revoke sees one or the other.
            raise NackMessage
        if not await finished(record):
            await asyncio.sleep(UNFINISHED_PAUSE_SECONDS)
            # NACK_ON_ERROR rewinds the partition to this record.
            raise MessageUnfinished(f"{record.topic} offset {record.offset}")

    return on_message


def _attach_batches(
    broker: KafkaBroker,
    topics: list[str],
    finisher: Finisher,
    *,
    name: str,
    options: dict[str, Any],
    commit_seconds: float,
) -> None:
    """One consumer of every topic in `topics`: fetched batches, each partition of a batch in a task of its own."""
    in_hand, listener = _listener(options["group_id"])
    finished = finisher(in_hand)
    commits = Commits(in_hand, group=options["group_id"], interval_seconds=commit_seconds)
    listener.on_revoked.append(commits.forget)

    async def on_batch(msg: KafkaMessage) -> None:
        records: tuple[ConsumerRecord[bytes, bytes], ...] = msg.raw_message
        by_partition = partitions_of(records)
        start_by = asyncio.get_running_loop().time() + BATCH_START_WITHIN_SECONDS
        try:
            # A task group: should one partition's task fail, the others stop before the rewind, not after it.
            async with asyncio.TaskGroup() as group:
                tasks = [
                    group.create_task(_in_order(part, finished, in_hand, start_by=start_by))
                    for part in by_partition.values()
                ]
            outcomes = [task.result() for task in tasks]
        except BaseException:
            # Nothing acks for us (the commits are ours): rewind past what finished, so nothing is skipped.
            _rewind(msg.consumer, by_partition, in_hand)
            raise
        unfinished = {tp: offset for tp, offset in zip(by_partition, outcomes, strict=True) if offset is not None}
        if unfinished:
            await asyncio.sleep(UNFINISHED_PAUSE_SECONDS)
            for tp, offset in unfinished.items():
                msg.consumer.seek(tp, offset)
        # Finished offsets only: a rewound partition's first unfinished record is never committed past.
        await commits.after_batch(msg.consumer)

    on_batch.__name__ = name
    # MANUAL: FastStream commits nothing itself; `commits` does, from what finished.
    options = {**options, "ack_policy": AckPolicy.MANUAL}
    subscriber = broker.subscriber(*topics, batch=True, max_records=BATCH_MAX_RECORDS, listener=listener, **options)
    subscriber(on_batch)
    # FastStream polls with a timeout and sleeps as long again after an empty poll; a record arriving then
    # waits it out. `_batch_poll` waits for the next record itself, so a hop is as quick as the fetch.
    subscriber.get_msg = _batch_poll
    listener.subscriber = subscriber
    start, stop = subscriber.start, subscriber.stop

    async def start_committing() -> None:
        commits.start()
        await start()

    async def commit_then_stop() -> None:
        # Before FastStream waits for the batch in hand and closes the consumer: what finished is committed now,
        # and the batch in hand commits as it ends.
        await commits.stop(subscriber.consumer)
        await stop()

    subscriber.start, subscriber.stop = start_committing, commit_then_stop


def _rewind(
    consumer: Any, by_partition: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]], in_hand: InHand
) -> None:
    for tp, records in by_partition.items():
        first = int(records[0].offset)
        consumer.seek(tp, max(first, in_hand.done.get(tp, first - 1) + 1))


class _Unfinished(Exception):
    """Leaves `InHand.holding` by an exception, so a record some subscription did not finish is not done."""


class MessageUnfinished(Exception):
    """A record was left unfinished; raised so FastStream rewinds its partition for redelivery."""


def partitions_of(
    records: Iterable[ConsumerRecord[bytes, bytes]],
) -> dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]]:
    by_partition: dict[TopicPartition, list[ConsumerRecord[bytes, bytes]]] = {}
    for record in records:
        by_partition.setdefault(TopicPartition(record.topic, record.partition), []).append(record)
    return by_partition


async def _in_order(
    records: list[ConsumerRecord[bytes, bytes]],
    finish: Callable[[ConsumerRecord[bytes, bytes]], Awaitable[bool]],
    in_hand: InHand,
    *,
    start_by: float | None = None,
) -> int | None:
    """One partition's records in order; stops at the first unfinished one and returns its offset, and likewise
    at the first one not started by `start_by` (the loop's clock), which the next poll fetches again.

    Stops quietly (None) once the partition is being revoked: the records not started are the next owner's,
    nothing commits past them, and a partition this consumer no longer owns is not sought back."""
    loop = asyncio.get_running_loop()
    for record in records:
        if not in_hand.may_start(record):
            return None
        if start_by is not None and loop.time() >= start_by:
            return int(record.offset)
        if not await finish(record):
            return int(record.offset)
    return None


async def _the_message(msg: KafkaMessage) -> KafkaMessage:
    """The decoder: the handler gets FastStream's message itself (records, consumer), not a decoded body."""
    return msg


Records: TypeAlias = ConsumerRecord[bytes, bytes] | tuple[ConsumerRecord[bytes, bytes], ...]


async def _parse_leniently(records: Records, original: Callable[[Records], Awaitable[KafkaMessage]]) -> KafkaMessage:
    """FastStream's parser, given headers it can read; the handler still gets the records as they came.

    FastStream decodes every header of every record as strict UTF-8 before the handler runs, and a failure
    there (a binary header a tracing library or a foreign producer adds, a null value) skipped the whole batch,
    which later commits then moved past: records lost with no dead letter. Its copy of the headers is only for
    its own use (correlation id, content type); the records, original headers and all, are what we handle
    and what a dead letter keeps."""
    if isinstance(records, tuple):
        message = await original(tuple(_readable(record) for record in records))
    else:
        message = await original(_readable(records))
    message.raw_message = records
    return message


def _readable(record: ConsumerRecord[bytes, bytes]) -> ConsumerRecord[bytes, bytes]:
    headers = record.headers
    if all(isinstance(value, bytes) and value.isascii() for _, value in headers):
        return record  # nearly every record: nothing to copy
    return replace(
        record, headers=[(name, (value or b"").decode("utf-8", "replace").encode()) for name, value in headers]
    )


async def _batch_poll(consumer: AIOKafkaConsumer) -> tuple[ConsumerRecord[bytes, bytes], ...]:
    """The next record, then whatever else is already fetched, up to `BATCH_MAX_RECORDS` in all.

    Waiting in `getone` and draining with a zero-timeout `getmany`: waiting in `getmany` itself added about
    20 ms to the slowest replies at low load (p95 of a reply at 5 msgs/s, 126-133 ms against 104 ms).
    """
    first = await consumer.getone()
    try:
        more = await consumer.getmany(timeout_ms=0, max_records=BATCH_MAX_RECORDS - 1)
    except Exception:
        # The position is already past `first`: raising now would lose it while the partition's later records
        # run and get committed. It goes alone; an error aiokafka stored for a partition comes back next poll.
        log.warning("fetching the rest of a batch failed; handling its first record alone", exc_info=True)
        return (first,)
    # `first` is older than anything `more` holds of its partition, so each partition stays in order.
    return (first, *(record for records in more.values() for record in records))
