"""Every publish through the mesh broker is counted by topic and by the handler (or relay) it was made from."""

import asyncio

from faststream import ContextRepo
from faststream.kafka import TestKafkaBroker
from faststream.kafka.response import KafkaPublishCommand
from faststream.response.publish_type import PublishType
from prometheus_client import REGISTRY

from sellmesh.broker import PublishCounter, make_broker
from sellmesh.metrics import current_handler


def published(topic: str, handler: str) -> float:
    return REGISTRY.get_sample_value("sellmesh_messages_published_total", {"topic": topic, "handler": handler}) or 0.0


async def test_a_publish_is_counted_against_the_running_handler() -> None:
    broker = make_broker(bootstrap_servers="127.0.0.1:9", enable_idempotence=False, client_id="test")
    before_inside, before_outside = (
        published("orders.events.v1", "orders/order_command"),
        published("orders.events.v1", "none"),
    )
    async with TestKafkaBroker(broker) as test_broker:
        token = current_handler.set("orders/order_command")
        try:
            await test_broker.publish(b"{}", topic="orders.events.v1")
        finally:
            current_handler.reset(token)
        await test_broker.publish(b"{}", topic="orders.events.v1")
    assert published("orders.events.v1", "orders/order_command") == before_inside + 1
    assert published("orders.events.v1", "none") == before_outside + 1


def errors(topic: str) -> float:
    return REGISTRY.get_sample_value("sellmesh_publish_errors_total", {"topic": topic}) or 0.0


async def test_a_publish_not_waited_for_counts_once_the_broker_answers() -> None:
    """The outbox relay publishes with `no_confirm` and waits for the futures itself: the count follows the
    broker's answer, not the hand-over."""
    topic, handler = "orders.events.v1", "outbox/test-no-confirm"
    counter = PublishCounter(None, context=ContextRepo())
    before_published, before_errors = published(topic, handler), errors(topic)
    loop = asyncio.get_running_loop()
    taken, refused = loop.create_future(), loop.create_future()

    async def hand_over(future: asyncio.Future[None]) -> asyncio.Future[None]:
        return future

    token = current_handler.set(handler)
    try:
        for future in (taken, refused):
            command = KafkaPublishCommand(b"{}", topic=topic, no_confirm=True, _publish_type=PublishType.PUBLISH)
            assert await counter.publish_scope(lambda _, f=future: hand_over(f), command) is future
    finally:
        current_handler.reset(token)
    assert (published(topic, handler), errors(topic)) == (before_published, before_errors)
    taken.set_result(None)
    refused.set_exception(ConnectionError("broker unreachable"))
    await asyncio.sleep(0)  # done callbacks run on the loop's next turn
    assert (published(topic, handler), errors(topic)) == (before_published + 1, before_errors + 1)
