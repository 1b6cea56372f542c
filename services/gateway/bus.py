"""Publishing commands for a person: the envelope, the pending outcome row, then the message."""

import hashlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import Engine

from schemas.envelope import Actor, ActorKind, Envelope
from sellmesh.db import in_thread
from sellmesh.service import new_id, now
from services.gateway.auth import Principal
from services.gateway.idempotency import Idempotent
from services.gateway.outcomes import NOT_PUBLISHED, Decision, KeyReused, decide, mark_published, record_pending
from services.gateway.problems import ProblemError

log = logging.getLogger(__name__)

Publish = Callable[[str, Envelope, str], Awaitable[None]]


def envelope_for(principal: Principal) -> dict[str, Any]:
    """Envelope and actor fields of a command a person sends now; a gateway command starts its own chain."""
    command_id = new_id()
    return {
        "event_id": command_id,
        "tenant_id": principal.tenant_id,
        "correlation_id": command_id,
        "occurred_at": now(),
        "producer": "gateway",
        "actor": Actor(kind=ActorKind(principal.role), id=principal.actor_id),
    }


class CommandBus:
    def __init__(self, engine: Engine, publish: Publish) -> None:
        self.engine = engine
        self.publish = publish

    async def send(
        self, topic: str, command: Envelope, *, key: str, target: str, idempotency: Idempotent | None = None
    ) -> uuid.UUID:
        """Record the command as pending (so its outcome event always finds a row), then publish it.

        Under an idempotency key the command takes the id the key gives it: a retry publishes the command the first
        request recorded unless the broker is known to have it, and otherwise only answers with its id."""
        actor: Actor = command.actor  # type: ignore[attr-defined]
        command_type: str = command.type  # type: ignore[attr-defined]
        fingerprint = None
        if idempotency is not None:
            command_id = idempotency.next_command_id(command.tenant_id)
            command = command.model_copy(update={"event_id": command_id, "correlation_id": command_id})
            # Whoever asks is part of what is asked: another team member's retry under this key is refused.
            asked = f"{idempotency.fingerprint}|{actor.kind.value}|{actor.id}"
            fingerprint = hashlib.sha256(asked.encode()).hexdigest()
        try:
            to_publish = await in_thread(
                lambda: record_pending(
                    self.engine,
                    command_id=command.event_id,
                    tenant_id=command.tenant_id,
                    topic=topic,
                    command_type=command_type,
                    target=target,
                    actor_kind=actor.kind.value,
                    actor_id=actor.id,
                    request_hash=fingerprint,
                )
            )
        except KeyReused:
            raise ProblemError(
                422, "this Idempotency-Key was sent with another request", kind="idempotency-key-reused"
            ) from None
        if not to_publish:
            return command.event_id
        try:
            await self.publish(topic, command, key)
        except Exception as exc:
            log.exception("command not published", extra={"command_id": str(command.event_id)})
            failed = Decision(command.event_id, "rejected", NOT_PUBLISHED, NOT_PUBLISHED, "the broker refused it")
            await in_thread(lambda: decide(self.engine, command.tenant_id, failed, at=now()))
            raise ProblemError(
                503,
                "the command could not be queued; a retry with the same Idempotency-Key is the same command",
                kind="unavailable",
            ) from exc
        await in_thread(lambda: mark_published(self.engine, command.event_id, at=now()))
        return command.event_id
