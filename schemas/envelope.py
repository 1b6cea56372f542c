"""The envelope every message carries, and the small value types shared by all topics."""

from enum import StrEnum
from typing import Annotated
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

# Ids coming from outside (Meta, Stripe) are opaque strings; bound them so a hostile
# payload cannot push megabytes through every topic.
# No NUL character in any free text: PostgreSQL's text types cannot hold one, so a message carrying it would be
# accepted here and fail at every write that follows, for ever (its command never answered).
NO_NUL = r"^[^\x00]*$"
ExternalId = Annotated[str, StringConstraints(min_length=1, max_length=256, pattern=NO_NUL)]
ShortText = Annotated[str, StringConstraints(max_length=500, pattern=NO_NUL)]
MessageText = Annotated[str, StringConstraints(max_length=4096, pattern=NO_NUL)]
CurrencyCode = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
Sku = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]


class Frozen(BaseModel):
    """Base for every wire model: immutable, strict, and unknown fields are an error."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class Money(Frozen):
    """An amount in integer minor units (cents) of one ISO 4217 currency."""

    amount_minor: Annotated[int, Field(ge=0, le=10**12)]
    currency: CurrencyCode


class Channel(StrEnum):
    WHATSAPP = "whatsapp"
    MESSENGER = "messenger"
    INSTAGRAM = "instagram"


class ActorKind(StrEnum):
    """Who asks for a change; services check each command against this."""

    AI = "ai"
    OWNER = "owner"
    STAFF = "staff"
    SYSTEM = "system"
    CUSTOMER = "customer"


class Actor(Frozen):
    kind: ActorKind
    id: Annotated[str, StringConstraints(max_length=128)] = ""


class Envelope(Frozen):
    """Fields every message on every topic carries (DESIGN rule 3).

    `correlation_id` is the inbound message or request that started the chain;
    `causation_id` is the message this one directly answers.
    """

    event_id: UUID
    tenant_id: UUID
    correlation_id: UUID
    causation_id: UUID | None = None
    occurred_at: AwareDatetime
    producer: Annotated[str, StringConstraints(min_length=1, max_length=64)]
