"""orders.events subscriber: a checkout request becomes a Stripe session, an attempt row and a PaymentLinkCreated."""

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import Engine

from schemas.orders import OrderEvent
from schemas.payments import PaymentLinkCreated
from schemas.topics import PAYMENTS_EVENTS
from sellmesh.db import in_thread, session_scope
from sellmesh.outbox import add_to_outbox
from sellmesh.service import derived_id, now
from sellmesh.subscriber import PermanentError
from services.payments.domain import CheckoutNotPossible, CheckoutRequest, link_created, plan_checkout, wants_checkout
from services.payments.store import PaymentStore
from services.payments.stripe_gateway import CheckoutGateway, CheckoutRejected


def _recorded(engine: Engine, request: CheckoutRequest) -> bool:
    with session_scope(engine) as session:
        return PaymentStore(session).attempt(request.tenant_id, request.order_id, request.attempt) is not None


def _record(engine: Engine, link: PaymentLinkCreated, attempt: int) -> None:
    # The attempt row and the event commit together (outbox), or neither does and the wrapper retries.
    with session_scope(engine) as session:
        if PaymentStore(session).add_attempt(link, attempt=attempt):
            add_to_outbox(session, topic=PAYMENTS_EVENTS, event=link, key=str(link.order_id))


async def on_order_event(
    event: OrderEvent, *, gateway: CheckoutGateway, engine: Engine, clock: Callable[[], datetime] = now
) -> None:
    """On checkout_requested: create (or, with the same idempotency key, get back) the session and announce it."""
    if not wants_checkout(event):
        return
    try:
        request = plan_checkout(event, now=clock())
        if await in_thread(_recorded, engine, request):
            return  # a redelivery after we committed: the link event is already in the outbox
        session = await gateway.create_session(request)
        link = link_created(event, request, session, event_id=derived_id(event.event_id, "link"), now=clock())
    except (CheckoutNotPossible, CheckoutRejected) as exc:
        raise PermanentError(str(exc)) from exc
    await in_thread(_record, engine, link, request.attempt)
