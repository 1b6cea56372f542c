"""The sender: channel.outbound.v1 → the Graph API, within Meta's window, rate limits and conversation mode.

An outbound event id is sent at most once: a finished one (sent, refused, failed) is skipped
on replay, and one whose earlier attempt stopped mid-send is never posted again (it may have
arrived; a person is asked instead). Rate limits, 5xx and refused connections raise to the
subscriber wrapper, which retries with backoff; a permanent refusal becomes a `failed` delivery,
and when a person is needed to reach the customer (window closed, token refused) a handoff
request too.
"""

import asyncio
import logging
import uuid
from collections.abc import Callable
from datetime import datetime

from redis.asyncio import Redis
from sqlalchemy import Engine

from schemas.channel import Author, OutboundMessage
from schemas.handoff import HandoffReason
from sellmesh.db import in_thread, record_durably
from sellmesh.metrics import INGEST_SENDS
from sellmesh.service import now
from sellmesh.subscriber import Handled
from services.gateway.query import ChannelAccountView, account_by_id_async
from services.handoff.query import HUMAN, conversation_mode, conversation_mode_key
from services.ingest.graph_client import (
    GraphClient,
    RejectKind,
    SendInDoubt,
    SendRejected,
    SendTarget,
    SendUnavailable,
)
from services.ingest.graph_request import GraphRequest, build_requests, with_send_id
from services.ingest.ratelimit import Hold, SendRateLimiter
from services.ingest.send_log import (
    Attempt,
    Outcome,
    begin_attempt,
    give_up,
    record_outcome,
    record_part,
    release,
    send_tag,
)
from services.ingest.window import Refuse, SendWithTag, decide_send

log = logging.getLogger(__name__)

# Sending again could give the customer the same message twice; a person decides instead.
IN_DOUBT = Outcome(
    "failed",
    "delivery in doubt: an earlier attempt stopped after the request may have reached the channel",
    handoff_note="a reply may or may not have reached the customer (the send stopped mid-way): please check and answer",
    handoff_reason=HandoffReason.DELIVERY_IN_DOUBT,
)

IN_HUMAN_MODE = Outcome("refused", "conversation is in human mode")


class SendBusy(SendUnavailable):
    """Another attempt claimed the message first: the subscriber retries, and finds it finished or in doubt."""


class PersonOwns(Exception):
    """Raised before anything is posted: a person owns the conversation, so the AI's message is refused."""


# Every refusal leaves the customer without the message: a person is asked to reach them, whatever the reason.
HANDOFF_NOTES = {
    RejectKind.TOKEN: "the channel refused the account's access token: reconnect the account",
    RejectKind.WINDOW: "the channel's messaging window is closed for this customer",
    RejectKind.REQUEST: "the channel refused the message, so the customer did not get it",
}


