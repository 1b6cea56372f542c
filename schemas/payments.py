"""payments.* topics: verified Stripe events as received, and payment facts per order."""

from typing import Annotated, Literal
from uuid import UUID

from pydantic import AwareDatetime, Field, StringConstraints

from schemas.envelope import Envelope, ExternalId, Money, ShortText

Url = Annotated[str, StringConstraints(max_length=2048)]


class StripeEventReceived(Envelope):
    """A Stripe webhook event whose signature was verified, body exactly as received."""

    type: Literal["stripe_event"] = "stripe_event"
    stripe_event_id: ExternalId
    stripe_event_type: ShortText
    body: Annotated[str, StringConstraints(max_length=1_048_576)]


class OrderPaymentBase(Envelope):
    order_id: UUID


class PaymentEventBase(OrderPaymentBase):
    checkout_session_id: ExternalId


class PaymentLinkCreated(PaymentEventBase):
    type: Literal["link_created"] = "link_created"
    url: Url
    amount: Money
    expires_at: AwareDatetime


class PaymentSucceeded(PaymentEventBase):
    type: Literal["paid"] = "paid"
    amount: Money


class PaymentFailed(PaymentEventBase):
    type: Literal["failed"] = "failed"
    reason: ShortText = ""


class PaymentExpired(PaymentEventBase):
    type: Literal["expired"] = "expired"


class PaymentRefunded(PaymentEventBase):
    type: Literal["refunded"] = "refunded"
    amount: Money


class PaymentDisputed(PaymentEventBase):
    type: Literal["disputed"] = "disputed"
    amount: Money
    reason: ShortText = ""


class PaymentMismatch(PaymentEventBase):
    """Stripe collected money for the order's session, but not the amount or currency the order asked for.

    The order is not marked paid; a person has to look at it.
    """

    type: Literal["mismatch"] = "mismatch"
    expected: Money
    received: Money


class CheckoutRefused(OrderPaymentBase):
    """The checkout the order awaits payment for cannot be made: Stripe refused the request (a 4xx), or the order
    cannot be charged as it stands (more lines than a session takes, a total its lines do not make up).

    No session exists, so none is named; `order_version` is the version the checkout was requested at.
    """

    type: Literal["checkout_refused"] = "checkout_refused"
    order_version: Annotated[int, Field(ge=0)]
    reason: ShortText = ""


PaymentEvent = Annotated[
    PaymentLinkCreated
    | PaymentSucceeded
    | PaymentFailed
    | PaymentExpired
    | PaymentRefunded
    | PaymentDisputed
    | PaymentMismatch
    | CheckoutRefused,
    Field(discriminator="type"),
]
