"""Pure gateway rules: the permission table, which event settles which command, and order cursors."""

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from schemas.envelope import Actor, ActorKind, Money
from schemas.handoff import HandoffAssigned, HandoffRejected, HandoffRejectionReason
from schemas.orders import CommandRejected, OrderChanged, OrderSnapshot, OrderState, RejectionReason
from services.gateway.outcomes import Decision, handoff_decision, order_decision
from services.gateway.permissions import PERMISSIONS, Role, allowed
from services.gateway.problems import ProblemError
from services.gateway.routes.orders import decode_cursor, encode_cursor

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
TENANT = uuid.UUID("00000000-0000-4000-8000-000000000001")
ORDER = uuid.UUID("00000000-0000-4000-8000-000000000002")
COMMAND = uuid.UUID("00000000-0000-4000-8000-000000000003")
OWNER = Actor(kind=ActorKind.OWNER, id="m-1")


def envelope(**overrides: Any) -> dict[str, Any]:
    event_id = uuid.uuid4()
    return {
        "event_id": event_id,
        "tenant_id": TENANT,
        "correlation_id": event_id,
        "occurred_at": NOW,
        "producer": "test",
        **overrides,
    }


def test_owners_may_do_everything_staff_only_what_the_table_says() -> None:
    assert all(allowed("owner", action) for action in PERMISSIONS)
    staff_refused = {action for action in PERMISSIONS if not allowed("staff", action)}
    assert staff_refused == {
        "settings.write",
        "notify_secret.rotate",
        "channels.connect",
        "team.write",
        "keys.manage",
        "catalog.deactivate",
        "orders.cancel",
        "orders.refund",
        "analytics.read",
    }


@pytest.mark.parametrize(("role", "action"), [("owner", "orders.explode"), ("ai", "orders.read"), ("", "me.read")])
def test_unknown_roles_and_actions_are_refused(role: str, action: str) -> None:
    assert not allowed(role, action)


def test_every_role_in_the_table_is_a_known_role() -> None:
    assert set().union(*PERMISSIONS.values()) <= set(Role)


def test_an_accepted_order_change_settles_its_command_as_accepted() -> None:
    snapshot = OrderSnapshot(
        order_id=ORDER, state=OrderState.FULFILLED, version=4, total=Money(amount_minor=900, currency="EUR")
    )
    event = OrderChanged(
        **envelope(), order_id=ORDER, command_id=COMMAND, change="fulfilled", actor=OWNER, order=snapshot
    )
    assert order_decision(event) == Decision(COMMAND, "accepted", "order_changed", detail="fulfilled")


def test_a_rejection_settles_its_command_with_the_reason() -> None:
    event = CommandRejected(
        **envelope(),
        order_id=ORDER,
        command_id=COMMAND,
        command_type="refund",
        actor=OWNER,
        reason=RejectionReason.ORDER_CLOSED,
        detail="closed",
    )
    assert order_decision(event) == Decision(COMMAND, "rejected", "command_rejected", "order_closed", "closed")


def test_a_payment_fact_names_no_command_and_settles_nothing() -> None:
    snapshot = OrderSnapshot(
        order_id=ORDER, state=OrderState.PAID, version=3, total=Money(amount_minor=900, currency="EUR")
    )
    event = OrderChanged(
        **envelope(), order_id=ORDER, change="paid", actor=Actor(kind=ActorKind.SYSTEM), order=snapshot
    )
    assert order_decision(event) is None


def test_handoff_events_settle_the_command_that_caused_them_and_rejections_name_it() -> None:
    assigned = HandoffAssigned(**envelope(causation_id=COMMAND), conversation_id="c", ticket_id="t", staff_id="m-1")
    assert handoff_decision(assigned) == Decision(COMMAND, "accepted", "assigned")
    refused = HandoffRejected(
        **envelope(), conversation_id="c", command_id=COMMAND, reason=HandoffRejectionReason.NO_OPEN_TICKET
    )
    assert handoff_decision(refused) == Decision(COMMAND, "rejected", "rejected", "no_open_ticket", "")
    uncaused = HandoffAssigned(**envelope(), conversation_id="c", ticket_id="t", staff_id="m-1")
    assert handoff_decision(uncaused) is None


def test_an_order_cursor_round_trips_and_garbage_is_a_400() -> None:
    assert decode_cursor(encode_cursor(NOW, ORDER)) == (NOW, ORDER)
    for garbage in ("", "!!!", "bm90IGEgY3Vyc29y", encode_cursor(NOW, ORDER)[:-3]):
        with pytest.raises(ProblemError) as caught:
            decode_cursor(garbage)
        assert caught.value.status == 400
