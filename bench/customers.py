"""Plays scripted customers against a running mesh: each line goes in as a signed webhook (retried until
accepted, as Meta retries), and the customer waits for its replies at the fake channel API before writing on.

Latency is measured from the webhook's 200 to the first reply's arrival at the fake channel API.
"""

import asyncio
import json
import re
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from bench.scenario import Customer, stripe_completed
from sellmesh.sandbox.fake_graph import FakeGraphApi, Recorded

SESSION_IN_LINK = re.compile(r"/sandbox/stripe/pay/(cs_test_[0-9a-f]+)")


def recipient_of(body: Any) -> str:
    if isinstance(body, dict) and body.get("messaging_product") == "whatsapp":
        return str(body.get("to"))
    return str(body.get("recipient", {}).get("id")) if isinstance(body, dict) else ""


class HandedOver(Exception):
    """A person took the customer over: the replies still awaited will not come from the mesh."""


class Inbox:
    """What the fake channel API accepted, per recipient, with a wake-up for customers waiting on it."""

    def __init__(self, api: FakeGraphApi, loop: asyncio.AbstractEventLoop) -> None:
        self.by_recipient: dict[str, list[Recorded]] = defaultdict(list)
        self.handed_over: set[str] = set()
        self._changed: dict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self._any = asyncio.Event()
        self._loop = loop
        api.on_arrival = self._from_server_thread

    def _from_server_thread(self, recorded: Recorded) -> None:
        if recorded.status == 200:
            self._loop.call_soon_threadsafe(self._arrived, recorded)

    def _arrived(self, recorded: Recorded) -> None:
        recipient = recipient_of(recorded.json)
        self.by_recipient[recipient].append(recorded)
        self._changed[recipient].set()
        self._any.set()

    @property
    def total(self) -> int:
        return sum(len(arrivals) for arrivals in self.by_recipient.values())

    async def wait_total(self, count: int) -> None:
        """Until `count` sends in all have arrived, whoever they were for."""
        while self.total < count:
            self._any.clear()
            await self._any.wait()

    def stand_down(self, recipient: str) -> None:
        """`recipient` was handed to a person; call from the event loop. Their waits end with `HandedOver`."""
        self.handed_over.add(recipient)
        self._changed[recipient].set()

    async def wait(self, recipient: str, count: int, *, within: float) -> list[Recorded]:
        """The first `count` arrivals for `recipient`; raises TimeoutError when they do not come in time, and
        `HandedOver` once the recipient is stood down without them (replies that did arrive still count)."""
        async with asyncio.timeout(within):
            while len(self.by_recipient[recipient]) < count:
                if recipient in self.handed_over:
                    raise HandedOver(recipient)
                event = self._changed[recipient]
                event.clear()
                await event.wait()
        return self.by_recipient[recipient][:count]


class Pacer:
    """Spaces webhooks `1/rate` seconds apart across all customers; no rate means as fast as the mesh answers."""

    def __init__(self, rate: float | None) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self._next = time.monotonic()

    async def turn(self) -> None:
        if not self.interval:
            return
        now = time.monotonic()
        slot = max(self._next, now)
        self._next = slot + self.interval
        await asyncio.sleep(slot - now)


@dataclass
class Tally:
    latencies_ms: list[float] = field(default_factory=list)
    webhooks: int = 0
    stripe_webhooks: int = 0
    webhook_retries: int = 0
    timeouts: list[str] = field(default_factory=list)
    # Customers a person took over mid-script: they stop writing, so fewer replies is expected of them.
    handed_over: list[str] = field(default_factory=list)
    # Customers whose Stripe payment was delivered (one handed over before paying never pays).
    paid: list[str] = field(default_factory=list)


@dataclass
class Edges:
    """Where to post: callables so a replica that died is skipped on the next try."""

    meta: Callable[[], str]
    stripe: Callable[[], str]
    sandbox: Callable[[], str]


async def post_until_accepted(
    http: httpx.AsyncClient, url: Callable[[], str], body: bytes, headers: dict[str, str], tally: Tally
) -> float:
    """POST until a 200, as Meta and Stripe retry; returns the monotonic time the 200 arrived."""
    delay = 0.05
    while True:
        try:
            response = await http.post(url(), content=body, headers={"content-type": "application/json", **headers})
            if response.status_code == 200:
                return time.monotonic()
        except httpx.HTTPError:
            pass
        tally.webhook_retries += 1
        await asyncio.sleep(delay)
        delay = min(1.0, delay * 2)


