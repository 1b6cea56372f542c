"""The bench's stage breakdown read through the real broker: envelopes as the services publish them, a window
taken before them, and only whole chains counted."""

import uuid
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaProducer

from bench.stages import TOPICS, end_offsets, read_since, stage_latencies
from schemas.channel import Author, Channel, DeliveryState, DeliveryStatus, OutboundMessage, RawWebhook
from schemas.envelope import Envelope
from schemas.topics import CHANNEL_DELIVERY, CHANNEL_INBOUND, CHANNEL_OUTBOUND, CHANNEL_RAW
from sellmesh.service import caused_by
from tests.builders import envelope, inbound_text

pytestmark = pytest.mark.integration

START_MS = 1_790_000_000_000


def at(ms: float) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def one_message(tenant: uuid.UUID, start_ms: int, *, delivered: DeliveryState) -> list[tuple[str, Envelope, int]]:
    """A webhook, its inbound message, the reply and its delivery status: (topic, envelope, record timestamp).
    Stages: normalize 12 ms, agent 30 ms, send 20 ms."""
    raw = RawWebhook(**envelope(tenant, occurred_at=at(start_ms)), channel_account_id="a", body="{}", received_at=at(0))
    inbound = inbound_text(tenant, "conv", "hello").model_copy(
        update={"causation_id": raw.event_id, "occurred_at": at(start_ms + 12)}
    )
    reply = OutboundMessage(
        **caused_by(inbound, "reply", producer="agent", at=at(start_ms + 45)),
        conversation_id="conv",
        channel=Channel.WHATSAPP,
        channel_account_id="a",
        customer_id="15550001111",
        author=Author.AI,
        text="hi",
    )
    status = DeliveryStatus(
        **caused_by(reply, "sent", producer="ingest", at=at(start_ms + 66)),
        conversation_id="conv",
        channel=Channel.WHATSAPP,
        message_id="wamid.x",
        state=delivered,
    )
    return [
        (CHANNEL_RAW, raw, start_ms),
        (CHANNEL_INBOUND, inbound, start_ms + 15),
        (CHANNEL_OUTBOUND, reply, start_ms + 46),
        (CHANNEL_DELIVERY, status, start_ms + 67),
    ]


async def send(bootstrap: str, records: list[tuple[str, bytes, int]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        for topic, value, timestamp_ms in records:
            await producer.send_and_wait(topic, value, key=b"conv", timestamp_ms=timestamp_ms)
    finally:
        await producer.stop()


def encoded(records: list[tuple[str, Envelope, int]]) -> list[tuple[str, bytes, int]]:
    return [(topic, event.model_dump_json().encode(), ms) for topic, event, ms in records]


async def test_stages_of_the_window_s_whole_chains_only(kafka_bootstrap: str) -> None:
    tenant = uuid.uuid4()
    before = one_message(tenant, START_MS, delivered=DeliveryState.SENT)
    # Before the window: the topics exist, and this message must not count.
    await send(kafka_bootstrap, encoded(before))
    window = await end_offsets(kafka_bootstrap)
    assert {tp.topic for tp in window} == set(TOPICS)

    counted = one_message(tenant, START_MS + 1000, delivered=DeliveryState.SENT)
    failed = one_message(tenant, START_MS + 2000, delivered=DeliveryState.FAILED)
    cut = one_message(tenant, START_MS + 3000, delivered=DeliveryState.SENT)[1:]  # its webhook came before
    await send(kafka_bootstrap, [*encoded(counted + failed + cut), (CHANNEL_OUTBOUND, b"\xff not json", START_MS)])

    records = await read_since(kafka_bootstrap, window)
    assert len(records) == 4 + 4 + 3  # the undecodable value is skipped
    assert stage_latencies(records) == {"normalize": [12.0], "agent": [30.0], "send": [20.0]}
