"""The fault test's per-send checks, on hand-built arrivals at the channel and hand-built send logs."""

import asyncio
import uuid
from typing import Any

from bench.customers import Inbox
from bench.scenario import Customer, Shop
from schemas.envelope import Channel
from sellmesh.sandbox.fake_graph import FakeGraphApi, Recorded
from tests.faults.invariants import (
    SendLog,
    every_arrival_is_a_known_send,
    every_reply_arrived_once,
    every_sent_row_arrived,
    no_send_arrived_twice,
    send_id_of,
    sends_match_arrivals,
)

SENT_A = "00000000-0000-0000-0000-00000000000a"
SENT_B = "00000000-0000-0000-0000-00000000000b"
IN_DOUBT = "00000000-0000-0000-0000-0000000000dd"
UNKNOWN = "00000000-0000-0000-0000-0000000000ff"
LOG = SendLog(sent=frozenset({SENT_A, SENT_B}), in_doubt=frozenset({IN_DOUBT}))


def messenger(send_id: str | None) -> Recorded:
    message: dict[str, Any] = {"text": "hello"}
    if send_id is not None:
        message["metadata"] = send_id
    return Recorded("/v25.0/me/messages", {}, {"recipient": {"id": "42"}, "message": message}, 200)


def whatsapp(send_id: str | None) -> Recorded:
    body: dict[str, Any] = {"messaging_product": "whatsapp", "to": "43", "type": "text", "text": {"body": "hi"}}
    if send_id is not None:
        body["biz_opaque_callback_data"] = send_id
    return Recorded("/v25.0/1234/messages", {}, body, 200)


def test_reads_the_send_id_from_messenger_metadata_and_whatsapp_callback_data() -> None:
    assert send_id_of(messenger(SENT_A).json) == SENT_A
    assert send_id_of(whatsapp(SENT_B).json) == SENT_B
    assert send_id_of(messenger(None).json) is None
    assert send_id_of(whatsapp(None).json) is None


def test_every_send_once_and_accounted_for_is_no_problem() -> None:
    assert sends_match_arrivals([messenger(SENT_A), whatsapp(SENT_B), messenger(IN_DOUBT)], LOG) == []


def test_a_send_in_doubt_that_never_arrived_is_no_problem() -> None:
    assert sends_match_arrivals([messenger(SENT_A), whatsapp(SENT_B)], LOG) == []


def test_reports_a_send_that_arrived_twice() -> None:
    problems = no_send_arrived_twice([messenger(SENT_A), messenger(SENT_A), whatsapp(SENT_B)])
    assert problems == [f"send {SENT_A} arrived 2 times at the channel"]


def test_reports_a_send_in_doubt_that_arrived_twice() -> None:
    assert no_send_arrived_twice([whatsapp(IN_DOUBT), whatsapp(IN_DOUBT)]) != []


def test_reports_a_sent_row_that_never_arrived() -> None:
    problems = every_sent_row_arrived([messenger(SENT_A)], LOG)
    assert problems == [f"send {SENT_B} recorded as sent never arrived at the channel"]


def test_reports_an_arrival_the_send_log_does_not_know() -> None:
    [problem] = every_arrival_is_a_known_send([messenger(SENT_A), whatsapp(UNKNOWN)], LOG)
    assert problem.startswith(f"send {UNKNOWN} arrived but is neither sent nor in doubt")


def test_reports_an_arrival_without_a_send_id() -> None:
    [problem] = every_arrival_is_a_known_send([messenger(SENT_A), whatsapp(None)], LOG)
    assert problem.startswith("arrival without a send id")


def browsing(customer_id: str) -> Customer:
    shop = Shop(uuid.uuid4(), "secret", {Channel.MESSENGER: "2100"})
    return Customer(shop, Channel.MESSENGER, customer_id, "browse")


async def inbox_with(replies: dict[str, int]) -> Inbox:
    inbox = Inbox(FakeGraphApi(), asyncio.get_running_loop())
    for customer_id, count in replies.items():
        inbox.by_recipient[customer_id] = [messenger(None) for _ in range(count)]
    return inbox


async def test_a_customer_handed_over_may_have_fewer_replies_but_never_more() -> None:
    people = [browsing("1"), browsing("2"), browsing("3")]
    inbox = await inbox_with({"1": 1, "2": 3, "3": 4})
    [problem] = every_reply_arrived_once(inbox, people, handed_over={"1", "2", "3"})
    assert problem.startswith("3 (browse, messenger): 4 replies, expected at most 3")


async def test_a_customer_not_handed_over_gets_exactly_the_replies_of_the_script() -> None:
    people = [browsing("1"), browsing("2")]
    inbox = await inbox_with({"1": 2, "2": 3})
    [problem] = every_reply_arrived_once(inbox, people, handed_over={"9"})
    assert problem.startswith("1 (browse, messenger): 2 replies, expected 3")
