"""The sender against a fake Graph API over HTTP, real Redis, and migrated SQLite and PostgreSQL."""

import asyncio
import json
import logging
import secrets
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any, cast

import pytest
import pytest_asyncio
from redis.asyncio import Redis
from sqlalchemy import Engine, event

from schemas.channel import Author, OutboundMessage, QuickReply, WhatsAppTemplate
from schemas.envelope import Channel
from schemas.topics import CHANNEL_DELIVERY, HANDOFF_COMMANDS
from sellmesh.logging import JsonFormatter
from sellmesh.subscriber import Handled
from services.gateway.admin import connect_channel_account, create_tenant
from services.handoff.mode import set_mode
from services.ingest import sender as sender_module
from services.ingest.graph_client import GraphClient, SendInDoubt, SendUnavailable
from services.ingest.ratelimit import Hold, SendRateLimiter
from services.ingest.send_log import Attempt, Outcome, begin_attempt, part_id, record_outcome, release
from services.ingest.sender import Sender
from tests.fakes import (
    MESSENGER_WINDOW_CLOSED,
    RATE_LIMITED,
    SERVER_ERROR,
    SUCCEED,
    WHATSAPP_WINDOW_CLOSED,
    FakeGraphApi,
    Scripted,
    token_error,
)
from tests.integration.sender_shop import Shop

pytestmark = pytest.mark.integration

PICTURE = "https://cdn.example.com/mug.jpg"


@pytest.fixture(scope="module")
def graph() -> Iterator[FakeGraphApi]:
    fake = FakeGraphApi().start()
    yield fake
    fake.stop()


@pytest_asyncio.fixture
async def shop(migrated_engine: Engine, redis: Redis, graph: FakeGraphApi) -> AsyncIterator[Shop]:
    tenant_id, _ = create_tenant(migrated_engine, name=f"Sender test {uuid.uuid4().hex[:6]}")
    accounts, tokens = {}, {}
    for channel in Channel:
        tokens[channel] = f"EAAG{secrets.token_hex(16)}"
        accounts[channel] = connect_channel_account(
            migrated_engine,
            tenant_id=tenant_id,
            channel=channel,
            external_id=str(uuid.uuid4().int)[:15],
            app_secret=secrets.token_hex(8),
            verify_token=secrets.token_hex(8),
            access_token=tokens[channel],
        )
    client = GraphClient(graph.base_url, timeout_seconds=5)
    limiter = SendRateLimiter(redis, rate_per_second=50.0, burst=20)
    sender = Sender(engine=migrated_engine, redis=redis, graph=client, limiter=limiter)
    yield Shop(migrated_engine, sender, graph, tenant_id, accounts, tokens)
    await client.close()


class BrokenGraph:
    """A Graph API stand-in over real TCP that reads each request and then either never answers or hangs up
    without a word: what a request that reached Meta but got no answer looks like on the wire."""

    def __init__(self, *, hang_up: bool) -> None:
        self.hang_up = hang_up
        self.requests = 0
        self.base_url = ""
        self._server: asyncio.Server | None = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while await reader.readuntil(b"\r\n\r\n"):
                self.requests += 1
                if self.hang_up:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    async def __aenter__(self) -> "BrokenGraph":
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.base_url = f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()


async def test_a_message_handled_twice_is_sent_once(shop: Shop) -> None:
    message = shop.outbound(Channel.WHATSAPP)
    shop.customer_wrote(message, hours_ago=1)
    assert await shop.sender.on_outbound(message) is None
    # Counted by the subscriber as a duplicate: the sender has no Redis dedup in front of it.
    assert await shop.sender.on_outbound(message) is Handled.DUPLICATE
    [request] = shop.graph.to(message.customer_id)
    assert request.headers["authorization"] == f"Bearer {shop.tokens[Channel.WHATSAPP]}"
    assert request.json["text"] == {"preview_url": False, "body": "Hello!"}
    row = shop.row(message.event_id)
    assert row.status == "sent"
    [delivery] = shop.outbox(message, CHANNEL_DELIVERY)
    assert (delivery["state"], delivery["message_id"]) == ("sent", row.provider_message_id)
    assert [log.channel_message_id for log in shop.sent_log(message)] == [row.provider_message_id]


