"""`sellmesh dlq list|show|redrive|reingest|purge` against the real local broker, with letters in the format of
the subscriber and of the webhook edges."""

import asyncio
import hashlib
import hmac
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from sqlalchemy import Engine
from typer.testing import CliRunner, Result

from schemas.channel import RawWebhook
from schemas.envelope import Channel
from schemas.orders import AddItem
from schemas.topics import CHANNEL_RAW, ORDERS_COMMANDS, PAYMENTS_STRIPE, dlq_of
from sellmesh.broker import envelope_headers
from sellmesh.cli import app
from sellmesh.db import session_scope
from sellmesh.service import derived_id
from sellmesh.settings import SANDBOX_STRIPE_WEBHOOK_SECRET
from sellmesh.subscriber import PermanentError, dead_letter_headers
from services.gateway.admin import connect_channel_account, create_tenant
from services.ingest.payloads import encode, whatsapp_text
from services.ingest.signature import sign
from services.payments.tables import PaymentAttemptRow
from tests.builders import envelope, order_command

pytestmark = pytest.mark.integration

runner = CliRunner()


@dataclass
class Letters:
    bootstrap: str
    topic: str
    tenant: uuid.UUID
    values: list[bytes]

    def cli(self, *args: str, input: str | None = None, database: str | None = None) -> Result:
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "KAFKA_ENABLE_IDEMPOTENCE": "false",
            "SELLMESH_LOG_LEVEL": "WARNING",
        }
        if database is not None:
            env["DATABASE_URL"] = database
        return runner.invoke(app, list(args), env=env, input=input)

    def lines(self, result: Result) -> list[dict[str, Any]]:
        assert result.exit_code == 0, result.output
        return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def letter_headers(
    value: bytes, *, key: bytes, offset: int, kind: str, event_headers: dict[str, str]
) -> dict[str, str]:
    """The headers the subscriber writes when it dead-letters a message from orders.commands.v1."""
    failed: ConsumerRecord[bytes, bytes] = ConsumerRecord(
        ORDERS_COMMANDS,
        0,
        offset,
        0,
        0,
        key,
        value,
        None,
        len(key),
        len(value),
        [(name, text.encode()) for name, text in event_headers.items()],
    )
    error = PermanentError("order will never exist") if kind == "permanent" else RuntimeError("database down")
    return dead_letter_headers(failed, group="orders", handler="orders", error=error, kind=kind, attempts=4)


async def ensure_topic(bootstrap: str, topic: str) -> None:
    """Redrive refuses a target topic that does not exist; in a run of this module alone nobody made it yet."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        if topic not in await admin.list_topics():
            await admin.create_topics([NewTopic(topic, num_partitions=4, replication_factor=1)])
    finally:
        await admin.close()


async def produce(bootstrap: str, topic: str, records: list[tuple[bytes, bytes, dict[str, str]]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        for value, key, headers in records:
            # One partition, so offsets 0, 1, 2 name the letters in order.
            encoded = [(k, v.encode()) for k, v in headers.items()]
            await producer.send_and_wait(topic, value, key=key, headers=encoded, partition=0)
    finally:
        await producer.stop()


@pytest.fixture(scope="module")
def letters(kafka_bootstrap: str) -> Iterator[Letters]:
    """Three dead letters (two exhausted, one permanent) in a dead-letter topic of this module's own."""
    tenant = uuid.uuid4()
    topic = f"ops-test-{uuid.uuid4().hex[:8]}.v1.dlq"
    records: list[tuple[bytes, bytes, dict[str, str]]] = []
    for offset, kind in enumerate(["exhausted", "permanent", "exhausted"]):
        order = uuid.uuid4()
        command = order_command(AddItem, tenant, order, sku="ESP-250", quantity=offset + 1)
        value, key = command.model_dump_json().encode(), str(order).encode()
        headers = letter_headers(value, key=key, offset=offset, kind=kind, event_headers=envelope_headers(command))
        records.append((value, key, headers))
    asyncio.run(produce(kafka_bootstrap, topic, records))
    asyncio.run(ensure_topic(kafka_bootstrap, ORDERS_COMMANDS))
    yield Letters(kafka_bootstrap, topic, tenant, [r[0] for r in records])


def test_list_shows_each_dead_letter_topic_with_its_counts(letters: Letters) -> None:
    result = letters.cli("dlq", "list", "--format", "json")
    [mine] = [line for line in letters.lines(result) if line["topic"] == letters.topic]
    assert mine == {"topic": letters.topic, "total": 3, "purged": 0, "waiting": 3}
    table = letters.cli("dlq", "list")
    assert table.stdout.splitlines()[0].split() == ["topic", "waiting", "purged", "total"]