def text_of(recorded: Recorded) -> str:
    return json.dumps(recorded.json)


async def play(
    customer: Customer,
    *,
    http: httpx.AsyncClient,
    edges: Edges,
    inbox: Inbox,
    pacer: Pacer,
    tally: Tally,
    within: float = 60.0,
    duplicate: bool = False,
) -> None:
    """One customer's whole script; `duplicate` delivers every webhook twice, as Meta and Stripe sometimes do."""
    expected = 0
    for step in customer.steps:
        if customer.customer_id in inbox.handed_over:
            # A person has the conversation: the script's next line would be written to them, not the mesh.
            tally.handed_over.append(customer.customer_id)
            return
        await pacer.turn()
        body, signature = customer.webhook(step.text)
        accepted = await post_until_accepted(http, edges.meta, body, {"x-hub-signature-256": signature}, tally)
        tally.webhooks += 1
        if duplicate:
            await post_until_accepted(http, edges.meta, body, {"x-hub-signature-256": signature}, tally)
        expected += step.replies
        try:
            got = await inbox.wait(customer.customer_id, expected, within=within)
        except TimeoutError:
            tally.timeouts.append(f"{customer.customer_id} ({customer.script}): no reply to {step.text!r}")
            return
        except HandedOver:
            tally.handed_over.append(customer.customer_id)
            return
        tally.latencies_ms.append((got[expected - step.replies].at - accepted) * 1000)
    if customer.customer_id in inbox.handed_over:
        # The person who has the conversation now settles the order, not the script.
        tally.handed_over.append(customer.customer_id)
    elif customer.pays:
        try:
            await pay(customer, http=http, edges=edges, inbox=inbox, tally=tally, paid_after=expected, within=within)
        except HandedOver:
            tally.handed_over.append(customer.customer_id)


async def pay(
    customer: Customer,
    *,
    http: httpx.AsyncClient,
    edges: Edges,
    inbox: Inbox,
    tally: Tally,
    paid_after: int,
    within: float,
    duplicate: bool = True,
) -> None:
    """Pay the session in the last link at the Stripe sandbox, then deliver Stripe's signed event (twice);
    raises `HandedOver` when a person takes the customer over before the thanks arrives."""
    links = [m for r in inbox.by_recipient[customer.customer_id] if (m := SESSION_IN_LINK.search(text_of(r)))]
    if not links:
        tally.timeouts.append(f"{customer.customer_id}: no payment link")
        return
    session_id = links[-1].group(1)
    while True:
        try:
            paid = await http.post(f"{edges.sandbox()}/sandbox/stripe/_test/sessions/{session_id}/pay")
            if paid.status_code == 200:
                break
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.2)
    body, signature = stripe_completed(paid.json())
    for _ in range(2 if duplicate else 1):
        await post_until_accepted(http, edges.stripe, body, {"stripe-signature": signature}, tally)
        tally.stripe_webhooks += 1
    tally.paid.append(customer.customer_id)
    try:
        await inbox.wait(customer.customer_id, paid_after + 1, within=within)
    except TimeoutError:
        tally.timeouts.append(f"{customer.customer_id}: no thanks for the payment")


async def play_all(
    people: list[Customer],
    *,
    http: httpx.AsyncClient,
    edges: Edges,
    inbox: Inbox,
    pacer: Pacer,
    conversations: int,
    duplicate_every: int = 0,
    within: float = 60.0,
) -> Tally:
    """Every customer's script, `conversations` at a time; every `duplicate_every`-th customer's webhooks twice."""
    tally = Tally()
    gate = asyncio.Semaphore(conversations)

    async def one(index: int, customer: Customer) -> None:
        async with gate:
            duplicate = bool(duplicate_every) and index % duplicate_every == 0
            await play(
                customer,
                http=http,
                edges=edges,
                inbox=inbox,
                pacer=pacer,
                tally=tally,
                within=within,
                duplicate=duplicate,
            )

    await asyncio.gather(*(one(i, c) for i, c in enumerate(people)))
    return tally