async def test_a_rate_limit_raises_for_a_retry_and_the_retry_sends_exactly_once(shop: Shop) -> None:
    message = shop.outbound(Channel.MESSENGER)
    shop.customer_wrote(message, hours_ago=2)
    shop.graph.script(RATE_LIMITED)
    with pytest.raises(SendUnavailable):
        await shop.sender.on_outbound(message)
    # Meta said no, so nothing went out: the claim is released and the retry sends.
    assert shop.row(message.event_id).status == "retrying"
    await shop.sender.on_outbound(message)
    await shop.sender.on_outbound(message)
    assert [r.status for r in shop.graph.to(message.customer_id)] == [429, 200]
    assert shop.row(message.event_id).status == "sent"
    assert len(shop.outbox(message, CHANNEL_DELIVERY)) == 1


async def test_a_server_error_is_retryable_too(shop: Shop) -> None:
    message = shop.outbound(Channel.INSTAGRAM)
    shop.customer_wrote(message, hours_ago=2)
    shop.graph.script(SERVER_ERROR)
    with pytest.raises(SendUnavailable):
        await shop.sender.on_outbound(message)
    await shop.sender.on_outbound(message)
    assert len(shop.graph.accepted(message.customer_id)) == 1


async def test_a_message_the_channel_never_took_within_the_retry_budget_fails_and_asks_for_a_person(
    shop: Shop,
) -> None:
    """Meta answered 429 on every attempt until the subscriber dead-lettered the message: without a give-up the
    customer would have neither the reply nor a person, and nobody would know but on-call."""
    message = shop.outbound(Channel.MESSENGER)
    shop.customer_wrote(message, hours_ago=2)
    shop.graph.script(RATE_LIMITED)
    with pytest.raises(SendUnavailable) as last:
        await shop.sender.on_outbound(message)
    await shop.sender.on_give_up(message, last.value)
    row = shop.row(message.event_id)
    assert (row.status, row.error.startswith("not sent: ")) == ("failed", True)
    [delivery] = shop.outbox(message, CHANNEL_DELIVERY)
    assert delivery["state"] == "failed"
    [handoff] = shop.outbox(message, HANDOFF_COMMANDS)
    assert (handoff["actor"]["kind"], handoff["note"].startswith("not sent: ")) == ("system", True)
    # A redrive of the dead letter finds it finished: a person was asked instead, nothing goes out twice.
    assert await shop.sender.on_outbound(message) is Handled.DUPLICATE
    assert [r.status for r in shop.graph.to(message.customer_id)] == [429]


async def test_giving_up_leaves_a_send_that_may_have_gone_out_or_was_settled_as_it_is(shop: Shop) -> None:
    in_flight, sent = shop.outbound(Channel.WHATSAPP), shop.outbound(Channel.WHATSAPP)
    for message in (in_flight, sent):
        shop.customer_wrote(message, hours_ago=1)
    assert begin_attempt(shop.engine, in_flight, parts=0) is not None  # claimed: a post may be under way
    await shop.sender.on_outbound(sent)
    for message in (in_flight, sent):
        await shop.sender.on_give_up(message, RuntimeError("late"))
    assert (shop.row(in_flight.event_id).status, shop.row(sent.event_id).status) == ("sending", "sent")
    assert shop.outbox(in_flight, HANDOFF_COMMANDS) == [] and shop.outbox(sent, HANDOFF_COMMANDS) == []


async def test_a_message_naming_an_account_id_no_account_can_have_fails_at_once_and_asks_for_a_person(
    shop: Shop,
) -> None:
    """Spending its attempts on it would only hold the partition: no retry turns "acc" into an account."""
    message = shop.outbound(Channel.WHATSAPP).model_copy(update={"channel_account_id": "acc"})
    assert await shop.sender.on_outbound(message) is None
    assert shop.row(message.event_id).status == "failed"
    assert shop.graph.to(message.customer_id) == []
    [handoff] = shop.outbox(message, HANDOFF_COMMANDS)
    assert "channel account" in handoff["note"]


