"""Idempotency keys on command requests: an owner retrying a request whose answer never came (a timeout, a 503
after the broker took the command) sends the same command again, never a second one.

The key, the tenant and the command type give the command its id, so the retry's command is the one the first
request recorded; the services already apply a command id once. The same key with another request is refused.
"""

import hashlib
import json
from typing import Annotated, TypeVar

from fastapi import Header

from schemas.envelope import Envelope
from sellmesh.service import derived_id

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[!-~]+$",  # printable ASCII, no spaces
        description="Send the same key again to retry this request: it is the same command, never a second one",
    ),
]

# Set per command, not per request: what makes two requests the same is in the rest of the command.
_PER_COMMAND = frozenset({"event_id", "correlation_id", "causation_id", "occurred_at"})

E = TypeVar("E", bound=Envelope)


def keyed(command: E, idempotency_key: str) -> E:
    """The command under the id its key gives it. A request that sends several commands (take-over) gives each its
    own id through its type."""
    command_type: str = command.type  # type: ignore[attr-defined]
    command_id = derived_id("gateway-idempotency", command.tenant_id, command_type, idempotency_key)
    return command.model_copy(update={"event_id": command_id, "correlation_id": command_id})


def request_hash(topic: str, key: str, command: Envelope) -> str:
    """What the request asked for, as a fingerprint: a retry under the same key must ask for the same."""
    asked = {"topic": topic, "key": key, "command": command.model_dump(mode="json", exclude=set(_PER_COMMAND))}
    return hashlib.sha256(json.dumps(asked, sort_keys=True).encode()).hexdigest()
