"""The Kafka broker factory and the one way every service publishes an enveloped message."""

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from faststream import BaseMiddleware
from faststream.kafka import KafkaBroker
from faststream.kafka.response import KafkaPublishCommand

from schemas.envelope import Envelope
from sellmesh.metrics import MESSAGES_PUBLISHED, PUBLISH_ERRORS, current_handler


class MeshBroker(KafkaBroker):
    """A KafkaBroker that starts its subscribers concurrently.

    Each aiokafka consumer's start() waits for its group join (about 5 s on the local
    broker); FastStream starts them one after another, so a process with six consumer
    groups would take 30 s to come up. Starting them together costs one join.
    """

    async def start(self) -> None:
        await self.connect()
        await asyncio.gather(*(sub.start() for sub in self.subscribers))
        for pub in self.publishers:
            await pub.start()
        self.running = True


class PublishCounter(BaseMiddleware[KafkaPublishCommand, Any]):
    """Counts every publish (direct, outbox, dead letter) by topic and by the handler it was made from."""

    async def publish_scope(
        self, call_next: Callable[[KafkaPublishCommand], Awaitable[Any]], cmd: KafkaPublishCommand
    ) -> Any:
        try:
            result = await call_next(cmd)
        except Exception:
            PUBLISH_ERRORS.labels(cmd.destination).inc()
            raise
        handler = current_handler.get()
        if isinstance(result, asyncio.Future):
            # Published without waiting (`no_confirm`): the broker's answer arrives later, and is what counts.
            result.add_done_callback(lambda done: _count(done, cmd.destination, handler))
        else:
            MESSAGES_PUBLISHED.labels(cmd.destination, handler).inc()
        return result


def _count(done: "asyncio.Future[Any]", topic: str, handler: str) -> None:
    if done.cancelled() or done.exception() is not None:
        PUBLISH_ERRORS.labels(topic).inc()
    else:
        MESSAGES_PUBLISHED.labels(topic, handler).inc()


def make_broker(
    *,
    bootstrap_servers: str,
    enable_idempotence: bool,
    client_id: str,
    create_topics: bool = True,
) -> MeshBroker:
    """`create_topics=False` on a real cluster: topics come from `sellmesh topics` with their partitions,
    and a worker that starts first must not create one with a single partition."""
    return MeshBroker(
        bootstrap_servers=bootstrap_servers,
        enable_idempotence=enable_idempotence,
        client_id=client_id,
        allow_auto_create_topics=create_topics,
        # Only our own counters: FastStream's Prometheus middleware measured every consume and publish a second
        # time (labelled by topic alone, read by no panel), 1-2 % of each service's samples under load.
        middlewares=[PublishCounter],
        graceful_timeout=10.0,
        # Every handler is the subscriber wrapper, which decodes and validates itself; FastDepends would resolve
        # its message parameter in a worker thread, a thread hop per message for nothing.
        apply_types=False,
        logger=logging.getLogger("sellmesh.broker"),
        # FastStream logs every message at this level; DEBUG keeps INFO for what people need to read.
        log_level=logging.DEBUG,
    )


def envelope_headers(event: Envelope) -> dict[str, str]:
    """Headers repeat the ids tools filter on, so replay and DLQ tools need not decode bodies. `correlation_id`
    is FastStream's own header too; it is here for bytes published without FastStream (replay, dlq reingest)."""
    headers = {
        "tenant_id": str(event.tenant_id),
        "event_id": str(event.event_id),
        "correlation_id": str(event.correlation_id),
        "producer": event.producer,
    }
    message_type = getattr(event, "type", None)
    if isinstance(message_type, str):
        headers["message_type"] = message_type
    return headers


async def publish(broker: KafkaBroker, topic: str, event: Envelope, *, key: str) -> None:
    """Publish one envelope as JSON bytes, keyed for ordering, with the id headers."""
    await broker.publish(
        event.model_dump_json().encode(),
        topic=topic,
        key=key.encode(),
        headers=envelope_headers(event),
        correlation_id=str(event.correlation_id),
    )


async def publish_all(broker: KafkaBroker, items: Iterable[tuple[str, Envelope, str]]) -> None:
    for topic, event, key in items:
        await publish(broker, topic, event, key=key)