def test_show_prints_the_error_headers_and_the_decoded_message(letters: Letters) -> None:
    shown = letters.lines(letters.cli("dlq", "show", letters.topic))
    assert [s["error"]["error-kind"] for s in shown] == ["exhausted", "permanent", "exhausted"]
    assert shown[1]["error"]["error-message"] == "order will never exist"
    assert shown[0]["original_topic"] == ORDERS_COMMANDS
    assert shown[0]["event"]["type"] == "add_item" and shown[0]["headers"]["x-consumer-group"] == "orders"
    permanent = letters.lines(letters.cli("dlq", "show", letters.topic, "--header", "x-error-kind=permanent"))
    assert [p["offset"] for p in permanent] == [1]
    table = letters.cli("dlq", "show", letters.topic, "--format", "table")
    assert "permanent: order will never exist" in table.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["show", ORDERS_COMMANDS], "is not a dead-letter topic"),
        (["show", "nothing-here.v1.dlq"], "does not exist"),
        (["redrive", "{topic}"], "say which dead letters"),
        (["redrive", "{topic}", "--offset", "1", "--all"], "cannot be combined"),
        (["redrive", "{topic}", "--offset", "7", "--yes"], "offset 7 is not in any partition"),
        (["redrive", "{topic}", "--offset", "-1", "--yes"], "--offset must be 0 or more"),
        (["redrive", "{topic}", "--all", "--max", "0"], "--max must be 1 or more"),
        (["show", "{topic}", "--header", "=x"], "is not name=value"),
        (["reingest", "{topic}", "--all"], "`dlq reingest` takes channel.raw.v1.dlq or payments.stripe.v1.dlq"),
        (["reingest", dlq_of(CHANNEL_RAW)], "say which dead letters"),
        (["reingest", dlq_of(CHANNEL_RAW), "--all", "--rate", "fast"], "cannot read 'fast' as a rate"),
    ],
    ids=[
        "not-dlq",
        "unknown",
        "no-selection",
        "offset-and-all",
        "no-such-offset",
        "negative-offset",
        "bad-max",
        "bad-header",
        "reingest-not-kept",
        "reingest-no-selection",
        "reingest-bad-rate",
    ],
)
def test_refuses_bad_input(letters: Letters, args: list[str], message: str) -> None:
    result = letters.cli("dlq", *[a.format(topic=letters.topic) for a in args])
    assert result.exit_code == 2, result.output
    assert message in result.stderr


def test_redrive_sends_the_original_bytes_back_without_error_headers(letters: Letters) -> None:
    result = letters.cli("dlq", "redrive", letters.topic, "--offset", "1", "--by", "ana", "--reason", "fixed", "--yes")
    assert result.exit_code == 0, result.output
    assert f"1 will be published to {ORDERS_COMMANDS} (1)" in result.stdout
    back = letters.lines(letters.cli("replay", "read", ORDERS_COMMANDS, "--header", f"x-replay-topic={letters.topic}"))
    [copy] = back
    assert json.loads(letters.values[1]) == copy["event"]
    assert copy["headers"]["x-replay-offset"] == "1" and copy["headers"]["x-replay-by"] == "ana"
    assert copy["headers"]["tenant_id"] == str(letters.tenant)
    assert not [name for name in copy["headers"] if name.startswith(("x-error", "x-original"))]


def test_purge_asks_then_marks_everything_handled_and_later_commands_respect_it(letters: Letters) -> None:
    declined = letters.cli("dlq", "purge", letters.topic, input="n\n")
    assert declined.exit_code == 1 and "3 dead letter(s)" in declined.stdout
    assert "cancelled: nothing was purged" in declined.stderr
    purged = letters.cli("dlq", "purge", letters.topic, "--yes")
    assert purged.exit_code == 0, purged.output
    assert "partition 0: purged up to 0 -> 3" in purged.stdout
    [mine] = [s for s in letters.lines(letters.cli("dlq", "list", "--format", "json")) if s["topic"] == letters.topic]
    assert (mine["waiting"], mine["purged"]) == (0, 3)
    assert letters.lines(letters.cli("dlq", "show", letters.topic)) == []
    refused = letters.cli("dlq", "redrive", letters.topic, "--offset", "2", "--yes")
    assert refused.exit_code == 1 and "offset 2 of partition 0 was purged" in refused.stderr
    again = letters.cli("dlq", "purge", letters.topic, "--yes")
    assert again.exit_code == 0 and "0 dead letter(s)" in again.stdout


def test_redrive_with_nothing_matching_says_so_and_publishes_nothing(letters: Letters) -> None:
    result = letters.cli("dlq", "redrive", letters.topic, "--key", "nobody", "--yes")
    assert result.exit_code == 0, result.output
    assert f"no message in {letters.topic} matches the selection" in result.stdout
    assert "nothing was published" in result.stdout


