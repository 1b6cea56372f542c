"""handoff.* topics: requests to bring a person in, and who is in charge of a conversation."""

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AwareDatetime, Field

from schemas.envelope import Actor, Channel, Envelope, ExternalId, MessageText, ShortText


class HandoffReason(StrEnum):
    CUSTOMER_ASKED = "customer_asked"
    LOW_CONFIDENCE = "low_confidence"
    GUARDRAIL = "guardrail"
    REJECTED_COMMAND = "rejected_command"
    QUOTA = "quota"
    COMPLAINT_OR_REFUND = "complaint_or_refund"
    PAYMENT_MISMATCH = "payment_mismatch"
    CHANNEL_WINDOW_CLOSED = "channel_window_closed"
    HUMAN_REPLIED_ON_CHANNEL = "human_replied_on_channel"


class HandoffCommandBase(Envelope):
    conversation_id: ExternalId
    actor: Actor


class RequestHandoff(HandoffCommandBase):
    type: Literal["request"] = "request"
    reason: HandoffReason
    channel: Channel
    channel_account_id: ExternalId
    customer_id: ExternalId
    note: ShortText = ""


class AssignHandoff(HandoffCommandBase):
    """Assign to `staff_id`, or to whoever is available when it is empty."""

    type: Literal["assign"] = "assign"
    staff_id: Annotated[str, Field(max_length=128)] = ""


class ReplyHandoff(HandoffCommandBase):
    type: Literal["reply"] = "reply"
    text: MessageText


class ResolveHandoff(HandoffCommandBase):
    type: Literal["resolve"] = "resolve"
    note: ShortText = ""


HandoffCommand = Annotated[
    RequestHandoff | AssignHandoff | ReplyHandoff | ResolveHandoff,
    Field(discriminator="type"),
]


class HandoffEventBase(Envelope):
    conversation_id: ExternalId
    ticket_id: ExternalId


class HandoffOpened(HandoffEventBase):
    type: Literal["opened"] = "opened"
    reason: HandoffReason
    note: ShortText = ""


class HandoffAssigned(HandoffEventBase):
    type: Literal["assigned"] = "assigned"
    staff_id: Annotated[str, Field(max_length=128)]


class HandoffReplied(HandoffEventBase):
    type: Literal["replied"] = "replied"
    staff_id: Annotated[str, Field(max_length=128)]


class HandoffResolved(HandoffEventBase):
    type: Literal["resolved"] = "resolved"
    note: ShortText = ""


class SlaBreached(HandoffEventBase):
    type: Literal["sla_breached"] = "sla_breached"
    deadline: AwareDatetime


HandoffEvent = Annotated[
    HandoffOpened | HandoffAssigned | HandoffReplied | HandoffResolved | SlaBreached,
    Field(discriminator="type"),
]
