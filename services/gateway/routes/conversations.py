"""Conversations and the handoff inbox: read them, take one over, reply, resolve, and say who is available."""

import dataclasses
import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path, Query

from schemas.envelope import Channel, Envelope
from schemas.handoff import (
    AssignHandoff,
    HandoffReason,
    ReplyHandoff,
    RequestHandoff,
    ResolveHandoff,
    SetAvailability,
)
from schemas.topics import HANDOFF_COMMANDS
from sellmesh.db import in_thread
from sellmesh.service import now
from services.gateway.activity import ConversationView, conversation, recent_conversations
from services.gateway.auth import Principal
from services.gateway.bus import envelope_for
from services.gateway.context import Gateway
from services.gateway.conversation_models import (
    AvailabilityBody,
    Conversation,
    ConversationPage,
    Inbox,
    InboxTicket,
    Message,
    Messages,
    NoteBody,
    ReplyBody,
    TakeOver,
)
from services.gateway.idempotency import Idempotency, Idempotent
from services.gateway.models import Accepted
from services.gateway.problems import ProblemError
from services.handoff.query import open_inbox
from services.ingest.query import conversation_messages

ConversationPath = Annotated[str, Path(min_length=1, max_length=256, pattern=r"^[A-Za-z0-9._:-]+$")]


def router(gw: Gateway) -> APIRouter:
    api = gw.router("conversations")

    async def existing(principal: Principal, conversation_id: str) -> ConversationView:
        found = await in_thread(conversation, gw.engine, principal.tenant_id, conversation_id)
        if found is None:
            raise ProblemError(404, "conversation not found")
        return found

    @api.get("/inbox", response_model=Inbox)
    async def inbox(principal: Annotated[Principal, gw.require("conversations.read")]) -> Inbox:
        """Open handoff tickets with their recent messages, unread counts and waiting time."""
        entries = await in_thread(lambda: open_inbox(gw.engine, principal.tenant_id, now=now()))
        return Inbox(tickets=[InboxTicket.model_validate(dataclasses.asdict(entry)) for entry in entries])

    async def to_handoff(command: Envelope, *, about: str, idempotency: Idempotent | None) -> uuid.UUID:
        """Handoff commands are keyed by what they are about (a conversation, or a person's availability),
        which is also the target their outcome is recorded under."""
        return await gw.bus.send(HANDOFF_COMMANDS, command, key=about, target=about, idempotency=idempotency)

    @api.get("/conversations", response_model=ConversationPage)
    async def conversations(
        principal: Annotated[Principal, gw.require("conversations.read")],
        before: Annotated[datetime | None, Query(description="Pass `next_before` back for the next page")] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
    ) -> ConversationPage:
        """The tenant's conversations, most recently active first."""
        if before is not None and before.tzinfo is None:
            raise ProblemError(422, "before needs a time zone", kind="validation")
        rows = await in_thread(
            lambda: recent_conversations(gw.engine, principal.tenant_id, limit=limit + 1, before=before)
        )
        page = rows[:limit]
        return ConversationPage(
            conversations=[Conversation.model_validate(row, from_attributes=True) for row in page],
            next_before=page[-1].last_message_at if len(rows) > limit else None,
        )

    @api.get("/conversations/{conversation_id}/messages", response_model=Messages)
    async def messages(
        conversation_id: ConversationPath,
        principal: Annotated[Principal, gw.require("conversations.read")],
        before: Annotated[int | None, Query(ge=1, le=2**62)] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
    ) -> Messages:
        """The conversation's messages newest first; pass the last `id` as `before` for older ones."""
        await existing(principal, conversation_id)
        rows = await in_thread(
            lambda: conversation_messages(gw.engine, principal.tenant_id, conversation_id, limit=limit, before=before)
        )
        return Messages(messages=[Message.model_validate(row, from_attributes=True) for row in rows])

    @api.post("/conversations/{conversation_id}/take-over", response_model=TakeOver, status_code=202)
    async def take_over(
        conversation_id: ConversationPath,
        principal: Annotated[Principal, gw.require("conversations.take_over")],
        idempotency: Idempotency = None,
    ) -> TakeOver:
        """Open a handoff (or join the open one) and assign it to the caller: the AI stops answering."""
        found = await existing(principal, conversation_id)
        request = RequestHandoff(
            **envelope_for(principal),
            conversation_id=conversation_id,
            # The closest reason there is: a person of the business steps in by their own choice.
            reason=HandoffReason.HUMAN_REPLIED_ON_CHANNEL,
            channel=Channel(found.channel),
            channel_account_id=found.channel_account_id,
            customer_id=found.customer_id,
            note=f"taken over by team member {principal.actor_id}",
        )
        assign = AssignHandoff(**envelope_for(principal), conversation_id=conversation_id, staff_id=principal.actor_id)
        # Same key, sent in order: handoff sees the request before the assignment.
        first = await to_handoff(request, about=conversation_id, idempotency=idempotency)
        second = await to_handoff(assign, about=conversation_id, idempotency=idempotency)
        return TakeOver(request_command_id=first, assign_command_id=second)

    @api.post("/conversations/{conversation_id}/reply", response_model=Accepted, status_code=202)
    async def reply(
        conversation_id: ConversationPath,
        body: ReplyBody,
        principal: Annotated[Principal, gw.require("conversations.reply")],
        idempotency: Idempotency = None,
    ) -> Accepted:
        """Send a message as a person; handoff refuses it unless the conversation has an open ticket."""
        await existing(principal, conversation_id)
        command = ReplyHandoff(**envelope_for(principal), conversation_id=conversation_id, text=body.text)
        return Accepted(command_id=await to_handoff(command, about=conversation_id, idempotency=idempotency))

    @api.post("/conversations/{conversation_id}/resolve", response_model=Accepted, status_code=202)
    async def resolve(
        conversation_id: ConversationPath,
        body: NoteBody,
        principal: Annotated[Principal, gw.require("conversations.resolve")],
        idempotency: Idempotency = None,
    ) -> Accepted:
        """Close the open ticket with a note; the conversation goes back to the AI. With `ticket_id` (from the
        inbox), only that ticket: if it closed and another opened since, the command is rejected (`ticket_closed`)."""
        await existing(principal, conversation_id)
        command = ResolveHandoff(
            **envelope_for(principal), conversation_id=conversation_id, note=body.note, ticket_id=body.ticket_id
        )
        return Accepted(command_id=await to_handoff(command, about=conversation_id, idempotency=idempotency))

    @api.put("/me/availability", response_model=Accepted, status_code=202)
    async def availability(
        body: AvailabilityBody,
        principal: Annotated[Principal, gw.require("availability.set")],
        idempotency: Idempotency = None,
    ) -> Accepted:
        """Whether new handoff tickets may be assigned to the caller."""
        command = SetAvailability(**envelope_for(principal), staff_id=principal.actor_id, available=body.available)
        return Accepted(command_id=await to_handoff(command, about=principal.actor_id, idempotency=idempotency))

    return api
