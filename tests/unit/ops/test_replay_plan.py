"""The replay plan people confirm, the headers a replayed copy carries, and pacing."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from schemas.orders import AddItem, CreateDraft
from schemas.topics import ORDERS_COMMANDS, ORDERS_EVENTS
from sellmesh.ops.message import Message, message_of
from sellmesh.ops.replay import Pacer, ReplayItem, copy_to, offsets, plan_replay, replay_headers
from tests.builders import order_command

AT = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def message(cls: type[Any], offset: int, **headers: str) -> Message:
    extra: dict[str, Any] = {"sku": "A", "quantity": 1} if cls is AddItem else {}
    command = order_command(cls, uuid.uuid4(), uuid.uuid4(), **extra)
    return message_of(
        topic=ORDERS_COMMANDS,
        partition=2,
        offset=offset,
        timestamp_ms=0,
        key=b"k",
        value=command.model_dump_json().encode(),
        headers=[(n, v.encode()) for n, v in headers.items()],
    )


async def stream(*messages: Message) -> AsyncIterator[Message]:
    for m in messages:
        yield m


def junk(offset: int, partition: int = 0) -> Message:
    return message_of(
        topic=ORDERS_COMMANDS, partition=partition, offset=offset, timestamp_ms=0, key=None, value=b"?", headers=[]
    )


async def test_plan_counts_every_match_by_type_but_keeps_only_max() -> None:
    found = [message(CreateDraft, 1), message(AddItem, 2), message(AddItem, 3), junk(9)]
    plan = await plan_replay(stream(*found), source=ORDERS_COMMANDS, prepare=copy_to(lambda _: "out.v1"), limit=3)
    assert plan.matched == 4 and len(plan.items) == 3 and plan.left_out == 1
    assert dict(plan.per_type) == {"create_draft": 1, "add_item": 2, "(undecodable)": 1}
    assert dict(plan.per_target) == {"out.v1": 3}
    summary = "\n".join(plan.summary())
    assert "4 message(s) from orders.commands.v1 match; 3 will be published to out.v1 (3)" in summary
    assert "out.v1 is not a topic of the contract: what goes there is not checked" in summary
    assert "capped by --max 3: the last 1 match(es) will not be published" in summary


async def test_bytes_that_do_not_decode_as_the_target_topics_message_are_refused_and_named() -> None:
    """Published, a consumer would dead-letter them again as `invalid`, over the reason they were kept for."""
    good = [message(CreateDraft, 1), message(AddItem, 4)]
    found = [good[0], junk(2), junk(3), good[1], junk(7, partition=1)]
    plan = await plan_replay(stream(*found), source="x.v1.dlq", prepare=copy_to(lambda _: ORDERS_COMMANDS), limit=2)
    assert len(plan.items) == 2 and plan.left_out == 1  # the cap counts what is published, not what is refused
    plan = await plan_replay(stream(*found), source="x.v1.dlq", prepare=copy_to(lambda _: ORDERS_COMMANDS), limit=9)
    assert [item.message for item in plan.items] == good and plan.left_out == 0
    assert [(r.message.partition, r.message.offset) for r in plan.refused] == [(0, 2), (0, 3), (1, 7)]
    assert plan.refused[0].reason.startswith("does not decode as a orders.commands.v1 message: ")
    summary = "\n".join(plan.summary())
    assert "5 message(s) from x.v1.dlq match; 2 will be published to orders.commands.v1 (2)" in summary
    assert "refused 3, which will not be published and stay in x.v1.dlq:" in summary
    assert "    p0:2  does not decode as a orders.commands.v1 message" in summary
    assert "partition 0 offsets 2-3; partition 1 offset 7" in plan.refusal_error()


async def test_a_message_of_one_topic_is_refused_on_another_topic_of_the_contract() -> None:
    plan = await plan_replay(
        stream(message(AddItem, 5)), source=ORDERS_COMMANDS, prepare=copy_to(lambda _: ORDERS_EVENTS), limit=10
    )
    assert plan.items == [] and len(plan.refused) == 1


async def test_a_decodable_copy_keeps_its_bytes_key_and_headers() -> None:
    original = message(AddItem, 6, tenant_id="t-1")
    plan = await plan_replay(stream(original), source="s", prepare=copy_to(lambda _: ORDERS_COMMANDS), limit=1)
    assert plan.items == [ReplayItem(original, ORDERS_COMMANDS, original.value, b"k", original.headers)]


async def test_nothing_matching_says_so() -> None:
    plan = await plan_replay(stream(), source="a.v1.dlq", prepare=copy_to(lambda _: ORDERS_COMMANDS), limit=1)
    assert plan.summary() == ["no message in a.v1.dlq matches the selection"]


def test_offsets_are_written_as_runs_per_partition() -> None:
    found = [junk(5), junk(1), junk(2), junk(3), junk(9, partition=2), junk(8)]
    assert offsets(found) == "partition 0 offsets 1-3, 5, 8; partition 2 offset 9"


def test_replay_headers_keep_the_originals_mark_the_source_and_replace_older_marks() -> None:
    original = message(AddItem, 41, tenant_id="t-1", **{"x-replay-reason": "older", "x-error-kind": "exhausted"})
    headers = dict(replay_headers(original, reason="bug 12 fixed", by="ana", at=AT, drop={"x-error-kind"}))
    assert headers == {
        "tenant_id": b"t-1",
        "x-replay-topic": b"orders.commands.v1",
        "x-replay-partition": b"2",
        "x-replay-offset": b"41",
        "x-replay-reason": b"bug 12 fixed",
        "x-replay-by": b"ana",
        "x-replay-at": AT.isoformat().encode(),
    }


async def test_pacer_spaces_sends_by_the_rate() -> None:
    clock = [100.0]
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(round(seconds, 6))
        clock[0] += seconds

    pacer = Pacer(4.0, clock=lambda: clock[0], sleep=sleep)
    for _ in range(3):
        await pacer.wait()
    assert slept == [0.25, 0.25]
    clock[0] += 5  # a slow publish: no catch-up burst is owed, but no sleep either
    await pacer.wait()
    assert slept == [0.25, 0.25]


def test_pacer_uses_asyncio_sleep_by_default() -> None:
    assert Pacer(1.0).sleep is asyncio.sleep
