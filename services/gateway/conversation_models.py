"""Response and request bodies of conversations, the handoff inbox and handoff work."""

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, StringConstraints

from schemas.envelope import NO_NUL
from services.gateway.models import Body


class Conversation(BaseModel):
    conversation_id: str
    channel: str
    channel_account_id: str
    customer_id: str
    started_at: datetime
    last_message_at: datetime
    messages: int


class ConversationPage(BaseModel):
    conversations: list[Conversation]
    next_before: datetime | None


class Message(BaseModel):
    id: int
    direction: str
    kind: str
    text: str
    at: datetime


class Messages(BaseModel):
    messages: list[Message]


class InboxMessage(BaseModel):
    direction: str
    author: str
    text: str
    at: datetime


class InboxTicket(BaseModel):
    ticket_id: str
    conversation_id: str
    channel: str
    reason: str
    assigned_to: str | None
    opened_at: datetime
    waiting_seconds: int
    unread: int
    messages: list[InboxMessage]
    # Every request's reason and note, oldest first: one that joined the open ticket (a refund Stripe refused, a
    # reply that did not reach the customer) shows only here.
    notes: list[str]
    last_requested_at: datetime | None


class Inbox(BaseModel):
    tickets: list[InboxTicket]


class ReplyBody(Body):
    text: Annotated[str, StringConstraints(min_length=1, max_length=4096, pattern=NO_NUL)]


class NoteBody(Body):
    note: Annotated[str, StringConstraints(max_length=500, pattern=NO_NUL)] = ""
    # The ticket the person looked at (the inbox's `ticket_id`): with it, a resolve that comes after that ticket
    # closed and another opened (a second person, a retry) is refused instead of closing the new one unseen.
    ticket_id: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None


class AvailabilityBody(Body):
    available: bool


class TakeOver(BaseModel):
    request_command_id: UUID
    assign_command_id: UUID
    status: Literal["pending"] = "pending"
