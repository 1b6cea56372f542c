"""Reading Stripe events and objects: what to re-read, and where to route it."""

import uuid
from typing import Any

import pytest

from services.payments import webhook
from services.payments.stripe_event import (
    MalformedEvent,
    charge_state,
    event_identity,
    read_event,
    session_state,
)

TENANT = uuid.UUID("00000000-0000-4000-8000-000000000001")
ORDER = uuid.UUID("00000000-0000-4000-8000-0000000000aa")


def event(event_type: str, obj: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {
        "id": "evt_1",
        "object": "event",
        "type": event_type,
        "created": 1785000200,
        "data": {"object": obj},
        **extra,
    }


SESSION = {
    "id": "cs_1",
    "object": "checkout.session",
    "status": "complete",
    "payment_status": "paid",
    "amount_total": 1500,
    "currency": "usd",
    "payment_intent": "pi_1",
    "client_reference_id": str(ORDER),
    "metadata": {"tenant_id": str(TENANT), "order_id": str(ORDER)},
}


def test_a_session_event_names_its_session_and_the_tenant_in_its_metadata() -> None:
    signal = read_event(event("checkout.session.completed", SESSION))
    assert signal is not None
    assert (signal.session_id, signal.charge_id, signal.object_id) == ("cs_1", None, "cs_1")
    assert (signal.tenant_id, signal.order_id, signal.payment_intent) == (TENANT, ORDER, "pi_1")


def test_a_refund_names_its_charge_and_a_dispute_the_disputed_charge() -> None:
    refund = read_event(event("charge.refunded", {"id": "ch_1", "payment_intent": "pi_1", "metadata": {}}))
    dispute = read_event(
        event("charge.dispute.created", {"id": "dp_1", "charge": "ch_1", "payment_intent": "pi_1", "reason": "fraud"})
    )
    assert refund is not None and dispute is not None
    assert (refund.charge_id, refund.object_id, refund.tenant_id) == ("ch_1", "ch_1", None)
    assert (dispute.charge_id, dispute.object_id, dispute.reason) == ("ch_1", "dp_1", "fraud")


def test_a_connect_event_carries_its_account() -> None:
    signal = read_event(event("checkout.session.expired", SESSION, account="acct_1"))
    assert signal is not None and signal.account == "acct_1"


def test_an_unhandled_type_is_not_a_signal_but_still_has_an_identity() -> None:
    body = event("customer.created", {"id": "cus_1"})
    assert read_event(body) is None
    assert event_identity(body) == ("evt_1", "customer.created", "cus_1")


def test_metadata_that_is_not_a_uuid_routes_nowhere() -> None:
    signal = read_event(event("checkout.session.completed", {**SESSION, "metadata": {"tenant_id": "shop-1"}}))
    assert signal is not None and signal.tenant_id is None


@pytest.mark.parametrize(
    "body",
    [
        {"object": "list"},
        event("checkout.session.completed", {"object": "checkout.session"}),
        {**event("checkout.session.completed", SESSION), "created": "yesterday"},
        {**event("checkout.session.completed", SESSION), "data": []},
        event("charge.dispute.created", {"id": "dp_1"}),
    ],
    ids=["not-an-event", "no-object-id", "bad-created", "data-not-object", "dispute-without-charge"],
)
def test_refuses_shapes_stripe_never_sends(body: dict[str, Any]) -> None:
    with pytest.raises(MalformedEvent):
        read_event(body)


def test_objects_read_back_with_currencies_in_upper_case() -> None:
    state = session_state(SESSION)
    assert (state.amount_total, state.currency, state.metadata["order_id"]) == (1500, "USD", str(ORDER))
    charge = charge_state(
        {"id": "ch_1", "payment_intent": {"id": "pi_1"}, "amount": 1500, "amount_refunded": 0, "currency": "usd"}
    )
    assert (charge.payment_intent, charge.currency, charge.refunded, charge.disputed) == ("pi_1", "USD", False, False)


def test_a_signature_header_that_is_not_printable_ascii_is_refused_not_a_crash() -> None:
    """Stripe's check compares with hmac.compare_digest, which raises TypeError on non-ASCII text."""
    for header in ("t=1,v1=\xe9", "t=1,v1=abc\x00"):
        with pytest.raises(webhook._Refused) as refused:
            webhook._verified(b"{}", header, "whsec_test")
        assert (refused.value.status, refused.value.reason) == (401, "bad_signature")
