"""The two locks under every interleaving the test can force: a handoff opening while an AI reply is in
flight and while the customer writes. Nothing with author=ai reaches the channel after the ticket opened,
and every customer message stays in the inbox.

The steps are driven directly (sender, agent turn, handoff command), in a fixed order per case; the
handoff step can be split at its two inner points: after it closes the sender's lock, and after its commit.
"""

import secrets
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import pytest
import pytest_asyncio
from faststream.kafka import KafkaBroker
from redis.asyncio import Redis
from sqlalchemy import Engine
from sqlmodel import Session, select

from schemas.channel import Author, InboundMessage, OutboundMessage, TextContent
from schemas.envelope import Actor, ActorKind, Channel
from schemas.handoff import HandoffReason, RequestHandoff
from schemas.topics import CHANNEL_OUTBOUND
from sellmesh.db import in_thread, make_engine, run_migrations, session_scope
from sellmesh.service import now
from sellmesh.settings import OFFLINE_MODEL
from services.agent.burst import BurstBuffer
from services.agent.model_call import ModelChoice
from services.agent.offline_model import register
from services.agent.responder import Responder
from services.gateway.admin import connect_channel_account, create_tenant
from services.handoff import handlers
from services.handoff.inbox import InboxMessageRow
from services.ingest.graph_client import GraphClient
from services.ingest.ratelimit import SendRateLimiter
from services.ingest.sender import Sender
from services.ingest.store import MessageLog, OutboundSend
from tests.builders import envelope, record_inbound
from tests.fakes import FakeGraphApi

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

Step = Callable[[], Awaitable[None]]


@pytest.fixture(scope="module")
def engine(sqlite_url: str) -> Iterator[Engine]:
    """SQLite only: the locks live in Redis and the sender; the stores run on both databases elsewhere."""
    engine = make_engine(sqlite_url)
    run_migrations(engine)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def graph() -> Iterator[FakeGraphApi]:
    fake = FakeGraphApi().start()
    yield fake
    fake.stop()


@dataclass
class CapturingBroker:
    """Stands in for Kafka between the agent and the sender, so the test decides when the sender runs."""

    published: list[tuple[str, bytes]] = field(default_factory=list)

    async def publish(self, message: bytes, *, topic: str, **_: Any) -> None:
        self.published.append((topic, message))

    def take_outbound(self) -> list[OutboundMessage]:
        taken = [OutboundMessage.model_validate_json(m) for t, m in self.published if t == CHANNEL_OUTBOUND]
        self.published.clear()
        return taken


@dataclass
class Conversation:
    engine: Engine
    redis: Redis
    graph: FakeGraphApi
    sender: Sender
    responder: Responder
    buffer: BurstBuffer
    broker: CapturingBroker
    tenant_id: uuid.UUID
    account_id: uuid.UUID
    customer_id: str
    conversation_id: str
    sent_at_open: int | None = None

    def customer_message(self, text: str) -> InboundMessage:
        return InboundMessage(
            **envelope(self.tenant_id),
            conversation_id=self.conversation_id,
            channel=Channel.WHATSAPP,
            channel_account_id=str(self.account_id),
            customer_id=self.customer_id,
            message_id=f"wamid.{uuid.uuid4().hex}",
            sent_at=now(),
            content=TextContent(text=text),
        )

    def ai_reply(self, text: str) -> OutboundMessage:
        return OutboundMessage(
            **envelope(self.tenant_id),
            conversation_id=self.conversation_id,
            channel=Channel.WHATSAPP,
            channel_account_id=str(self.account_id),
            customer_id=self.customer_id,
            author=Author.AI,
            text=text,
        )

    def request(self) -> RequestHandoff:
        return RequestHandoff(
            **envelope(self.tenant_id),
            conversation_id=self.conversation_id,
            actor=Actor(kind=ActorKind.AI),
            reason=HandoffReason.CUSTOMER_ASKED,
            channel=Channel.WHATSAPP,
            channel_account_id=str(self.account_id),
            customer_id=self.customer_id,
        )

    def sends(self) -> int:
        return len(self.graph.to(self.customer_id))

    async def customer_writes(self, text: str) -> None:
        """What ingest's two consumers do with one inbound message: the inbox row and the agent's buffer."""
        message = self.customer_message(text)
        record_inbound(self.engine, message)
        await self.buffer.add(message)

    async def agent_turn(self) -> None:
        member = f"{self.tenant_id}:{self.conversation_id}"
        burst = await self.buffer.claim(member)
        assert burst is not None
        await self.buffer.finish(burst, await self.responder.answer(burst))

    async def sender_runs(self, pending: list[OutboundMessage]) -> None:
        pending.extend(self.broker.take_outbound())
        while pending:
            await self.sender.on_outbound(pending.pop(0))

    async def handoff_opens(
        self, monkeypatch: pytest.MonkeyPatch, *, locked: Step | None, committed: Step | None
    ) -> None:
        """The handoff command, with `locked` run after the mirror write and `committed` after the commit."""
        real = in_thread

        async def split(fn: Callable[..., Any], *args: Any) -> Any:
            if fn is not handlers.apply_command:
                return await real(fn, *args)
            if locked is not None:
                await locked()
            result = await real(fn, *args)
            self.sent_at_open = self.sends()
            if committed is not None:
                await committed()
            return result

        monkeypatch.setattr(handlers, "in_thread", split)
        await handlers.on_handoff_command(self.request(), engine=self.engine, redis=self.redis)
        monkeypatch.setattr(handlers, "in_thread", real)

    def inbox_texts(self) -> list[str]:
        with Session(self.engine) as session:
            query = select(InboxMessageRow.text).where(
                InboxMessageRow.tenant_id == self.tenant_id, InboxMessageRow.conversation_id == self.conversation_id
            )
            return list(session.exec(query))

    def refused(self) -> int:
        with Session(self.engine) as session:
            query = select(OutboundSend).where(
                OutboundSend.tenant_id == self.tenant_id, OutboundSend.status == "refused"
            )
            return len(session.exec(query).all())


