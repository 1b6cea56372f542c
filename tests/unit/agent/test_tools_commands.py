"""What a valid tool call proposes: which commands, on which topic and key, for which order."""

import json
import uuid
from collections.abc import Callable

import pytest

from schemas.envelope import ActorKind, Envelope
from schemas.handoff import HandoffReason, RequestHandoff
from schemas.orders import (
    AddItem,
    CreateDraft,
    CustomerDetails,
    OrderSnapshot,
    OrderState,
    RemoveItem,
    RequestCheckout,
    SetCustomerDetails,
)
from schemas.topics import HANDOFF_COMMANDS, ORDERS_COMMANDS
from services.agent.tools import Outcome, Turn, plan

TurnBuilder = Callable[..., Turn]
OrderBuilder = Callable[[OrderState], OrderSnapshot]
ADD_TWO = '{"sku": "ESP-1", "quantity": 2}'


def _kinds(outcome: Outcome) -> list[tuple[str, type[Envelope], str]]:
    return [(topic, type(command), key) for topic, command, key in outcome.commands]


def test_add_to_order_without_an_order_proposes_a_draft_and_the_item(make_turn: TurnBuilder) -> None:
    turn = make_turn()
    outcome = plan("add_to_order", ADD_TWO, turn)
    new_order = turn.new_id("order")
    key = str(new_order)
    assert outcome.order_id == new_order
    assert _kinds(outcome) == [(ORDERS_COMMANDS, CreateDraft, key), (ORDERS_COMMANDS, AddItem, key)]
    draft, item = (command for _, command, _ in outcome.commands)
    assert isinstance(draft, CreateDraft) and isinstance(item, AddItem)
    assert (draft.order_id, draft.conversation_id, draft.actor.kind) == (new_order, "conv-1", ActorKind.AI)
    assert (item.order_id, item.sku, item.quantity, item.actor.kind) == (new_order, "ESP-1", 2, ActorKind.AI)


def test_add_to_order_reports_name_and_catalog_price_back_to_the_model(make_turn: TurnBuilder) -> None:
    outcome = plan("add_to_order", ADD_TWO, make_turn())
    assert outcome.result == {
        "ok": True,
        "tool": "add_to_order",
        "sku": "ESP-1",
        "quantity": 2,
        "name": "Espresso beans",
        "unit_price": "12.50 EUR",
    }


def test_quantity_defaults_to_one(make_turn: TurnBuilder) -> None:
    outcome = plan("add_to_order", '{"sku": "MUG-1"}', make_turn())
    _, item, _ = outcome.commands[-1]
    assert isinstance(item, AddItem) and item.quantity == 1


def test_add_to_order_on_an_existing_draft_only_adds_the_item(make_turn: TurnBuilder, make_order: OrderBuilder) -> None:
    order = make_order(OrderState.DRAFT)
    outcome = plan("add_to_order", ADD_TWO, make_turn(order=order))
    assert outcome.order_id == order.order_id
    assert _kinds(outcome) == [(ORDERS_COMMANDS, AddItem, str(order.order_id))]


def test_a_known_order_id_without_a_snapshot_is_treated_as_the_draft(make_turn: TurnBuilder) -> None:
    order_id = uuid.UUID("00000000-0000-4000-8000-0000000000bb")
    outcome = plan("add_to_order", ADD_TWO, make_turn(order_id=order_id))
    assert _kinds(outcome) == [(ORDERS_COMMANDS, AddItem, str(order_id))]


@pytest.mark.parametrize("state", [OrderState.AWAITING_PAYMENT, OrderState.PAID, OrderState.CANCELLED])
def test_add_to_order_after_checkout_starts_a_new_draft(
    state: OrderState, make_turn: TurnBuilder, make_order: OrderBuilder
) -> None:
    turn = make_turn(order=make_order(state))
    outcome = plan("add_to_order", ADD_TWO, turn)
    new_order = turn.new_id("order")
    assert outcome.order_id == new_order != turn.order_id
    assert _kinds(outcome) == [
        (ORDERS_COMMANDS, CreateDraft, str(new_order)),
        (ORDERS_COMMANDS, AddItem, str(new_order)),
    ]


def test_remove_from_order_without_an_order_is_refused(make_turn: TurnBuilder) -> None:
    outcome = plan("remove_from_order", '{"sku": "ESP-1"}', make_turn())
    assert (outcome.result["ok"], outcome.commands) == (False, [])


def test_remove_from_order_on_a_draft_removes_from_it(make_turn: TurnBuilder, make_order: OrderBuilder) -> None:
    order = make_order(OrderState.DRAFT)
    outcome = plan("remove_from_order", '{"sku": "ESP-1", "quantity": 1}', make_turn(order=order))
    assert _kinds(outcome) == [(ORDERS_COMMANDS, RemoveItem, str(order.order_id))]


def test_remove_from_an_order_awaiting_payment_is_refused_without_a_new_draft(
    make_turn: TurnBuilder, make_order: OrderBuilder
) -> None:
    outcome = plan("remove_from_order", '{"sku": "ESP-1"}', make_turn(order=make_order(OrderState.AWAITING_PAYMENT)))
    assert (outcome.result["ok"], outcome.commands, outcome.order_id) == (False, [], None)


