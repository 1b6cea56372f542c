"""The replay plan people confirm, the headers a replayed copy carries, and pacing."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from schemas.orders import AddItem, CreateDraft
from schemas.topics import ORDERS_COMMANDS
from sellmesh.ops.message import Message, message_of
from sellmesh.ops.replay import Pacer, plan_replay, replay_headers
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


async def test_plan_counts_every_match_by_type_but_keeps_only_max() -> None:
    junk = message_of(topic=ORDERS_COMMANDS, partition=0, offset=9, timestamp_ms=0, key=None, value=b"?", headers=[])
    found = [message(CreateDraft, 1), message(AddItem, 2), message(AddItem, 3), junk]
    plan = await plan_replay(stream(*found), source=ORDERS_COMMANDS, target=lambda _: "out.v1", limit=3)
    assert plan.matched == 4 and len(plan.items) == 3 and plan.left_out == 1
    assert dict(plan.per_type) == {"create_draft": 1, "add_item": 2, "(undecodable)": 1}
    assert dict(plan.per_target) == {"out.v1": 3}
    summary = "\n".join(plan.summary())
    assert "4 message(s) from orders.commands.v1 match; 3 will be published to out.v1 (3)" in summary
    assert "capped by --max 3: the last 1 match(es) will not be published" in summary


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
