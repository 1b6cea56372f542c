"""When a person hands a conversation back (handoff `resolved`), the AI's memory learns what they said and why, and
the customer's messages nobody answered become the AI's next turn."""

import asyncio
import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import Engine

from schemas.channel import InboundMessage, TextContent
from schemas.envelope import Channel
from schemas.handoff import HandoffEvent, HandoffResolved
from sellmesh.db import in_thread
from sellmesh.service import derived_id, now
from services.agent import memory
from services.agent.burst import BurstBuffer
from services.handoff.query import (
    HUMAN,
    HandoffTranscript,
    InboxMessage,
    conversation_mode,
    handed_to_person,
    handoff_transcript,
)

PRODUCER = "agent"
# What the inbox writes, as `[kind]`, for a customer's message that carried no words.
WORDLESS_KINDS = frozenset(
    {"reaction", "image", "audio", "video", "file", "sticker", "story_mention", "location", "contacts", "unsupported"}
)
# The inbound message's own bound (MessageText).
TEXT_LIMIT = 4096

log = logging.getLogger(__name__)


def handback_turns(messages: Sequence[InboxMessage], *, reason: str, note: str) -> list[dict[str, Any]]:
    """The handoff as turns: the customer's words as theirs, the person's as the business's, then the note."""
    turns: list[dict[str, Any]] = []
    for message in messages:
        if message.author == "customer":
            turns.append({"role": "user", "content": message.text})
        elif message.author == "human":
            turns.append({"role": "assistant", "content": message.text})
    handed_back = f"A person from the team took this conversation over ({reason}) and has handed it back to you."
    if note:
        handed_back += f" Their note: {note}"
    turns.append({"role": "system", "content": handed_back})
    return turns


def waiting(messages: Sequence[InboxMessage]) -> list[InboxMessage]:
    """The customer's words after the person's last word: nobody answered them before the handback. A message
    without words (a reaction, a sticker: the inbox shows it as `[kind]`) asks for no answer of its own."""
    tail: list[InboxMessage] = []
    for message in messages:
        if message.author == "human":
            tail = []
        elif message.author == "customer" and not _placeholder(message.text):
            tail.append(message)
    return tail


def _placeholder(text: str) -> bool:
    return text.startswith("[") and text.endswith("]") and text[1:-1] in WORDLESS_KINDS


def waiting_message(
    event: HandoffResolved, transcript: HandoffTranscript, unanswered: Sequence[InboxMessage]
) -> InboundMessage:
    """The unanswered messages as one inbound message of the conversation, for the AI's next turn. Its id derives
    from the ticket, so a redelivered `resolved` buffers it once, and it is not among the messages the person had
    before them (`Responder._left_to_the_ai`)."""
    text = "\n".join(m.text for m in unanswered)[:TEXT_LIMIT]
    sent_at = max(event.occurred_at, unanswered[-1].at + timedelta(milliseconds=1))
    return InboundMessage(
        event_id=derived_id(event.tenant_id, transcript.ticket_id, "unanswered"),
        tenant_id=event.tenant_id,
        correlation_id=event.correlation_id,
        causation_id=event.event_id,
        occurred_at=now(),
        producer=PRODUCER,
        conversation_id=event.conversation_id,
        channel=Channel(transcript.channel),
        channel_account_id=transcript.channel_account_id,
        customer_id=transcript.customer_id,
        message_id=f"handback:{transcript.ticket_id}",
        sent_at=sent_at,
        content=TextContent(text=text),
    )


class Handback:
    def __init__(
        self, *, engine: Engine, redis: Redis, buffer: BurstBuffer | None = None, mode_wait_seconds: float = 1.0
    ) -> None:
        self.engine = engine
        self.redis = redis
        self.buffer = buffer
        self.mode_wait_seconds = mode_wait_seconds

    async def on_handoff_event(self, event: HandoffEvent) -> None:
        if not isinstance(event, HandoffResolved):
            return
        transcript = await in_thread(handoff_transcript, self.engine, event.tenant_id, event.ticket_id)
        if transcript is None:
            log.warning("resolved handoff has no ticket here", extra={"ticket_id": event.ticket_id})
            return
        waiting_words = waiting(transcript.messages) if self.buffer is not None and transcript.channel else []
        # The waiting words become the AI's next turn, not memory: they would be in its prompt twice.
        answered_later = {id(message) for message in waiting_words}
        told = [message for message in transcript.messages if id(message) not in answered_later]
        turns = handback_turns(told, reason=transcript.reason, note=event.note)
        resumed = await memory.resume_after_handoff(
            self.redis, event.tenant_id, event.conversation_id, ticket_id=event.ticket_id, turns=turns
        )
        log.info("conversation handed back to the ai", extra={"ticket_id": event.ticket_id, "resumed": resumed})
        if waiting_words and self.buffer is not None and await self._mirror_handed_back(event):
            # The handed set is written with the mirror, after the commit that published this event: read only
            # once the mirror says the conversation is back with the AI, or it reads as empty.
            unanswered = await self._unanswered(event, waiting_words)
            if unanswered:
                await self._answer_later(event, transcript, unanswered, self.buffer)

    async def _unanswered(self, event: HandoffResolved, found: Sequence[InboxMessage]) -> list[InboxMessage]:
        """What the person had before them at the handback (handoff's `handed` set), and what a turn of ours left
        to the person while they owned the conversation (`memory.leave_to_person`): handoff's inbox may record
        such a message only after the resolve, and no turn of its own will answer it. Any other message that
        reached the inbox after the handback is answered by its own turn, and must not be answered here too."""
        ids = [m.event_id for m in found if m.event_id is not None]
        theirs = await handed_to_person(self.redis, event.tenant_id, event.conversation_id, ids)
        theirs |= await memory.left_to_person(self.redis, event.tenant_id, event.conversation_id, ids)
        return [m for m in found if m.event_id in theirs]

    async def _mirror_handed_back(self, event: HandoffResolved) -> bool:
        """Wait, briefly, for handoff's mirror write after the resolve's commit (a turn claimed before it would
        drop the messages for good). False when the conversation still reads `human`: a person took it again since
        (a new request, read here late), and the words are theirs now. Briefly: the write follows the commit by one
        Redis call, and this wait holds the agent's consumer meanwhile."""
        deadline = asyncio.get_running_loop().time() + self.mode_wait_seconds
        while await conversation_mode(self.redis, event.tenant_id, event.conversation_id) == HUMAN:
            if asyncio.get_running_loop().time() > deadline:
                log.warning("conversation with a person again since its handback; its waiting words are theirs")
                return False
            await asyncio.sleep(0.05)
        return True

    async def _answer_later(
        self,
        event: HandoffResolved,
        transcript: HandoffTranscript,
        unanswered: Sequence[InboxMessage],
        buffer: BurstBuffer,
    ) -> None:
        if await buffer.add(waiting_message(event, transcript, unanswered)):
            log.info("unanswered messages handed to the ai", extra={"messages": len(unanswered)})
