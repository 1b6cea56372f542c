"""The checkout facts payments publishes, each in the envelope `caused_by` derives from the order event that asked.

Their ids derive from that event and a tag ("link", "refused"), so a redelivered request queues the same fact
again under the same id, which orders and the agent take once: the tags must never change.
"""

from datetime import datetime
from typing import Final

from schemas.orders import OrderChanged
from schemas.payments import CheckoutRefused, PaymentLinkCreated
from sellmesh.service import caused_by
from services.payments.domain import PRODUCER, CheckoutRequest, CheckoutSession, check_session_total

REASON_LENGTH: Final = 500  # CheckoutRefused.reason


def link_created(
    event: OrderChanged, request: CheckoutRequest, session: CheckoutSession, *, at: datetime
) -> PaymentLinkCreated:
    """The fact to publish once the session exists; refuses a session that would charge another amount."""
    check_session_total(request, session)
    return PaymentLinkCreated(
        **caused_by(event, "link", producer=PRODUCER, at=at),
        order_id=request.order_id,
        checkout_session_id=session.id,
        url=session.url,
        amount=request.total,
        expires_at=session.expires_at,
    )


def checkout_refused(event: OrderChanged, *, reason: str, at: datetime) -> CheckoutRefused:
    """The fact to publish when the checkout cannot be made: the order is to go back to draft and release its stock,
    since it awaits a payment nobody can make."""
    return CheckoutRefused(
        **caused_by(event, "refused", producer=PRODUCER, at=at),
        order_id=event.order_id,
        order_version=event.order.version,
        reason=reason[:REASON_LENGTH],
    )
