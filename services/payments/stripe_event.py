"""Stripe's shapes as reconciliation reads them: an event reduced to a signal, a Session's and a Charge's state.

Pure parsing of decoded JSON (webhook bodies, SDK objects turned into dicts); nothing here trusts a
snapshot for money: the reconciler re-reads the Session and Charge from Stripe and decides on those.
"""

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

SESSION_COMPLETED: Final = "checkout.session.completed"
ASYNC_SUCCEEDED: Final = "checkout.session.async_payment_succeeded"
ASYNC_FAILED: Final = "checkout.session.async_payment_failed"
SESSION_EXPIRED: Final = "checkout.session.expired"
CHARGE_REFUNDED: Final = "charge.refunded"
DISPUTE_CREATED: Final = "charge.dispute.created"
SESSION_TYPES: Final = frozenset({SESSION_COMPLETED, ASYNC_SUCCEEDED, ASYNC_FAILED, SESSION_EXPIRED})
HANDLED_TYPES: Final = (*sorted(SESSION_TYPES), CHARGE_REFUNDED, DISPUTE_CREATED)


class MalformedEvent(ValueError):
    """JSON that is not the shape Stripe sends for this event or object type."""


@dataclass(frozen=True)
class StripeSignal:
    """A handled event: which Stripe objects to re-read, and the metadata hints for routing it to a tenant."""

    event_id: str
    event_type: str
    created: int
    object_id: str  # data.object.id: the Kafka key
    account: str | None = None  # a Connect account's events carry it
    session_id: str | None = None  # checkout.session.* events
    charge_id: str | None = None  # charge.refunded, and the disputed charge of charge.dispute.created
    payment_intent: str | None = None
    tenant_id: uuid.UUID | None = None
    order_id: uuid.UUID | None = None
    reason: str = ""


@dataclass(frozen=True)
class SessionState:
    id: str
    status: str  # open | complete | expired
    payment_status: str  # paid | unpaid | no_payment_required
    amount_total: int | None
    currency: str | None  # upper case, as Money spells it
    payment_intent: str | None
    client_reference_id: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ChargeState:
    id: str
    payment_intent: str | None
    amount: int
    amount_refunded: int
    refunded: bool
    disputed: bool
    currency: str


def _text(data: Mapping[str, object], key: str, *, required: bool = False) -> str | None:
    value = data.get(key)
    if isinstance(value, str) and value:
        return value
    if isinstance(value, Mapping) and isinstance(value.get("id"), str):
        return str(value["id"])  # an expanded object
    if required:
        raise MalformedEvent(f"`{key}` is missing or not a string")
    return None


def _int(data: Mapping[str, object], key: str) -> int:
    value = data.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise MalformedEvent(f"`{key}` is missing or not an integer")
    return value


def _mapping(data: Mapping[str, object], key: str) -> Mapping[str, object]:
    value = data.get(key)
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise MalformedEvent(f"`{key}` is not an object")
    return value


def _uuid(value: object) -> uuid.UUID | None:
    try:
        return uuid.UUID(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _currency(value: str | None) -> str | None:
    return value.upper() if value else None


def event_identity(body: Mapping[str, object]) -> tuple[str, str, str]:
    """The event's id, its type and its object's id, which every Stripe event has whatever its type."""
    if body.get("object") != "event":
        raise MalformedEvent("not a Stripe event object")
    obj = _mapping(_mapping(body, "data"), "object")
    return (
        str(_text(body, "id", required=True)),
        str(_text(body, "type", required=True)),
        str(_text(obj, "id", required=True)),
    )


def read_event(body: Mapping[str, object]) -> StripeSignal | None:
    """The signal in a Stripe event; None for a type reconciliation does not handle."""
    event_id, event_type, object_id = event_identity(body)
    if event_type not in HANDLED_TYPES:
        return None
    obj = _mapping(_mapping(body, "data"), "object")
    metadata = _mapping(obj, "metadata")
    is_session, is_dispute = event_type in SESSION_TYPES, event_type == DISPUTE_CREATED
    reason = obj.get("reason") if is_dispute else ""
    return StripeSignal(
        event_id=event_id,
        event_type=event_type,
        created=_int(body, "created"),
        object_id=object_id,
        account=_text(body, "account"),
        session_id=object_id if is_session else None,
        charge_id=None if is_session else (_text(obj, "charge", required=True) if is_dispute else object_id),
        payment_intent=_text(obj, "payment_intent"),
        tenant_id=_uuid(metadata.get("tenant_id")),
        order_id=_uuid(metadata.get("order_id")),
        reason=reason[:200] if isinstance(reason, str) else "",
    )


def session_state(data: Mapping[str, object]) -> SessionState:
    metadata = _mapping(data, "metadata")
    amount = data.get("amount_total")
    return SessionState(
        id=str(_text(data, "id", required=True)),
        status=str(_text(data, "status", required=True)),
        payment_status=str(_text(data, "payment_status", required=True)),
        amount_total=amount if isinstance(amount, int) and not isinstance(amount, bool) else None,
        currency=_currency(_text(data, "currency")),
        payment_intent=_text(data, "payment_intent"),
        client_reference_id=_text(data, "client_reference_id"),
        metadata={str(k): str(v) for k, v in metadata.items() if isinstance(v, str)},
    )


def charge_state(data: Mapping[str, object]) -> ChargeState:
    return ChargeState(
        id=str(_text(data, "id", required=True)),
        payment_intent=_text(data, "payment_intent"),
        amount=_int(data, "amount"),
        amount_refunded=_int(data, "amount_refunded"),
        refunded=data.get("refunded") is True,
        disputed=data.get("disputed") is True,
        currency=str(_currency(_text(data, "currency", required=True))),
    )