async def test_a_refused_token_fails_the_message_and_asks_for_a_person(shop: Shop) -> None:
    message = shop.outbound(Channel.WHATSAPP)
    shop.customer_wrote(message, hours_ago=1)
    shop.graph.script(token_error(shop.tokens[Channel.WHATSAPP]))
    await shop.sender.on_outbound(message)
    await shop.sender.on_outbound(message)
    assert shop.graph.accepted(message.customer_id) == []
    assert len(shop.graph.to(message.customer_id)) == 1
    row = shop.row(message.event_id)
    assert row.status == "failed"
    assert shop.tokens[Channel.WHATSAPP] not in row.error
    [delivery] = shop.outbox(message, CHANNEL_DELIVERY)
    assert (delivery["state"], delivery["error_code"]) == ("failed", "190")
    [handoff] = shop.outbox(message, HANDOFF_COMMANDS)
    assert (handoff["type"], handoff["reason"], handoff["customer_id"]) == (
        "request",
        "channel_window_closed",
        message.customer_id,
    )
    assert "access token" in handoff["note"]
    assert shop.tokens[Channel.WHATSAPP] not in json.dumps([delivery, handoff])
    assert shop.sent_log(message) == []


@pytest.mark.parametrize("error", [WHATSAPP_WINDOW_CLOSED, MESSENGER_WINDOW_CLOSED], ids=["whatsapp", "messenger"])
async def test_a_window_error_from_meta_fails_the_message_and_asks_for_a_person(shop: Shop, error: Any) -> None:
    channel = Channel.WHATSAPP if error is WHATSAPP_WINDOW_CLOSED else Channel.MESSENGER
    message = shop.outbound(channel)
    shop.customer_wrote(message, hours_ago=23)
    shop.graph.script(error)
    await shop.sender.on_outbound(message)
    assert shop.row(message.event_id).status == "failed"
    [handoff] = shop.outbox(message, HANDOFF_COMMANDS)
    assert handoff["reason"] == "channel_window_closed"


@pytest.mark.parametrize("hours_ago", [25.0, None], ids=["window-closed", "never-wrote"])
async def test_the_ai_outside_the_window_is_refused_and_a_person_is_asked_for(
    shop: Shop, hours_ago: float | None
) -> None:
    message = shop.outbound(Channel.INSTAGRAM)
    if hours_ago is not None:
        shop.customer_wrote(message, hours_ago=hours_ago)
    await shop.sender.on_outbound(message)
    assert shop.graph.to(message.customer_id) == []
    assert shop.row(message.event_id).status == "refused"
    assert shop.outbox(message, CHANNEL_DELIVERY) == []
    [handoff] = shop.outbox(message, HANDOFF_COMMANDS)
    assert (handoff["reason"], handoff["actor"]["kind"]) == ("channel_window_closed", "system")


@pytest.mark.parametrize(("sent_hours_ago", "sent"), [(25.0, False), (23.0, True)], ids=["closed", "open"])
async def test_the_window_counts_from_when_the_customer_sent_not_from_when_ingest_logged_it(
    shop: Shop, sent_hours_ago: float, sent: bool
) -> None:
    """A backlog (ingest down for hours, Meta retrying its webhooks) is logged now, but Meta's window closed
    24 hours after the customer wrote: an AI reply then must go to a person, not to a Graph error."""
    message = shop.outbound(Channel.WHATSAPP)
    shop.customer_wrote(message, hours_ago=0.0, sent_hours_ago=sent_hours_ago)
    await shop.sender.on_outbound(message)
    assert shop.row(message.event_id).status == ("sent" if sent else "refused")
    assert len(shop.graph.to(message.customer_id)) == (1 if sent else 0)
    assert len(shop.outbox(message, HANDOFF_COMMANDS)) == (0 if sent else 1)