def test_customer_details_without_an_order_start_a_draft_for_them(make_turn: TurnBuilder) -> None:
    turn = make_turn()
    outcome = plan("set_customer_details", '{"address": "1 Main St", "name": "Ana"}', turn)
    key = str(turn.new_id("order"))
    assert _kinds(outcome) == [(ORDERS_COMMANDS, CreateDraft, key), (ORDERS_COMMANDS, SetCustomerDetails, key)]
    _, details, _ = outcome.commands[-1]
    assert isinstance(details, SetCustomerDetails)
    assert details.details == CustomerDetails(name="Ana", address="1 Main St")
    assert outcome.result == {"ok": True, "tool": "set_customer_details"}


@pytest.mark.parametrize("state", [OrderState.DRAFT, OrderState.AWAITING_PAYMENT])
def test_customer_details_before_payment_go_on_the_current_order(
    state: OrderState, make_turn: TurnBuilder, make_order: OrderBuilder
) -> None:
    order = make_order(state)
    outcome = plan("set_customer_details", '{"address": "1 Main St"}', make_turn(order=order))
    assert outcome.order_id == order.order_id
    assert _kinds(outcome) == [(ORDERS_COMMANDS, SetCustomerDetails, str(order.order_id))]


def test_request_checkout_without_an_order_is_refused(make_turn: TurnBuilder) -> None:
    outcome = plan("request_checkout", "{}", make_turn())
    assert (outcome.result["ok"], outcome.commands) == (False, [])
    assert "empty" in outcome.result["message"]


@pytest.mark.parametrize("arguments", ["{}", ""])
def test_request_checkout_with_an_order_asks_for_its_payment_link(
    arguments: str, make_turn: TurnBuilder, make_order: OrderBuilder
) -> None:
    order = make_order(OrderState.DRAFT)
    outcome = plan("request_checkout", arguments, make_turn(order=order))
    assert outcome.result == {"ok": True, "tool": "request_checkout"}
    assert _kinds(outcome) == [(ORDERS_COMMANDS, RequestCheckout, str(order.order_id))]


@pytest.mark.parametrize(
    ("arguments", "reason", "note"),
    [
        ("{}", HandoffReason.CUSTOMER_ASKED, ""),
        ('{"reason": "customer_asked"}', HandoffReason.CUSTOMER_ASKED, ""),
        ('{"reason": "complaint_or_refund", "note": "broken mug"}', HandoffReason.COMPLAINT_OR_REFUND, "broken mug"),
    ],
)
def test_request_human_proposes_a_handoff_keyed_by_conversation(
    arguments: str, reason: HandoffReason, note: str, make_turn: TurnBuilder
) -> None:
    turn = make_turn()
    outcome = plan("request_human", arguments, turn)
    assert _kinds(outcome) == [(HANDOFF_COMMANDS, RequestHandoff, "conv-1")]
    _, handoff, _ = outcome.commands[0]
    assert isinstance(handoff, RequestHandoff)
    assert (handoff.reason, handoff.note, handoff.actor.kind) == (reason, note, ActorKind.AI)
    assert (handoff.conversation_id, handoff.channel, handoff.channel_account_id, handoff.customer_id) == (
        turn.conversation_id,
        turn.channel,
        turn.channel_account_id,
        turn.customer_id,
    )
    assert outcome.result == {"ok": True, "tool": "request_human"}


@pytest.mark.parametrize(
    ("name", "arguments", "with_order"),
    [
        ("add_to_order", ADD_TWO, False),
        ("remove_from_order", '{"sku": "ESP-1"}', True),
        ("set_customer_details", '{"email": "ana@example.com"}', False),
        ("request_checkout", "{}", True),
        ("request_human", "{}", False),
    ],
)
def test_every_command_carries_the_turns_ids_and_a_fixed_event_id(
    name: str, arguments: str, with_order: bool, make_turn: TurnBuilder, make_order: OrderBuilder
) -> None:
    turn = make_turn(order=make_order(OrderState.DRAFT) if with_order else None)
    outcome = plan(name, arguments, turn)
    assert outcome.commands
    for _, command, _ in outcome.commands:
        assert command.tenant_id == turn.tenant_id
        assert command.correlation_id == turn.correlation_id
        assert command.causation_id == turn.causation_id
        assert (command.occurred_at, command.producer) == (turn.now, "agent")
    event_ids = [command.event_id for _, command, _ in outcome.commands]
    assert len(set(event_ids)) == len(event_ids)
    assert plan(name, arguments, turn).commands == outcome.commands


def test_the_ai_never_supplies_a_price(make_turn: TurnBuilder) -> None:
    outcome = plan("add_to_order", ADD_TWO, make_turn())
    for _, command, _ in outcome.commands:
        wire = json.loads(command.model_dump_json())
        assert not any("price" in key or "amount" in key for key in wire)
    assert not any("price" in field for field in AddItem.model_fields)


def test_search_products_answers_from_the_catalog_without_any_command(make_turn: Callable[..., Turn]) -> None:
    outcome = plan("search_products", '{"query": "espresso"}', make_turn())
    assert outcome.commands == []
    assert outcome.result["ok"] is True
    assert outcome.result["products"][0]["sku"] == "ESP-1"


def test_show_order_without_an_order_says_so(make_turn: Callable[..., Turn]) -> None:
    outcome = plan("show_order", "{}", make_turn())
    assert outcome.commands == []
    assert outcome.result["order"] is None


def test_create_draft_proposes_one_draft(make_turn: Callable[..., Turn]) -> None:
    outcome = plan("create_draft", "{}", make_turn())
    [(_, command, key)] = outcome.commands
    assert isinstance(command, CreateDraft)
    assert key == str(command.order_id) == str(outcome.order_id)
