"""The load generator's inbox: customers waiting for replies, and customers a person took over."""

import asyncio

import pytest

from bench.customers import HandedOver, Inbox
from sellmesh.sandbox.fake_graph import FakeGraphApi, Recorded


def reply_to(customer_id: str) -> Recorded:
    return Recorded("/v25.0/me/messages", {}, {"recipient": {"id": customer_id}, "message": {"text": "hi"}}, 200)


async def arrive(graph: FakeGraphApi, recorded: Recorded) -> None:
    """As the fake channel API's server thread reports an accepted send, then let the loop take it in."""
    assert graph.on_arrival is not None
    graph.on_arrival(recorded)
    await asyncio.sleep(0)


async def test_standing_a_customer_down_wakes_their_wait_with_handed_over() -> None:
    inbox = Inbox(FakeGraphApi(), asyncio.get_running_loop())
    waiting = asyncio.create_task(inbox.wait("42", 1, within=5))
    await asyncio.sleep(0)
    inbox.stand_down("42")
    with pytest.raises(HandedOver):
        await waiting


async def test_a_customer_stood_down_earlier_fails_the_next_wait_at_once() -> None:
    inbox = Inbox(FakeGraphApi(), asyncio.get_running_loop())
    inbox.stand_down("42")
    with pytest.raises(HandedOver):
        await inbox.wait("42", 1, within=5)


async def test_replies_that_arrived_before_the_handover_are_still_returned() -> None:
    graph = FakeGraphApi()
    inbox = Inbox(graph, asyncio.get_running_loop())
    reply = reply_to("42")
    await arrive(graph, reply)
    inbox.stand_down("42")
    assert await inbox.wait("42", 1, within=5) == [reply]


async def test_standing_one_customer_down_leaves_the_others_waiting() -> None:
    graph = FakeGraphApi()
    inbox = Inbox(graph, asyncio.get_running_loop())
    other = asyncio.create_task(inbox.wait("7", 1, within=5))
    inbox.stand_down("42")
    await asyncio.sleep(0.01)
    assert not other.done()
    await arrive(graph, reply_to("7"))
    assert len(await other) == 1
