"""handoff.* topics: requests to bring a person in, and who is in charge of a conversation."""

from enum import StrEnum
from typing import Annotated, Literal
from uuid import UUID

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
    # A send stopped mid-way (the worker died after claiming it, or the answer never came back): it may have
    # reached the customer, so it is not sent again and a person takes the conversation.
    DELIVERY_IN_DOUBT = "delivery_in_doubt"


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
    # Only this ticket, when set: a resolve decided about one ticket (a quiet return) must not close another
    # opened since. Refused as `ticket_closed` when the conversation's open ticket is another.
    ticket_id: Annotated[str, Field(min_length=1, max_length=64)] | None = None


class SetAvailability(Envelope):
    """A person of the tenant says whether new tickets may be assigned to them (keyed by staff id)."""

    type: Literal["availability"] = "availability"
    actor: Actor
    staff_id: Annotated[str, Field(min_length=1, max_length=128)]
    available: bool


HandoffCommand = Annotated[
    RequestHandoff | AssignHandoff | ReplyHandoff | ResolveHandoff | SetAvailability,
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


class EscalationReason(StrEnum):
    SLA_BREACHED = "sla_breached"
    NO_STAFF_AVAILABLE = "no_staff_available"


class HandoffEscalated(HandoffEventBase):
    """The owner is called in: a deadline passed, or nobody available could take the ticket."""

    type: Literal["escalated"] = "escalated"
    reason: EscalationReason


class HandoffRejectionReason(StrEnum):
    UNKNOWN_CONVERSATION = "unknown_conversation"
    NO_OPEN_TICKET = "no_open_ticket"
    TICKET_CLOSED = "ticket_closed"
    NOT_PERMITTED = "not_permitted"
    NOT_ASSIGNED = "not_assigned"
    UNKNOWN_STAFF = "unknown_staff"


class HandoffRejected(Envelope):
    """A command the handoff service refused; `command_id` is the refused command's event id. Nothing was sent."""

    type: Literal["rejected"] = "rejected"
    conversation_id: Annotated[str, Field(max_length=256)] = ""
    command_id: UUID
    reason: HandoffRejectionReason
    detail: ShortText = ""


HandoffEvent = Annotated[
    HandoffOpened
    | HandoffAssigned
    | HandoffReplied
    | HandoffResolved
    | SlaBreached
    | HandoffEscalated
    | HandoffRejected,
    Field(discriminator="type"),
]