def edge_headers(kind: str, original_topic: str, **more: str) -> dict[str, str]:
    """The headers the webhook edges write when they keep a body they cannot route."""
    return {"x-error-kind": kind, "x-error-message": "kept by the edge", "x-original-topic": original_topic, **more}


@dataclass
class RawLetters:
    topic: str
    envelope: RawWebhook


@pytest.fixture(scope="module")
def raw_letters(letters: Letters) -> RawLetters:
    """A dead-letter topic of this module's own holding, in order: a raw Meta body the edge kept, a RawWebhook the
    normalizer kept (a message, which redrive may send back), and garbage a consumer of orders.commands.v1 kept."""
    topic = f"ops-raw-{uuid.uuid4().hex[:8]}.v1.dlq"
    raw = encode(whatsapp_text(phone_number_id="1999", customer="15550009", text="anyone?"))
    kept = RawWebhook(
        **envelope(uuid.uuid4()), channel_account_id="acc-1", body=raw.decode(), received_at=datetime.now(UTC)
    )
    records = [
        (raw, b"1999", edge_headers("unknown_channel_account", CHANNEL_RAW, **{"x-signature": sign(raw, "s")})),
        (
            kept.model_dump_json().encode(),
            b"acc-1",
            {**envelope_headers(kept), **edge_headers("unroutable_items", CHANNEL_RAW)},
        ),
        (b"\xff\x00garbage", b"o-1", edge_headers("invalid", ORDERS_COMMANDS)),
    ]
    asyncio.run(produce(letters.bootstrap, topic, records))
    asyncio.run(ensure_topic(letters.bootstrap, CHANNEL_RAW))
    return RawLetters(topic, kept)


def test_redrive_refuses_what_would_not_decode_on_its_topic_names_it_keeps_it_and_sends_the_rest(
    letters: Letters, raw_letters: RawLetters
) -> None:
    """Sent back, the raw body would be dead-lettered again as `invalid`, over the reason the edge kept it for."""
    topic = raw_letters.topic
    dry = letters.cli("dlq", "redrive", topic, "--all", "--dry-run")
    assert dry.exit_code == 1 and "dry run: nothing was published" in dry.stdout
    result = letters.cli("dlq", "redrive", topic, "--all", "--by", "eve", "--yes")
    assert result.exit_code == 1, result.output
    assert f"3 message(s) from {topic} match; 1 will be published to {CHANNEL_RAW} (1)" in result.stdout
    assert "p0:0  a raw webhook the edge kept (unknown_channel_account), not a message: `sellmesh dlq reingest`" in (
        result.stdout
    )
    assert f"p0:2  does not decode as a {ORDERS_COMMANDS} message" in result.stdout
    assert "published 1 message(s)" in result.stdout
    assert f"refused 2 message(s) of {topic} (partition 0 offsets 0, 2)" in result.stderr
    [copy] = letters.lines(letters.cli("replay", "read", CHANNEL_RAW, "--header", f"x-replay-topic={topic}"))
    assert copy["event"] == json.loads(raw_letters.envelope.model_dump_json())
    assert letters.lines(letters.cli("replay", "read", ORDERS_COMMANDS, "--header", f"x-replay-topic={topic}")) == []
    [mine] = [line for line in letters.lines(letters.cli("dlq", "list", "--format", "json")) if line["topic"] == topic]
    assert mine["waiting"] == 3  # the refused ones are still there to be dealt with


def test_reingest_sends_a_kept_meta_body_back_as_the_edge_would_once_its_account_is_connected(
    letters: Letters, migrated_engine: Engine, database_url: str
) -> None:
    phone = str(uuid.uuid4().int)[:15]
    secret = f"app-{uuid.uuid4().hex}"
    raw = encode(whatsapp_text(phone_number_id=phone, customer="15550010", text="is it in stock?"))
    headers = edge_headers("unknown_channel_account", CHANNEL_RAW, **{"x-signature": sign(raw, secret)})
    asyncio.run(produce(letters.bootstrap, dlq_of(CHANNEL_RAW), [(raw, phone.encode(), headers)]))
    asyncio.run(ensure_topic(letters.bootstrap, CHANNEL_RAW))
    reingest = ("dlq", "reingest", dlq_of(CHANNEL_RAW), "--key", phone, "--by", "fay", "--reason", "connected", "--yes")

    early = letters.cli(*reingest, database=database_url)
    assert early.exit_code == 1, early.output
    assert f"still no whatsapp account connected for {phone}" in early.stdout
    assert f"refused 1 message(s) of {dlq_of(CHANNEL_RAW)}" in early.stderr
    redriven = letters.cli("dlq", "redrive", dlq_of(CHANNEL_RAW), "--key", phone, "--yes")
    assert redriven.exit_code == 1 and "`sellmesh dlq reingest`" in redriven.stdout

    tenant_id, _ = create_tenant(migrated_engine, name="Connected late")
    account_id = connect_channel_account(
        migrated_engine,
        tenant_id=tenant_id,
        channel=Channel.WHATSAPP,
        external_id=phone,
        app_secret=secret,
        verify_token="verify",
        access_token="token",
    )
    done = letters.cli(*reingest, database=database_url)
    assert done.exit_code == 0, done.output
    assert f"1 will be published to {CHANNEL_RAW} (1)" in done.stdout and "published 1 message(s)" in done.stdout
    [copy] = letters.lines(letters.cli("replay", "read", CHANNEL_RAW, "--key", str(account_id)))
    assert copy["event"]["type"] == "meta_webhook" and copy["event"]["body"] == raw.decode()
    assert (copy["event"]["tenant_id"], copy["event"]["channel_account_id"]) == (str(tenant_id), str(account_id))
    assert copy["headers"]["x-replay-topic"] == dlq_of(CHANNEL_RAW) and copy["headers"]["x-replay-by"] == "fay"
    assert copy["headers"]["tenant_id"] == str(tenant_id)
    assert not [name for name in copy["headers"] if name.startswith(("x-error", "x-original", "x-signature"))]


