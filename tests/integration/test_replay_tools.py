"""`sellmesh replay read|publish` against the real local broker, including bad input and garbage bytes."""

import asyncio
import base64
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from typer.testing import CliRunner, Result

from schemas.orders import AddItem, CreateDraft
from schemas.topics import ORDERS_COMMANDS, ORDERS_EVENTS
from sellmesh.broker import envelope_headers
from sellmesh.cli import app
from sellmesh.localbroker import BROKER_STATE_FILE, LocalBroker, free_port
from tests.builders import order_command
from tests.integration.test_dlq_tools import ensure_topic

pytestmark = pytest.mark.integration

runner = CliRunner()


@dataclass
class Seeded:
    bootstrap: str
    run: str
    tenant: uuid.UUID
    target: str
    values: dict[str, list[bytes]]

    def cli(self, *args: str, input: str | None = None, bootstrap: str | None = None) -> Result:
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": bootstrap or self.bootstrap,
            "KAFKA_ENABLE_IDEMPOTENCE": "false",
            "SELLMESH_LOG_LEVEL": "WARNING",
        }
        return runner.invoke(app, list(args), env=env, input=input)

    def lines(self, result: Result) -> list[dict[str, Any]]:
        assert result.exit_code == 0, result.output
        return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


Record = tuple[str, bytes, bytes | None, dict[str, str]]


async def produce(bootstrap: str, records: list[Record]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False)
    await producer.start()
    try:
        for topic, value, key, headers in records:
            await producer.send_and_wait(topic, value, key=key, headers=[(k, v.encode()) for k, v in headers.items()])
    finally:
        await producer.stop()


async def topic_names(bootstrap: str) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return list(await admin.list_topics())
    finally:
        await admin.close()


@pytest.fixture(scope="module")
def seeded(kafka_bootstrap: str) -> Iterator[Seeded]:
    """Two orders' commands and one garbage record on orders.commands.v1, marked with this run's header."""
    run, tenant = uuid.uuid4().hex[:8], uuid.uuid4()
    order_a, order_b = uuid.uuid4(), uuid.uuid4()
    commands = [
        (order_a, order_command(CreateDraft, tenant, order_a)),
        (order_a, order_command(AddItem, tenant, order_a, sku="ESP-250", quantity=1)),
        (order_a, order_command(AddItem, tenant, order_a, sku="MUG-01", quantity=2)),
        (order_b, order_command(CreateDraft, tenant, order_b)),
    ]
    records: list[Record] = [
        (ORDERS_COMMANDS, c.model_dump_json().encode(), str(o).encode(), {**envelope_headers(c), "x-test-run": run})
        for o, c in commands
    ]
    records.append((ORDERS_COMMANDS, b"\xff\x00garbage", f"junk-{run}".encode(), {"x-test-run": run}))
    target = f"ops-test.replayed-{run}"
    records.append((target, b"marker", None, {}))  # the target topic must exist before a replay may use it
    asyncio.run(produce(kafka_bootstrap, records))
    yield Seeded(kafka_bootstrap, run, tenant, target, {str(order_a): [r[1] for r in records[:3]]})


def test_read_prints_decoded_messages_and_garbage_as_base64_with_the_error(seeded: Seeded) -> None:
    result = seeded.cli("replay", "read", ORDERS_COMMANDS, "--header", f"x-test-run={seeded.run}")
    lines = seeded.lines(result)
    assert len(lines) == 5
    decoded = [line for line in lines if "event" in line]
    assert sorted(line["event"]["type"] for line in decoded) == ["add_item", "add_item", "create_draft", "create_draft"]
    [junk] = [line for line in lines if "value_base64" in line]
    assert base64.b64decode(junk["value_base64"]) == b"\xff\x00garbage"
    assert junk["decode_error"] and junk["key"] == f"junk-{seeded.run}"
    assert "5 of " in result.stderr and f"read from {ORDERS_COMMANDS}" in result.stderr


def test_read_filters_by_tenant_type_and_key(seeded: Seeded) -> None:
    by_type = seeded.cli("replay", "read", ORDERS_COMMANDS, "--tenant", str(seeded.tenant), "--event-type", "add_item")
    assert [line["event"]["sku"] for line in seeded.lines(by_type)] == ["ESP-250", "MUG-01"]
    [order_a] = seeded.values
    by_key = seeded.lines(seeded.cli("replay", "read", ORDERS_COMMANDS, "--key", order_a))
    assert [line["event"] for line in by_key] == [json.loads(value) for value in seeded.values[order_a]]