async def test_a_person_on_messenger_outside_the_window_is_sent_with_the_human_agent_tag(shop: Shop) -> None:
    message = shop.outbound(Channel.MESSENGER, Author.HUMAN, "Sorry for the wait!")
    shop.customer_wrote(message, hours_ago=30)
    await shop.sender.on_outbound(message)
    [request] = shop.graph.accepted(message.customer_id)
    assert request.path.endswith("/me/messages")
    assert (request.json["messaging_type"], request.json["tag"]) == ("MESSAGE_TAG", "HUMAN_AGENT")
    assert shop.row(message.event_id).status == "sent"


async def test_whatsapp_outside_the_window_without_a_template_fails_clearly(shop: Shop) -> None:
    message = shop.outbound(Channel.WHATSAPP, Author.HUMAN)
    shop.customer_wrote(message, hours_ago=48)
    await shop.sender.on_outbound(message)
    assert shop.graph.to(message.customer_id) == []
    assert shop.row(message.event_id).status == "failed"
    [delivery] = shop.outbox(message, CHANNEL_DELIVERY)
    assert (delivery["state"], delivery["error_detail"]) == (
        "failed",
        "whatsapp window closed: a template is required",
    )
    # The person who wrote it learns it did not go (a note on their ticket), and why.
    [request] = shop.outbox(message, HANDOFF_COMMANDS)
    assert (
        request["note"]
        == "a reply from the team did not reach the customer: whatsapp window closed: a template is required"
    )


async def test_whatsapp_outside_the_window_with_a_template_is_sent_as_the_template(shop: Shop) -> None:
    template = WhatsAppTemplate(name="order_update", language="en_US", body_parameters=("Ana",))
    message = shop.outbound(Channel.WHATSAPP, Author.SYSTEM, "Ana, your order shipped", template=template)
    await shop.sender.on_outbound(message)
    [request] = shop.graph.accepted(message.customer_id)
    assert request.path.endswith(f"/{shop.external_id(Channel.WHATSAPP)}/messages")
    assert request.json["type"] == "template"
    assert request.json["template"]["name"] == "order_update"
    [log] = shop.sent_log(message)
    assert log.kind == "template"


@pytest.mark.parametrize("hours_ago", [1.0, 25.0], ids=["window-open", "window-closed"])
async def test_an_ai_message_is_refused_while_a_person_owns_the_conversation(
    shop: Shop, redis: Redis, hours_ago: float
) -> None:
    # The person in charge outranks the window: no handoff request for a conversation a person already owns.
    message = shop.outbound(Channel.WHATSAPP)
    shop.customer_wrote(message, hours_ago=hours_ago)
    await set_mode(redis, shop.tenant_id, message.conversation_id, "human")
    await shop.sender.on_outbound(message)
    assert shop.graph.to(message.customer_id) == []
    row = shop.row(message.event_id)
    assert (row.status, row.error) == ("refused", "conversation is in human mode")
    assert shop.outbox(message, HANDOFF_COMMANDS) == []
    # The mode is read with the send token, and a refused send takes none from the account's bucket.
    assert not await redis.exists(SendRateLimiter.key(message.channel_account_id))


async def test_a_person_writing_in_a_conversation_they_own_is_sent(shop: Shop, redis: Redis) -> None:
    # The hold is for the AI's messages only: the person in charge must reach the customer.
    message = shop.outbound(Channel.WHATSAPP, author=Author.HUMAN)
    shop.customer_wrote(message, hours_ago=1)
    await set_mode(redis, shop.tenant_id, message.conversation_id, "human")
    await shop.sender.on_outbound(message)
    assert len(shop.graph.accepted(message.customer_id)) == 1
    assert shop.row(message.event_id).status == "sent"


async def test_an_ai_message_for_an_unknown_account_in_human_mode_is_refused_for_the_mode(
    shop: Shop, redis: Redis
) -> None:
    message = shop.outbound(Channel.WHATSAPP).model_copy(update={"channel_account_id": str(uuid.uuid4())})
    await set_mode(redis, shop.tenant_id, message.conversation_id, "human")
    await shop.sender.on_outbound(message)
    row = shop.row(message.event_id)
    assert (row.status, row.error) == ("refused", "conversation is in human mode")