class Sender:
    def __init__(
        self,
        *,
        engine: Engine,
        redis: Redis,
        graph: GraphClient,
        limiter: SendRateLimiter,
        clock: Callable[[], datetime] = now,
    ) -> None:
        self.engine = engine
        self.redis = redis
        self.graph = graph
        self.limiter = limiter
        self.clock = clock
        # Sends whose first post has begun: a cancellation before that releases the claim.
        self._posting: set[uuid.UUID] = set()

    async def on_outbound(self, message: OutboundMessage) -> Handled | None:
        # Requests after the first go out as parts of their own; their count does not depend on the tag.
        parts = len(build_requests(message)) - 1
        attempt = await self._claim(message, parts)
        if attempt is None:
            return Handled.DUPLICATE  # finished on an earlier delivery of this event
        if attempt.busy:
            # Another attempt claimed it a moment ago: the retry finds it finished, or in doubt.
            raise SendBusy("another attempt claimed this message first")
        if attempt.in_doubt:
            outcome = IN_DOUBT
        else:
            try:
                outcome = await self._attempt(message, attempt)
            except SendInDoubt:
                outcome = IN_DOUBT  # a request may have reached the channel: a person decides, not a retry
            except asyncio.CancelledError:
                # Stopped mid-way: in doubt only if a post had begun; before that, nothing can have left.
                if message.event_id not in self._posting:
                    await asyncio.shield(record_durably(release, self.engine, message))
                raise
            except Exception:
                # Nothing reached the channel on this try, so the retry may send.
                await record_durably(release, self.engine, message)
                raise
            finally:
                self._posting.discard(message.event_id)
        # The Graph API may already have the message: a database blip must not make a retry send it again.
        await record_durably(record_outcome, self.engine, message, outcome)
        INGEST_SENDS.labels(message.channel.value, message.author.value, outcome.status).inc()
        if outcome.status != "sent":
            log.info("outbound message not sent", extra={"status": outcome.status, "error": outcome.error})
        return None

    async def on_give_up(self, message: OutboundMessage, error: BaseException) -> None:
        """After the message went to the DLQ: the customer must not be left with neither a reply nor a person."""
        if not await record_durably(give_up, self.engine, message, error):
            return  # a post may have gone out (its claim is still `sending`), or another attempt settled it
        INGEST_SENDS.labels(message.channel.value, message.author.value, "failed").inc()
        log.warning("outbound message given up; a person is asked", extra={"error": repr(error)[:300]})

    async def _claim(self, message: OutboundMessage, parts: int) -> Attempt | None:
        """The claim, as `begin_attempt` took it. A cancellation (a stop, a revoked partition) that comes while the
        claim's transaction runs cannot stop it; a claim it committed for this attempt is released, since nothing
        was posted, so the next delivery sends instead of finding it in doubt and asking for a person."""

        async def release_unposted(claimed: Attempt | None) -> None:
            if claimed is not None and not claimed.busy and not claimed.in_doubt:
                await record_durably(release, self.engine, message)

        return await in_thread(lambda: begin_attempt(self.engine, message, parts=parts), undo=release_unposted)

    async def _attempt(self, message: OutboundMessage, attempt: Attempt) -> Outcome:
        # Second lock of two (the agent is the first): a person owns this conversation. A message on its way
        # out learns it from its first send token (one Redis step); one stopped here first must learn it too,
        # since a person in charge outranks every other reason not to send.
        account_id = _account_id(message)
        account = await account_by_id_async(self.engine, account_id) if account_id is not None else None
        if account is None or account.tenant_id != message.tenant_id:
            gone = Outcome(
                "failed",
                "channel account not found for tenant",
                handoff_note="the channel account this conversation came in on is gone: the customer got no reply",
            )
            return await self._unless_person_owns(message, gone)
        decision = decide_send(
            channel=message.channel,
            author=message.author,
            last_inbound_at=attempt.last_inbound_at,
            now=self.clock(),
            has_template=message.template is not None,
        )
        if isinstance(decision, Refuse):
            return await self._unless_person_owns(
                message,
                Outcome(decision.status, decision.detail, handoff_note=decision.handoff_note(message.author)),
            )
        requests = build_requests(message, tag=decision.tag if isinstance(decision, SendWithTag) else None)
        try:
            provider_id = await self._deliver(message, account, requests, attempt)
        except PersonOwns:
            return IN_HUMAN_MODE
        except SendRejected as exc:
            return Outcome(
                "failed",
                str(exc),
                error_code=None if exc.code is None else str(exc.code),
                handoff_note=f"{HANDOFF_NOTES[exc.kind]} ({exc})" if exc.kind in HANDOFF_NOTES else None,
            )
        return Outcome("sent", provider_id=provider_id, kind=requests[-1].kind)

    async def _unless_person_owns(self, message: OutboundMessage, outcome: Outcome) -> Outcome:
        if (
            message.author is Author.AI
            and await conversation_mode(self.redis, message.tenant_id, message.conversation_id) == HUMAN
        ):
            return IN_HUMAN_MODE
        return outcome

    async def _deliver(
        self, message: OutboundMessage, account: ChannelAccountView, requests: list[GraphRequest], attempt: Attempt
    ) -> str | None:
        """Post every request not already sent on an earlier attempt; returns the last one's message id."""
        last = len(requests) - 1
        target = SendTarget(
            channel=message.channel,
            account_external_id=account.external_id,
            customer_id=message.customer_id,
            access_token=account.access_token,
        )
        provider_id: str | None = None
        # Checked with this attempt's first token only, before it posts anything: once a message is going out
        # its parts follow. A retry after a partial send checks again before its first remaining part, so a
        # person who took over in between stops the rest (recorded `refused`).
        hold = Hold(conversation_mode_key(message.tenant_id, message.conversation_id), HUMAN)
        first = message.author is Author.AI
        for index, request in enumerate(requests):
            if index in attempt.sent_parts:
                continue
            if not await self.limiter.acquire(str(account.id), hold if first else None):
                raise PersonOwns
            first = False
            self._posting.add(message.event_id)
            tagged = with_send_id(request, message.channel, send_tag(message, index, last=last))
            provider_id = await self.graph.post(target, tagged)
            if index < last:
                try:
                    await record_durably(record_part, self.engine, message, index, request.kind, provider_id)
                except Exception as exc:
                    # The part went out; releasing the claim would let the retry post it again.
                    raise SendInDoubt(f"part {index} sent but not recorded: {type(exc).__name__}") from exc
        return provider_id


def _account_id(message: OutboundMessage) -> uuid.UUID | None:
    """The channel account the message names; None for an id no account can have, which no retry would change: it
    is failed at once (and a person asked) instead of spending its attempts while the partition waits."""
    try:
        return uuid.UUID(message.channel_account_id)
    except ValueError:
        return None