def test_read_by_partition_and_offset_and_by_time(seeded: Seeded) -> None:
    lines = seeded.lines(seeded.cli("replay", "read", ORDERS_COMMANDS, "--header", f"x-test-run={seeded.run}"))
    one = lines[1]
    exact = seeded.cli(
        "replay",
        "read",
        ORDERS_COMMANDS,
        "--partition",
        str(one["partition"]),
        "--from-offset",
        str(one["offset"]),
        "--to-offset",
        str(one["offset"]),
    )
    assert seeded.lines(exact) == [one]
    recent = seeded.cli("replay", "read", ORDERS_COMMANDS, "--since", "1h", "--header", f"x-test-run={seeded.run}")
    assert len(seeded.lines(recent)) == 5
    old = seeded.cli("replay", "read", ORDERS_COMMANDS, "--until", "2h", "--header", f"x-test-run={seeded.run}")
    assert seeded.lines(old) == []


def test_read_as_a_table(seeded: Seeded) -> None:
    result = seeded.cli("replay", "read", ORDERS_COMMANDS, "--format", "table", "--header", f"x-test-run={seeded.run}")
    assert result.exit_code == 0, result.output
    rows = result.stdout.splitlines()
    assert rows[0].split() == ["partition", "offset", "time", "key", "type", "tenant", "note"]
    assert len(rows) == 6 and sum("undecodable" in row for row in rows) == 1


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--from-offset", "9", "--to-offset", "2"], 2, "--from-offset 9 is after --to-offset 2"),
        (["--since", "1h", "--until", "2h"], 2, "is after --until"),
        (["--since", "last tuesday"], 2, "cannot read 'last tuesday' as a time"),
        (["--header", "x-test-run"], 2, "is not name=value"),
        (["--partition", "99"], 2, "partition 99 does not exist"),
    ],
    ids=["inverted-offsets", "inverted-times", "bad-time", "bad-header", "no-such-partition"],
)
def test_read_refuses_bad_input_without_a_traceback(seeded: Seeded, args: list[str], code: int, message: str) -> None:
    result = seeded.cli("replay", "read", ORDERS_COMMANDS, *args)
    assert result.exit_code == code
    assert message in result.stderr and "Traceback" not in result.output


def test_an_unknown_topic_is_an_error_and_is_not_created(seeded: Seeded) -> None:
    missing = f"orders.comands.v1-{seeded.run}"
    result = seeded.cli("replay", "read", missing)
    assert result.exit_code == 2
    assert f"topic '{missing}' does not exist" in result.stderr
    assert missing not in asyncio.run(topic_names(seeded.bootstrap))


def test_a_broker_that_is_down_is_reported_plainly(seeded: Seeded) -> None:
    result = seeded.cli("replay", "read", ORDERS_COMMANDS, bootstrap=f"127.0.0.1:{free_port()}")
    assert result.exit_code == 3
    assert "cannot reach the broker" in result.stderr and "Traceback" not in result.output


def test_publish_shows_the_plan_and_publishes_nothing_unless_confirmed(seeded: Seeded) -> None:
    args = ["replay", "publish", ORDERS_COMMANDS, "--header", f"x-test-run={seeded.run}", "--to", seeded.target]
    declined = seeded.cli(*args, "--reason", "test", "--by", "ana", input="n\n")
    assert declined.exit_code == 1
    assert "5 message(s) from orders.commands.v1 match; 5 will be published" in declined.stdout
    assert "add_item: 2" in declined.stdout and "(undecodable): 1" in declined.stdout
    assert "cancelled: nothing was published" in declined.stderr
    dry = seeded.cli(*args, "--reason", "test", "--by", "ana", "--dry-run")
    assert dry.exit_code == 0 and "dry run: nothing was published" in dry.stdout
    assert seeded.lines(seeded.cli("replay", "read", seeded.target, "--header", "x-replay-by=ana")) == []


def test_publish_re_sends_original_bytes_and_keys_with_replay_headers_capped_at_max(seeded: Seeded) -> None:
    [order_a] = seeded.values
    result = seeded.cli(
        "replay",
        "publish",
        ORDERS_COMMANDS,
        "--key",
        order_a,
        "--to",
        seeded.target,
        "--reason",
        "bug 12 fixed",
        "--by",
        "bo",
        "--rate",
        "100/s",
        "--max",
        "2",
        "--yes",
    )
    assert result.exit_code == 0, result.output
    assert "capped by --max 2: the last 1 match(es) will not be published" in result.stdout
    assert "published 2 message(s)" in result.stdout
    copies = seeded.lines(seeded.cli("replay", "read", seeded.target, "--header", "x-replay-by=bo"))
    originals = seeded.lines(seeded.cli("replay", "read", ORDERS_COMMANDS, "--key", order_a))[:2]
    assert [c["key"] for c in copies] == [order_a, order_a]
    for copy, original in zip(copies, originals, strict=True):
        assert copy["headers"]["x-replay-topic"] == ORDERS_COMMANDS
        assert copy["headers"]["x-replay-offset"] == str(original["offset"])
        assert copy["headers"]["x-replay-partition"] == str(original["partition"])
        assert copy["headers"]["x-replay-reason"] == "bug 12 fixed" and copy["headers"]["x-replay-at"]
        assert copy["headers"]["event_id"] == original["headers"]["event_id"]
    assert [base64.b64decode(c["value_base64"]) for c in copies] == seeded.values[order_a][:2]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--to", "no.such.topic.v9"], "topic 'no.such.topic.v9' does not exist"),
        (["--to", ORDERS_COMMANDS, "--rate", "fast"], "cannot read 'fast' as a rate"),
        (["--to", ORDERS_COMMANDS, "--max", "0"], "--max must be 1 or more"),
    ],
    ids=["unknown-target", "bad-rate", "bad-max"],
)
def test_publish_refuses_bad_input(seeded: Seeded, extra: list[str], message: str) -> None:
    result = seeded.cli(
        "replay", "publish", ORDERS_COMMANDS, "--key", "nothing", "--reason", "r", "--by", "b", "--yes", *extra
    )
    assert result.exit_code == 2
    assert message in result.stderr