async def test_a_retry_after_a_partial_send_does_not_repeat_the_image(shop: Shop) -> None:
    buttons = (QuickReply(title="Yes", payload="YES"), QuickReply(title="No", payload="NO"))
    message = shop.outbound(Channel.MESSENGER, text="This one?", image_url=PICTURE, quick_replies=buttons)
    shop.customer_wrote(message, hours_ago=1)
    shop.graph.script(SUCCEED, SERVER_ERROR)  # the image goes through, the text after it hits a 500
    with pytest.raises(SendUnavailable):
        await shop.sender.on_outbound(message)
    await shop.sender.on_outbound(message)
    sent = [("attachment" in r.json["message"], r.status) for r in shop.graph.to(message.customer_id)]
    assert sent == [(True, 200), (False, 500), (False, 200)]
    image_row = shop.row(part_id(message, 0))
    assert image_row.status == "sent"
    assert image_row.provider_message_id  # so the image's echo is recognised as ours, not a person's
    assert shop.row(message.event_id).status == "sent"
    assert sorted(log.kind for log in shop.sent_log(message)) == ["image", "quick_replies"]


async def test_an_account_of_another_tenant_is_never_used(shop: Shop, migrated_engine: Engine) -> None:
    other_tenant, _ = create_tenant(migrated_engine, name="Other")
    message = shop.outbound(Channel.WHATSAPP).model_copy(update={"tenant_id": other_tenant})
    await shop.sender.on_outbound(message)
    assert shop.graph.to(message.customer_id) == []
    assert shop.row(message.event_id).error == "channel account not found for tenant"
    [handoff] = shop.outbox(message, HANDOFF_COMMANDS)  # the customer got nothing: a person is asked
    assert "gone" in handoff["note"]


async def test_a_message_the_channel_refuses_asks_for_a_person(shop: Shop) -> None:
    """Not the token nor the window, the message itself (a recipient the channel does not know, say): the customer
    is left without it, so a person is asked, as for every other refusal."""
    message = shop.outbound(Channel.WHATSAPP)
    shop.customer_wrote(message, hours_ago=1)
    shop.graph.script(
        Scripted(400, {"error": {"message": "Recipient phone number not in allowed list", "code": 131030}})
    )
    await shop.sender.on_outbound(message)
    assert shop.row(message.event_id).status == "failed"
    [handoff] = shop.outbox(message, HANDOFF_COMMANDS)
    assert (handoff["reason"], "refused the message" in handoff["note"]) == ("channel_window_closed", True)


