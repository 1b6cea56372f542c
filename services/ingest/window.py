"""Meta's customer-service window: may this message go out now, and how (pure decision, no I/O).

Facts (PROTOCOLS A.7): free-form messages are allowed for 24 h after the customer's last
inbound message on every channel. Outside it, WhatsApp delivers only approved templates
(else error 131047), and Messenger and Instagram accept a person's reply with the
HUMAN_AGENT tag for up to 7 days after that message. The window is computed from inbound
messages only: echoes of our own sends do not reopen it.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from schemas.channel import Author
from schemas.envelope import Channel

STANDARD_WINDOW = timedelta(hours=24)
# [U] HUMAN_AGENT needs the Human Agent feature approved in App Review; without it Meta answers
# with the outside-window error (10 / 2018278), which the sender records as a failed send.
HUMAN_AGENT_WINDOW = timedelta(days=7)
HUMAN_AGENT_TAG = "HUMAN_AGENT"


class RefuseReason(StrEnum):
    WINDOW_CLOSED = "window_closed"  # the AI may not write outside the window: a person must take over
    TEMPLATE_REQUIRED = "template_required"
    HUMAN_AGENT_EXPIRED = "human_agent_expired"
    NO_TAG_FOR_SYSTEM = "no_tag_for_system"


REFUSE_DETAILS = {
    RefuseReason.WINDOW_CLOSED: "customer-service window closed: the AI may not write",
    RefuseReason.TEMPLATE_REQUIRED: "whatsapp window closed: a template is required",
    RefuseReason.HUMAN_AGENT_EXPIRED: "more than 7 days since the customer's last message: no tag allows a reply",
    RefuseReason.NO_TAG_FOR_SYSTEM: "customer-service window closed: no message tag fits a system message",
}


@dataclass(frozen=True)
class Send:
    """Inside the window: send as a normal response."""


@dataclass(frozen=True)
class SendWithTag:
    """Outside the window, but a message tag allows it (Messenger/Instagram only)."""

    tag: str = HUMAN_AGENT_TAG


@dataclass(frozen=True)
class Refuse:
    reason: RefuseReason

    @property
    def status(self) -> str:
        """`refused` when the rule stopped the AI on purpose; `failed` when someone's message cannot go."""
        return "refused" if self.reason is RefuseReason.WINDOW_CLOSED else "failed"

    @property
    def detail(self) -> str:
        return REFUSE_DETAILS[self.reason]

    def handoff_note(self, author: Author) -> str:
        """What the person asked in reads. Every refusal leaves the customer without the message: the AI's asks a
        person to take over; a person's reply or a system message that did not go out must be known to whoever
        works the conversation (the delivery status alone reaches nobody), and the ticket says why."""
        if author is Author.AI:
            return self.detail
        sender = "a reply from the team" if author is Author.HUMAN else "a system message"
        return f"{sender} did not reach the customer: {self.detail}"


Decision = Send | SendWithTag | Refuse


def decide_send(
    *, channel: Channel, author: Author, last_inbound_at: datetime | None, now: datetime, has_template: bool
) -> Decision:
    """Decide by the time since the customer's last inbound message; `None` (never wrote) is outside."""
    since = None if last_inbound_at is None else now - last_inbound_at
    if since is not None and since < STANDARD_WINDOW:
        return Send()
    if author is Author.AI:
        return Refuse(RefuseReason.WINDOW_CLOSED)
    if channel is Channel.WHATSAPP:
        return Send() if has_template else Refuse(RefuseReason.TEMPLATE_REQUIRED)
    if author is Author.SYSTEM:
        # The Messenger-only tags (CONFIRMED_EVENT_UPDATE, POST_PURCHASE_UPDATE, ACCOUNT_UPDATE) could
        # carry some notices, but Instagram has none and no notice says which one applies: refuse.
        return Refuse(RefuseReason.NO_TAG_FOR_SYSTEM)
    if since is not None and since < HUMAN_AGENT_WINDOW:
        return SendWithTag()
    return Refuse(RefuseReason.HUMAN_AGENT_EXPIRED)