def test_publish_refuses_what_does_not_decode_as_the_target_topics_message_and_publishes_the_rest(
    seeded: Seeded,
) -> None:
    """A consumer of the target would dead-letter such bytes as `invalid`: they are named, and not sent."""
    run, tenant, order = f"{seeded.run}-refuse", uuid.uuid4(), uuid.uuid4()
    command = order_command(CreateDraft, tenant, order)
    records: list[Record] = [
        (ORDERS_COMMANDS, command.model_dump_json().encode(), str(order).encode(), {"x-test-run": run}),
        (ORDERS_COMMANDS, b"not json", f"junk-{run}".encode(), {"x-test-run": run}),
    ]
    asyncio.run(produce(seeded.bootstrap, records))
    read = seeded.lines(seeded.cli("replay", "read", ORDERS_COMMANDS, "--header", f"x-test-run={run}"))
    [junk] = [line for line in read if "value_base64" in line]
    result = seeded.cli(
        "replay", "publish", ORDERS_COMMANDS, "--header", f"x-test-run={run}", "--to", ORDERS_COMMANDS,
        "--reason", "refusal test", "--by", "cy", "--yes",
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "2 message(s) from orders.commands.v1 match; 1 will be published to orders.commands.v1 (1)" in result.stdout
    assert f"p{junk['partition']}:{junk['offset']}  does not decode as a orders.commands.v1 message" in result.stdout
    assert "published 1 message(s)" in result.stdout
    where = f"partition {junk['partition']} offset {junk['offset']}"
    assert f"refused 1 message(s) of orders.commands.v1 ({where})" in result.stderr
    [copy] = seeded.lines(seeded.cli("replay", "read", ORDERS_COMMANDS, "--header", "x-replay-by=cy"))
    assert copy["event"] == json.loads(command.model_dump_json()) and copy["headers"]["x-test-run"] == run


def test_publish_to_another_topic_of_the_contract_refuses_every_message_that_is_not_its_own(seeded: Seeded) -> None:
    asyncio.run(ensure_topic(seeded.bootstrap, ORDERS_EVENTS))
    result = seeded.cli(
        "replay", "publish", ORDERS_COMMANDS, "--header", f"x-test-run={seeded.run}", "--to", ORDERS_EVENTS,
        "--reason", "wrong topic", "--by", "dee", "--yes",
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "5 message(s) from orders.commands.v1 match; 0 will be published to nothing" in result.stdout
    assert "refused 5, which will not be published" in result.stdout and "nothing was published" in result.stdout
    assert "refused 5 message(s) of orders.commands.v1" in result.stderr
    assert seeded.lines(seeded.cli("replay", "read", ORDERS_EVENTS, "--header", "x-replay-by=dee")) == []


def test_publish_with_nothing_matching_says_so(seeded: Seeded) -> None:
    result = seeded.cli(
        "replay", "publish", ORDERS_COMMANDS, "--key", f"nobody-{seeded.run}", "--to", ORDERS_COMMANDS,
        "--reason", "r", "--by", "b", "--yes",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "no message in orders.commands.v1 matches the selection" in result.stdout
    assert "nothing was published" in result.stdout


def test_without_configuration_the_tools_find_the_embedded_broker_of_this_directory(tmp_path: Path) -> None:
    env: dict[str, str | None] = {
        "KAFKA_BOOTSTRAP_SERVERS": None,
        "SELLMESH_VAR_DIR": str(tmp_path),
        "SELLMESH_LOG_LEVEL": "WARNING",
    }
    with LocalBroker(state_path=tmp_path / BROKER_STATE_FILE):
        found = runner.invoke(app, ["dlq", "list"], env=env)
        assert found.exit_code == 0, found.output
        assert found.stdout.strip() == "no dead-letter topics"
    gone = runner.invoke(app, ["dlq", "list"], env=env)
    assert gone.exit_code == 3 and "no broker configured" in gone.stderr