async def test_the_access_token_never_reaches_a_log_record(shop: Shop, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    token = shop.tokens[Channel.WHATSAPP]
    ok, refused, limited = (shop.outbound(Channel.WHATSAPP) for _ in range(3))
    for message in (ok, refused, limited):
        shop.customer_wrote(message, hours_ago=1)
    await shop.sender.on_outbound(ok)
    shop.graph.script(token_error(token))
    await shop.sender.on_outbound(refused)
    shop.graph.script(RATE_LIMITED)
    with pytest.raises(SendUnavailable) as raised:
        await shop.sender.on_outbound(limited)
    assert token not in str(raised.value)
    assert caplog.records, "expected the sender to log something"
    formatter = JsonFormatter()
    for record in caplog.records:
        assert token not in formatter.format(record)
        assert token not in repr(record.__dict__)


async def test_a_send_whose_earlier_attempt_stopped_mid_way_is_not_sent_again_and_a_person_is_asked(
    shop: Shop,
) -> None:
    message = shop.outbound(Channel.WHATSAPP)
    shop.customer_wrote(message, hours_ago=1)
    # A worker claimed it and died before recording what the Graph API said: it may have reached the customer.
    assert begin_attempt(shop.engine, message, parts=0) is not None
    await shop.sender.on_outbound(message)
    await shop.sender.on_outbound(message)
    assert shop.graph.to(message.customer_id) == []
    row = shop.row(message.event_id)
    assert (row.status, row.error.startswith("delivery in doubt")) == ("failed", True)
    [delivery] = shop.outbox(message, CHANNEL_DELIVERY)
    assert delivery["state"] == "failed"
    [handoff] = shop.outbox(message, HANDOFF_COMMANDS)
    assert (handoff["type"], handoff["reason"], handoff["customer_id"]) == (
        "request",
        "delivery_in_doubt",
        message.customer_id,
    )


@pytest.mark.parametrize("hang_up", [False, True], ids=["no-answer", "hung-up"])
async def test_a_request_that_got_no_answer_is_in_doubt_and_never_posted_again(
    shop: Shop, redis: Redis, hang_up: bool
) -> None:
    message = shop.outbound(Channel.MESSENGER)
    shop.customer_wrote(message, hours_ago=1)
    async with BrokenGraph(hang_up=hang_up) as graph:
        client = GraphClient(graph.base_url, timeout_seconds=0.5)
        limiter = SendRateLimiter(redis, rate_per_second=50.0, burst=20)
        sender = Sender(engine=shop.engine, redis=redis, graph=client, limiter=limiter)
        # The request reached the server and no answer came: a person is asked at once, nothing is retried.
        assert await sender.on_outbound(message) is None
        assert await sender.on_outbound(message) is Handled.DUPLICATE
        await client.close()
    assert graph.requests == 1
    assert shop.row(message.event_id).status == "failed"
    [handoff] = shop.outbox(message, HANDOFF_COMMANDS)
    assert handoff["reason"] == "delivery_in_doubt"


async def test_a_send_that_found_no_free_connection_in_time_was_not_sent(shop: Shop, redis: Redis) -> None:
    """Every pooled connection is busy with a request that gets no answer: the next send gives up waiting for
    one. Nothing of it left, so its claim is released and its retry sends (not a person asked)."""
    first, second = shop.outbound(Channel.WHATSAPP), shop.outbound(Channel.WHATSAPP)
    for message in (first, second):
        shop.customer_wrote(message, hours_ago=1)
    async with BrokenGraph(hang_up=False) as graph:
        client = GraphClient(graph.base_url, timeout_seconds=5, connect_seconds=0.2, connections=1)
        limiter = SendRateLimiter(redis, rate_per_second=50.0, burst=20)
        sender = Sender(engine=shop.engine, redis=redis, graph=client, limiter=limiter)
        hanging = asyncio.create_task(sender.on_outbound(first))
        for _ in range(200):  # until the first request holds the only connection
            await asyncio.sleep(0.01)
            if graph.requests:
                break
        with pytest.raises(SendUnavailable) as raised:
            await sender.on_outbound(second)
        assert not isinstance(raised.value, SendInDoubt)
        assert graph.requests == 1
        hanging.cancel()
        with pytest.raises(asyncio.CancelledError):
            await hanging
        await client.close()
    assert shop.row(second.event_id).status == "retrying"
    # Cancelled mid-post: the first may have reached Meta, so its claim stays in doubt.
    assert shop.row(first.event_id).status == "sending"
    await shop.sender.on_outbound(second)
    assert len(shop.graph.accepted(second.customer_id)) == 1
    assert shop.row(second.event_id).status == "sent"


async def test_a_connection_refused_releases_the_claim_so_the_retry_sends(shop: Shop, redis: Redis) -> None:
    message = shop.outbound(Channel.INSTAGRAM)
    shop.customer_wrote(message, hours_ago=1)
    # Nothing listens on port 9 here: the request never leaves, so Meta cannot have it.
    client = GraphClient("http://127.0.0.1:9")
    limiter = SendRateLimiter(redis, rate_per_second=50.0, burst=20)
    sender = Sender(engine=shop.engine, redis=redis, graph=client, limiter=limiter)
    with pytest.raises(SendUnavailable) as raised:
        await sender.on_outbound(message)
    assert not isinstance(raised.value, SendInDoubt)
    await client.close()
    assert shop.row(message.event_id).status == "retrying"
    await shop.sender.on_outbound(message)
    assert len(shop.graph.accepted(message.customer_id)) == 1
    assert shop.row(message.event_id).status == "sent"


async def test_every_request_names_the_send_it_belongs_to(shop: Shop) -> None:
    whatsapp = shop.outbound(Channel.WHATSAPP)
    messenger = shop.outbound(Channel.MESSENGER, image_url=PICTURE)
    for message in (whatsapp, messenger):
        shop.customer_wrote(message, hours_ago=1)
        await shop.sender.on_outbound(message)
    [wa] = shop.graph.accepted(whatsapp.customer_id)
    assert wa.json["biz_opaque_callback_data"] == str(whatsapp.event_id)
    image, text = shop.graph.accepted(messenger.customer_id)
    # Each request names the message's `ingest_sends` row, claimed before the first went out; a part adds its index.
    assert image.json["message"]["metadata"] == f"{messenger.event_id}:0"
    assert text.json["message"]["metadata"] == str(messenger.event_id)
    assert (shop.row(part_id(messenger, 0)).status, shop.row(messenger.event_id).status) == ("sent", "sent")


async def test_a_part_that_went_out_but_could_not_be_recorded_is_never_posted_again(
    shop: Shop, monkeypatch: pytest.MonkeyPatch
) -> None:
    message = shop.outbound(Channel.MESSENGER, image_url=PICTURE)
    shop.customer_wrote(message, hours_ago=1)

    def database_gone(*_: Any) -> None:
        raise RuntimeError("database gone")

    monkeypatch.setattr(sender_module, "record_part", database_gone)
    await shop.sender.on_outbound(message)
    monkeypatch.undo()
    assert await shop.sender.on_outbound(message) is Handled.DUPLICATE
    # The image reached the customer once; the text after it is given to a person, not posted blind.
    assert [r.json["message"].get("metadata") for r in shop.graph.to(message.customer_id)] == [f"{message.event_id}:0"]
    assert shop.row(message.event_id).status == "failed"
    [handoff] = shop.outbox(message, HANDOFF_COMMANDS)
    assert handoff["reason"] == "delivery_in_doubt"


class Stuck:
    """A rate limiter with no tokens left: `acquire` waits until the task is cancelled."""

    async def acquire(self, _account: str, _hold: Hold | None = None) -> bool:
        await asyncio.Event().wait()
        return True


async def test_a_send_cancelled_before_its_post_is_released_not_left_in_doubt(shop: Shop, redis: Redis) -> None:
    message = shop.outbound(Channel.WHATSAPP)
    shop.customer_wrote(message, hours_ago=1)
    # It never posts, so its Graph client never opens a connection.
    graph = GraphClient(shop.graph.base_url)
    stuck = Sender(engine=shop.engine, redis=redis, graph=graph, limiter=cast(SendRateLimiter, Stuck()))
    task = asyncio.create_task(stuck.on_outbound(message))
    for _ in range(200):  # until the claim is taken and the send waits for a token
        await asyncio.sleep(0.01)
        if shop.row_or_none(message.event_id) is not None:
            break
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert shop.row(message.event_id).status == "retrying"
    await shop.sender.on_outbound(message)
    assert len(shop.graph.accepted(message.customer_id)) == 1
    assert shop.row(message.event_id).status == "sent"


async def test_a_send_cancelled_while_its_claim_commits_is_released_not_left_in_doubt(
    shop: Shop, redis: Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stop comes while the claim's transaction runs in its thread: the claim commits, nothing is posted."""
    message = shop.outbound(Channel.WHATSAPP)
    shop.customer_wrote(message, hours_ago=1)
    started, finish = threading.Event(), threading.Event()

    def slow_claim(engine: Engine, claimed: OutboundMessage, *, parts: int) -> Attempt | None:
        started.set()
        finish.wait(10)
        return begin_attempt(engine, claimed, parts=parts)

    monkeypatch.setattr(sender_module, "begin_attempt", slow_claim)
    task = asyncio.create_task(shop.sender.on_outbound(message))
    await asyncio.to_thread(started.wait, 10)
    task.cancel()
    await asyncio.sleep(0.05)
    finish.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert shop.row(message.event_id).status == "retrying"
    monkeypatch.undo()
    await shop.sender.on_outbound(message)
    assert len(shop.graph.accepted(message.customer_id)) == 1
    assert shop.row(message.event_id).status == "sent"
    assert shop.outbox(message, HANDOFF_COMMANDS) == []


async def test_a_redirect_is_no_acceptance_and_is_not_followed(shop: Shop) -> None:
    message = shop.outbound(Channel.WHATSAPP)
    shop.customer_wrote(message, hours_ago=1)
    shop.graph.script(Scripted(307, {}))
    await shop.sender.on_outbound(message)
    assert [r.status for r in shop.graph.to(message.customer_id)] == [307]
    row = shop.row(message.event_id)
    assert (row.status, row.provider_message_id) == ("failed", None)
    assert shop.sent_log(message) == []


async def test_a_send_after_the_graph_client_closed_is_released_for_a_retry(shop: Shop, redis: Redis) -> None:
    message = shop.outbound(Channel.MESSENGER)
    shop.customer_wrote(message, hours_ago=1)
    client = GraphClient(shop.graph.base_url)
    await client.close()  # the service is stopping
    sender = Sender(
        engine=shop.engine, redis=redis, graph=client, limiter=SendRateLimiter(redis, rate_per_second=50.0, burst=20)
    )
    with pytest.raises(SendUnavailable) as raised:
        await sender.on_outbound(message)
    assert not isinstance(raised.value, SendInDoubt)
    assert shop.graph.to(message.customer_id) == []
    assert shop.row(message.event_id).status == "retrying"


async def test_two_attempts_that_both_read_retrying_do_not_both_claim(shop: Shop) -> None:
    """A redelivery on another replica reads `retrying` at the same moment as this one: only one may post."""
    if shop.engine.dialect.name != "postgresql":
        pytest.skip("SQLite runs the two transactions one after the other")
    message = shop.outbound(Channel.WHATSAPP)
    shop.customer_wrote(message, hours_ago=1)
    assert begin_attempt(shop.engine, message, parts=0) is not None
    release(shop.engine, message)
    elsewhere: list[Attempt | None] = []

    def claimed_meanwhile(*args: Any) -> None:
        statement: str = args[2]
        if statement.lstrip().startswith("SELECT ingest_sends.status") and not elsewhere:
            elsewhere.append(None)  # before the nested claim, whose own read comes through here too
            elsewhere[0] = begin_attempt(shop.engine, message, parts=0)

    event.listen(shop.engine, "after_cursor_execute", claimed_meanwhile)
    try:
        ours = begin_attempt(shop.engine, message, parts=0)
    finally:
        event.remove(shop.engine, "after_cursor_execute", claimed_meanwhile)
    [theirs] = elsewhere
    assert theirs is not None and not theirs.busy and not theirs.in_doubt
    assert ours is not None and ours.busy


async def test_an_attempt_still_at_work_when_another_settled_it_does_not_overwrite_that(shop: Shop) -> None:
    """A handler outlasted its partition's revoke; the redelivery to the next owner found the claim and called the
    message in doubt (a person was asked). The first attempt's late `sent` does not turn that round, nor tell
    anyone a second, contradicting outcome."""
    message = shop.outbound(Channel.WHATSAPP)
    shop.customer_wrote(message, hours_ago=1)
    assert begin_attempt(shop.engine, message, parts=0) is not None
    await shop.sender.on_outbound(message)  # in doubt
    record_outcome(shop.engine, message, Outcome("sent", provider_id="wamid.late"))
    row = shop.row(message.event_id)
    assert (row.status, row.provider_message_id) == ("failed", None)
    assert [d["state"] for d in shop.outbox(message, CHANNEL_DELIVERY)] == ["failed"]