@pytest_asyncio.fixture
async def talk(engine: Engine, redis: Redis, graph: FakeGraphApi) -> AsyncIterator[Conversation]:
    register()
    tenant_id, _ = create_tenant(engine, name=f"Race test {uuid.uuid4().hex[:6]}")
    account_id = connect_channel_account(
        engine,
        tenant_id=tenant_id,
        channel=Channel.WHATSAPP,
        external_id=str(uuid.uuid4().int)[:15],
        app_secret=secrets.token_hex(8),
        verify_token=secrets.token_hex(8),
        access_token="tok",
    )
    customer = "1555" + str(uuid.uuid4().int)[:8]
    conversation = f"conv-{uuid.uuid4().hex}"
    with session_scope(engine) as session:
        # The customer wrote a minute ago: the channel's window is open, so only the locks can stop a send.
        session.add(
            MessageLog(
                tenant_id=tenant_id,
                channel="whatsapp",
                channel_account_id=account_id,
                conversation_id=conversation,
                direction="in",
                channel_message_id=f"in.{uuid.uuid4().hex}",
                event_id=uuid.uuid4(),
                kind="text",
                text="hi",
            )
        )
    broker = CapturingBroker()
    buffer = BurstBuffer(redis, quiet_seconds=0)
    choice = ModelChoice(model=OFFLINE_MODEL, fallbacks=[], timeout=10)
    responder = Responder(engine=engine, redis=redis, broker=cast(KafkaBroker, broker), buffer=buffer, choice=choice)
    graph_client = GraphClient(graph.base_url, timeout_seconds=5)
    limiter = SendRateLimiter(redis, rate_per_second=50.0, burst=20)
    sender = Sender(engine=engine, redis=redis, graph=graph_client, limiter=limiter)
    yield Conversation(
        engine,
        redis,
        graph,
        sender,
        responder,
        buffer,
        broker,
        tenant_id,
        account_id,
        customer,
        conversation,
    )
    await graph_client.close()


@pytest.mark.parametrize("when", ["before-open", "after-lock", "after-commit", "after-open"])
async def test_an_ai_reply_in_flight_is_never_sent_once_the_ticket_opened(
    talk: Conversation, monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    pending = [talk.ai_reply("Our mugs are 9.00 EUR.")]

    async def send() -> None:
        await talk.sender_runs(pending)

    if when == "before-open":
        await send()
    await talk.handoff_opens(
        monkeypatch, locked=send if when == "after-lock" else None, committed=send if when == "after-commit" else None
    )
    if when == "after-open":
        await send()
    assert talk.sends() == talk.sent_at_open
    # The case that may send, sends: the locks are what stops the others, not a broken sender.
    assert talk.sends() == (1 if when == "before-open" else 0)
    assert talk.refused() == (0 if when == "before-open" else 1)


ORDERS = {
    # C: the customer writes; A: the agent answers its burst; S: the sender handles what the agent published.
    "C-A-S-O": ("customer", "agent", "sender", "open"),
    "C-A-O-S": ("customer", "agent", "open", "sender"),
    "C-O-A-S": ("customer", "open", "agent", "sender"),
    "O-C-A-S": ("open", "customer", "agent", "sender"),
    "C-A-lock-S": ("customer", "agent", "open:locked-sender"),
    "C-A-commit-S": ("customer", "agent", "open:committed-sender"),
    "C-lock-A-S": ("customer", "open:locked-agent", "sender"),
    "C-commit-A-S": ("customer", "open:committed-agent", "sender"),
}


@pytest.mark.parametrize("order", list(ORDERS))
async def test_a_customer_writing_while_the_handoff_opens_gets_no_ai_reply_after_it_and_is_kept(
    talk: Conversation, monkeypatch: pytest.MonkeyPatch, order: str
) -> None:
    pending: list[OutboundMessage] = []
    steps: dict[str, Step] = {
        "customer": lambda: talk.customer_writes("do you have mugs?"),
        "agent": talk.agent_turn,
        "sender": lambda: talk.sender_runs(pending),
    }
    for step in ORDERS[order]:
        if step.startswith("open"):
            inner = step.partition(":")[2]
            point, _, what = inner.partition("-")
            during = steps[what] if what else None
            await talk.handoff_opens(
                monkeypatch,
                locked=during if point == "locked" else None,
                committed=during if point == "committed" else None,
            )
        else:
            await steps[step]()
    await talk.sender_runs(pending)  # anything still in flight reaches the sender in the end
    assert talk.sent_at_open is not None
    assert talk.sends() == talk.sent_at_open, "an AI message reached the channel after the ticket opened"
    assert talk.sends() == (1 if order == "C-A-S-O" else 0)
    assert talk.inbox_texts() == ["do you have mugs?"]
