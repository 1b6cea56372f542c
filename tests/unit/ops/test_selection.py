"""Filters by tenant, key, envelope type and headers, on decoded and undecodable messages alike."""

import uuid
from datetime import UTC, datetime

import pytest

from schemas.orders import AddItem
from schemas.topics import ORDERS_COMMANDS
from sellmesh.ops.errors import BadInput
from sellmesh.ops.message import Message, message_of
from sellmesh.ops.selection import Filters, build_filters, parse_header_filters
from tests.builders import order_command

TENANT = uuid.uuid4()


def command_message(**headers: str) -> Message:
    command = order_command(AddItem, TENANT, uuid.uuid4(), sku="ESP-250", quantity=1)
    return message_of(
        topic=ORDERS_COMMANDS,
        partition=0,
        offset=7,
        timestamp_ms=1_790_000_000_000,
        key=b"order-1",
        value=command.model_dump_json().encode(),
        headers=[(name, value.encode()) for name, value in headers.items()],
    )


def garbage(**headers: str) -> Message:
    return message_of(
        topic=ORDERS_COMMANDS,
        partition=1,
        offset=0,
        timestamp_ms=1_790_000_000_000,
        key=None,
        value=b"\xff\xfe{not json",
        headers=[(name, value.encode()) for name, value in headers.items()],
    )


def test_decodes_a_valid_message_and_keeps_the_reason_for_garbage() -> None:
    good, bad = command_message(), garbage()
    assert good.event is not None and good.event_type == "add_item" and good.tenant_id == str(TENANT)
    assert good.decode_error is None
    assert bad.event is None and bad.decode_error and "json" in bad.decode_error.lower()
    assert bad.timestamp == datetime.fromtimestamp(1_790_000_000, UTC)


def test_each_filter_narrows() -> None:
    message = command_message(producer="agent")
    assert Filters().matches(message)
    assert Filters(tenant=str(TENANT), key="order-1", event_type="add_item").matches(message)
    assert not Filters(tenant=str(uuid.uuid4())).matches(message)
    assert not Filters(key="order-2").matches(message)
    assert not Filters(event_type="create_draft").matches(message)
    assert Filters(headers=(("producer", "agent"),)).matches(message)
    assert not Filters(headers=(("producer", "agent"), ("missing", ""))).matches(message)


def test_undecodable_messages_are_filtered_by_their_headers() -> None:
    bad = garbage(tenant_id=str(TENANT), message_type="add_item")
    assert Filters(tenant=str(TENANT), event_type="add_item").matches(bad)
    assert not Filters(key="order-1").matches(bad)


def test_a_dead_letter_decodes_with_its_original_topics_schema() -> None:
    command = order_command(AddItem, TENANT, uuid.uuid4(), sku="ESP-250", quantity=1)
    letter = message_of(
        topic="anything.dlq",
        partition=0,
        offset=0,
        timestamp_ms=0,
        key=b"k",
        value=command.model_dump_json().encode(),
        headers=[("x-original-topic", ORDERS_COMMANDS.encode())],
    )
    assert letter.event_type == "add_item"
    unknown = message_of(topic="nobody.v1", partition=0, offset=0, timestamp_ms=0, key=None, value=b"{}", headers=[])
    assert unknown.decode_error == "no schema is registered for topic 'nobody.v1'"


def test_header_filters_are_name_equals_value() -> None:
    assert parse_header_filters(["a=b", "x-error-kind=exhausted", "q=a=b", "empty="]) == (
        ("a", "b"),
        ("x-error-kind", "exhausted"),
        ("q", "a=b"),
        ("empty", ""),
    )
    assert build_filters(tenant=None, key=None, event_type=None, headers=None).empty


@pytest.mark.parametrize("item", ["novalue", "=value", "  =x", ""])
def test_header_filter_syntax_errors_are_refused(item: str) -> None:
    with pytest.raises(BadInput, match="is not name=value"):
        parse_header_filters([item])
