"""Every publish through the mesh broker is counted by topic and by the handler (or relay) it was made from."""

from faststream.kafka import TestKafkaBroker
from prometheus_client import REGISTRY, CollectorRegistry

from sellmesh.broker import make_broker
from sellmesh.metrics import current_handler


def published(topic: str, handler: str) -> float:
    return REGISTRY.get_sample_value("sellmesh_messages_published_total", {"topic": topic, "handler": handler}) or 0.0


async def test_a_publish_is_counted_against_the_running_handler() -> None:
    broker = make_broker(
        bootstrap_servers="127.0.0.1:9", enable_idempotence=False, registry=CollectorRegistry(), client_id="test"
    )
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
