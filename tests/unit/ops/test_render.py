"""What people and scripts see: JSON lines that carry everything, tables that stay one line per message."""

import base64
import json
import uuid

from schemas.orders import CreateDraft
from schemas.topics import ORDERS_COMMANDS
from sellmesh.ops.message import message_of
from sellmesh.ops.render import MESSAGE_HEADINGS, dead_letter_record, json_line, message_record, message_row, table
from tests.builders import order_command


def test_a_decoded_message_prints_its_event_and_garbage_prints_base64_and_the_error() -> None:
    command = order_command(CreateDraft, uuid.uuid4(), uuid.uuid4())
    good = message_of(
        topic=ORDERS_COMMANDS,
        partition=1,
        offset=3,
        timestamp_ms=0,
        key=b"o-1",
        value=command.model_dump_json().encode(),
        headers=[("tenant_id", str(command.tenant_id).encode())],
    )
    bad = message_of(
        topic=ORDERS_COMMANDS, partition=0, offset=4, timestamp_ms=0, key=None, value=b"\x00\xff", headers=[]
    )
    good_line, bad_line = json.loads(json_line(message_record(good))), json.loads(json_line(message_record(bad)))
    assert good_line["event"]["type"] == "create_draft" and good_line["key"] == "o-1"
    assert good_line["headers"] == {"tenant_id": str(command.tenant_id)}
    assert "value_base64" not in good_line
    assert base64.b64decode(bad_line["value_base64"]) == b"\x00\xff"
    assert bad_line["decode_error"] and "event" not in bad_line


def test_dead_letters_put_the_error_first() -> None:
    letter = message_of(
        topic="orders.commands.v1.dlq",
        partition=0,
        offset=0,
        timestamp_ms=0,
        key=b"k",
        value=b"{}",
        headers=[
            ("x-error-kind", b"exhausted"),
            ("x-error-message", b"boom"),
            ("x-original-topic", b"orders.commands.v1"),
        ],
    )
    record = dead_letter_record(letter)
    assert record["error"] == {"error-kind": "exhausted", "error-message": "boom"}
    assert record["original_topic"] == ORDERS_COMMANDS
    assert message_row(letter, dead_letter=True)[-1] == "exhausted: boom"


def test_table_aligns_columns_and_cuts_long_cells() -> None:
    text = table(("a", "bb"), [(1, "x" * 100), (22, "line\nbreak")])
    lines = text.splitlines()
    assert lines[0] == "a   bb"
    assert len(lines[1]) == 4 + 60 and lines[1].endswith("…")
    assert lines[2] == "22  line break"
    assert len(MESSAGE_HEADINGS) == 7
