"""Idempotency keys on command requests: an owner retrying a request whose answer never came (a timeout, a 503
after the broker took the command) sends the same command again, never a second one.

The tenant, the key and the command's place among those the request sends (take-over sends two) give each
command its id, so a retry's commands are the ones the first request recorded, and the services already apply a
command id once. What the request asked (method, path, body) is fingerprinted: the same key with another
request is refused, whatever command it would send.
"""

import hashlib
import json
import uuid
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Header, Request

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


@dataclass
class Idempotent:
    """A request sent under an Idempotency-Key."""

    key: str
    fingerprint: str  # what was asked: a retry under the same key must ask the same
    sent: int = field(default=0)  # commands the request has sent so far

    def next_command_id(self, tenant_id: uuid.UUID) -> uuid.UUID:
        position, self.sent = self.sent, self.sent + 1
        return derived_id("gateway-idempotency", tenant_id, self.key, position)


async def idempotent(request: Request, key: IdempotencyKey = None) -> Idempotent | None:
    """The request's key and fingerprint; None without a key. The body counts as JSON where it is JSON, so a
    retry that spaces or orders its fields differently is the same request."""
    if key is None:
        return None
    body = await request.body()  # read once by FastAPI already, and kept
    try:
        asked = json.dumps(json.loads(body), sort_keys=True) if body else ""
    except ValueError:
        asked = body.hex()
    fingerprint = json.dumps([request.method, request.url.path, asked])
    return Idempotent(key, hashlib.sha256(fingerprint.encode()).hexdigest())


Idempotency = Annotated[Idempotent | None, Depends(idempotent)]
