"""`sellmesh dlq list|show|redrive|purge` against the real local broker, with letters in the subscriber's format."""

import asyncio
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer, ConsumerRecord
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from typer.testing import CliRunner, Result

from schemas.orders import AddItem
from schemas.topics import ORDERS_COMMANDS
from sellmesh.broker import envelope_headers
from sellmesh.cli import app
from sellmesh.subscriber import PermanentError, dead_letter_headers
from tests.builders import order_command

pytestmark = pytest.mark.integration

runner = CliRunner()


@dataclass
class Letters:
    bootstrap: str
    topic: str
    tenant: uuid.UUID
    values: list[bytes]

    def cli(self, *args: str, input: str | None = None) -> Result:
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
            "KAFKA_ENABLE_IDEMPOTENCE": "false",
            "SELLMESH_LOG_LEVEL": "WARNING",
        }
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
        (["show", "{topic}", "--header", "=x"], "is not name=value"),
    ],
    ids=["not-dlq", "unknown", "no-selection", "offset-and-all", "no-such-offset", "bad-header"],
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