def test_reingest_sends_a_kept_stripe_event_back_once_a_payment_attempt_owns_it(
    letters: Letters, migrated_engine: Engine, database_url: str
) -> None:
    charge, intent, event_id = (f"{p}_{uuid.uuid4().hex}" for p in ("ch", "pi", "evt"))
    obj = {"id": charge, "object": "charge", "payment_intent": intent}
    body = json.dumps(
        {"id": event_id, "object": "event", "type": "charge.refunded", "created": 1, "data": {"object": obj}}
    )
    # Signed by Stripe (the sandbox's secret, the edge's by default) when the edge kept it, long ago.
    digest = hmac.new(SANDBOX_STRIPE_WEBHOOK_SECRET.encode(), f"1.{body}".encode(), hashlib.sha256).hexdigest()
    headers = edge_headers(
        "unresolved_tenant", PAYMENTS_STRIPE, **{"x-stripe-event-id": event_id, "x-signature": f"t=1,v1={digest}"}
    )
    asyncio.run(produce(letters.bootstrap, dlq_of(PAYMENTS_STRIPE), [(body.encode(), charge.encode(), headers)]))
    asyncio.run(ensure_topic(letters.bootstrap, PAYMENTS_STRIPE))
    reingest = ("dlq", "reingest", dlq_of(PAYMENTS_STRIPE), "--key", charge, "--by", "gus", "--yes")

    early = letters.cli(*reingest, database=database_url)
    assert early.exit_code == 1 and f"still no tenant for {charge}" in early.stdout
    tenant_id, now = uuid.uuid4(), datetime.now(UTC)
    with session_scope(migrated_engine) as session:
        session.add(
            PaymentAttemptRow(
                tenant_id=tenant_id,
                order_id=uuid.uuid4(),
                attempt=1,
                checkout_session_id=f"cs_{uuid.uuid4().hex}",
                url="https://checkout.example/x",
                amount_minor=900,
                currency="EUR",
                status="paid",
                expires_at=now,
                created_at=now,
                payment_intent_id=intent,
            )
        )
    dry = letters.cli(*reingest, "--dry-run", database=database_url)
    assert dry.exit_code == 0 and "dry run: nothing was published" in dry.stdout
    done = letters.cli(*reingest, database=database_url)
    assert done.exit_code == 0, done.output
    [copy] = letters.lines(letters.cli("replay", "read", PAYMENTS_STRIPE, "--key", charge))
    assert copy["event"]["event_id"] == str(derived_id("stripe-event", event_id))
    assert (copy["event"]["tenant_id"], copy["event"]["body"]) == (str(tenant_id), body)
    assert copy["headers"]["x-replay-by"] == "gus"


def test_reingest_with_nothing_kept_matching_says_what_it_takes(letters: Letters, database_url: str) -> None:
    result = letters.cli("dlq", "reingest", dlq_of(CHANNEL_RAW), "--key", "nobody", "--yes", database=database_url)
    assert result.exit_code == 0, result.output
    assert "reingest takes the dead letters with x-error-kind=unknown_channel_account" in result.stdout
    assert "nothing was published" in result.stdout


def test_reingest_refuses_a_database_that_is_not_there_and_does_not_create_it(letters: Letters, tmp_path: Path) -> None:
    missing = tmp_path / "nothing.db"
    result = letters.cli("dlq", "reingest", dlq_of(CHANNEL_RAW), "--all", database=f"sqlite:///{missing}")
    assert result.exit_code == 3 and f"no database at {missing}" in result.stderr
    assert not missing.exists()
