"""When a person hands a conversation back (handoff `resolved`), the AI's memory learns what they said and why."""

import logging
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from sqlalchemy import Engine

from schemas.handoff import HandoffEvent, HandoffResolved
from sellmesh.db import in_thread
from services.agent import memory
from services.handoff.query import InboxMessage, handoff_transcript

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


class Handback:
    def __init__(self, *, engine: Engine, redis: Redis) -> None:
        self.engine = engine
        self.redis = redis

    async def on_handoff_event(self, event: HandoffEvent) -> None:
        if not isinstance(event, HandoffResolved):
            return
        transcript = await in_thread(handoff_transcript, self.engine, event.tenant_id, event.ticket_id)
        if transcript is None:
            log.warning("resolved handoff has no ticket here", extra={"ticket_id": event.ticket_id})
            return
        turns = handback_turns(transcript.messages, reason=transcript.reason, note=event.note)
        resumed = await memory.resume_after_handoff(
            self.redis, event.tenant_id, event.conversation_id, ticket_id=event.ticket_id, turns=turns
        )
        log.info("conversation handed back to the ai", extra={"ticket_id": event.ticket_id, "resumed": resumed})
