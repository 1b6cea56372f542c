"""Order rules: transitions per actor, terminal states, catalog prices, totals, stock, versions and tenancy."""

import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from schemas.envelope import Actor, ActorKind
from schemas.orders import (
    AddItem,
    CancelOrder,
    CloseOrder,
    CreateDraft,
    CustomerDetails,
    FulfilOrder,
    OrderLine,
    OrderState,
    RefundOrder,
    RejectionReason,
    RemoveItem,
    RequestCheckout,
    SetCustomerDetails,
)
from services.orders.domain import Action, check_transition, decide, decide_payment, products_needed
from services.orders.order import (
    Accepted,
    Command,
    Decision,
    Order,
    ProductInfo,
    Refused,
    Rejected,
    StockEffect,
    Unchanged,
)

S = OrderState
R = RejectionReason
K = ActorKind

TENANT = uuid.UUID("00000000-0000-4000-8000-000000000001")
OTHER_TENANT = uuid.UUID("00000000-0000-4000-8000-000000000002")
ORDER_ID = uuid.UUID("00000000-0000-4000-8000-0000000000aa")
NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)

HOODIE = ProductInfo(sku="HOOD-M", name="Blue hoodie", price_minor=4500, currency="EUR", stock=5)
TEE = ProductInfo(sku="TEE", name="Tee", price_minor=1250, currency="EUR", stock=None)
MUG = ProductInfo(sku="MUG", name="Mug", price_minor=900, currency="USD", stock=10)
RETIRED = ProductInfo(sku="OLD", name="Old", price_minor=100, currency="EUR", stock=3, active=False)
CATALOG = {p.sku: p for p in (HOODIE, TEE, MUG, RETIRED)}


def line(product: ProductInfo, quantity: int) -> OrderLine:
    return OrderLine(sku=product.sku, name=product.name, quantity=quantity, unit_price=product.price)


def order(state: OrderState = S.DRAFT, *, lines: tuple[OrderLine, ...] | None = None, version: int = 3) -> Order:
    default = (line(HOODIE, 1), line(TEE, 2))
    return Order(
        order_id=ORDER_ID,
        tenant_id=TENANT,
        state=state,
        version=version,
        updated_at=NOW,
        lines=default if lines is None else lines,
    )


def command(cls: type[Command], actor: ActorKind = K.AI, *, tenant_id: uuid.UUID = TENANT, **fields: Any) -> Command:
    return cls(
        event_id=uuid.uuid4(),
        tenant_id=tenant_id,
        correlation_id=uuid.uuid4(),
        occurred_at=NOW,
        producer="test",
        order_id=ORDER_ID,
        actor=Actor(kind=actor),
        **fields,
    )


def run(current: Order | None, cmd: Command, products: Mapping[str, ProductInfo] = CATALOG) -> Decision:
    return decide(current, cmd, products=products, tenant_id=cmd.tenant_id, now=NOW)


def accepted(decision: Decision) -> Accepted:
    assert isinstance(decision, Accepted), decision
    return decision


def rejected(decision: Decision) -> RejectionReason:
    assert isinstance(decision, Rejected), decision
    return decision.reason


# One instance of every command on an existing order, valid for the order `order()` builds.
COMMANDS: dict[Action, tuple[type[Command], dict[str, Any]]] = {
    Action.ADD_ITEM: (AddItem, {"sku": "TEE", "quantity": 1}),
    Action.REMOVE_ITEM: (RemoveItem, {"sku": "TEE", "quantity": 1}),
    Action.SET_CUSTOMER_DETAILS: (SetCustomerDetails, {"details": CustomerDetails(name="Ana")}),
    Action.REQUEST_CHECKOUT: (RequestCheckout, {}),
    Action.CANCEL: (CancelOrder, {}),
    Action.FULFIL: (FulfilOrder, {}),
    Action.CLOSE: (CloseOrder, {}),
    Action.REFUND: (RefundOrder, {}),
}

A = Action
_TEAM_MOVES = {
    (A.ADD_ITEM, S.DRAFT): S.DRAFT,
    (A.REMOVE_ITEM, S.DRAFT): S.DRAFT,
    (A.SET_CUSTOMER_DETAILS, S.DRAFT): S.DRAFT,
    (A.SET_CUSTOMER_DETAILS, S.AWAITING_PAYMENT): S.AWAITING_PAYMENT,
    (A.SET_CUSTOMER_DETAILS, S.PAID): S.PAID,
    (A.REQUEST_CHECKOUT, S.DRAFT): S.AWAITING_PAYMENT,
    (A.CANCEL, S.DRAFT): S.CANCELLED,
    (A.CANCEL, S.AWAITING_PAYMENT): S.CANCELLED,
    (A.CANCEL, S.PAID): S.CANCELLED,
    (A.FULFIL, S.PAID): S.FULFILLED,
    (A.CLOSE, S.FULFILLED): S.CLOSED,
    (A.REFUND, S.PAID): S.REFUNDED,
    (A.REFUND, S.FULFILLED): S.REFUNDED,
}
# Written out independently of the service's tables: what each actor may do on the commands topic.
ALLOWED: dict[ActorKind, dict[tuple[Action, OrderState], OrderState]] = {
    K.AI: {
        (A.ADD_ITEM, S.DRAFT): S.DRAFT,
        (A.REMOVE_ITEM, S.DRAFT): S.DRAFT,
        (A.SET_CUSTOMER_DETAILS, S.DRAFT): S.DRAFT,
        (A.SET_CUSTOMER_DETAILS, S.AWAITING_PAYMENT): S.AWAITING_PAYMENT,
        (A.REQUEST_CHECKOUT, S.DRAFT): S.AWAITING_PAYMENT,
        (A.CANCEL, S.DRAFT): S.CANCELLED,
        (A.CANCEL, S.AWAITING_PAYMENT): S.CANCELLED,
    },
    K.OWNER: _TEAM_MOVES,
    K.STAFF: _TEAM_MOVES,
    K.SYSTEM: {},
    K.CUSTOMER: {},
}
TERMINAL = (S.CLOSED, S.CANCELLED, S.REFUNDED)
CASES = [(actor, action, state) for actor in ActorKind for action in COMMANDS for state in OrderState]


@pytest.mark.parametrize(("actor", "action", "state"), CASES)
def test_allows_exactly_the_transitions_each_actor_is_granted(
    actor: ActorKind, action: Action, state: OrderState
) -> None:
    cls, fields = COMMANDS[action]
    decision = run(order(state), command(cls, actor, **fields))
    expected = ALLOWED[actor].get((action, state))
    if expected is not None:
        assert accepted(decision).order.state is expected
    elif state in TERMINAL:
        assert rejected(decision) is R.ORDER_CLOSED
    else:
        assert rejected(decision) in (R.NOT_PERMITTED_FOR_ACTOR, R.INVALID_TRANSITION)


@pytest.mark.parametrize("state", TERMINAL)
@pytest.mark.parametrize("fact", [A.MARK_PAID, A.MARK_REFUNDED, A.PAYMENT_EXPIRED, A.PAYMENT_FAILED])
def test_payment_facts_never_move_a_terminal_order(state: OrderState, fact: Action) -> None:
    decision = decide_payment(order(state), fact, tenant_id=TENANT, now=NOW)
    assert not isinstance(decision, Accepted)


@pytest.mark.parametrize("actor", [K.AI, K.OWNER, K.STAFF])
def test_rejects_anyone_but_payments_marking_order_paid(actor: ActorKind) -> None:
    with pytest.raises(Refused) as refused:
        check_transition(order(S.AWAITING_PAYMENT), A.MARK_PAID, actor)
    assert refused.value.reason is R.NOT_PERMITTED_FOR_ACTOR


def test_rejects_ai_marking_order_refunded() -> None:
    with pytest.raises(Refused) as refused:
        check_transition(order(S.PAID), A.MARK_REFUNDED, K.AI)
    assert refused.value.reason is R.NOT_PERMITTED_FOR_ACTOR


def test_rejects_ai_fulfilling_a_paid_order_as_not_permitted() -> None:
    assert rejected(run(order(S.PAID), command(FulfilOrder))) is R.NOT_PERMITTED_FOR_ACTOR


def test_rejects_ai_cancelling_a_paid_order_as_not_permitted() -> None:
    assert rejected(run(order(S.PAID), command(CancelOrder))) is R.NOT_PERMITTED_FOR_ACTOR


def test_rejects_ai_refunding_an_order() -> None:
    assert rejected(run(order(S.FULFILLED), command(RefundOrder))) is R.NOT_PERMITTED_FOR_ACTOR


def test_rejects_owner_fulfilling_an_unpaid_order_as_invalid_transition() -> None:
    assert rejected(run(order(S.AWAITING_PAYMENT), command(FulfilOrder, K.OWNER))) is R.INVALID_TRANSITION


def test_rejects_ai_reopening_a_closed_order_as_order_closed() -> None:
    assert rejected(run(order(S.CLOSED), command(AddItem, sku="TEE", quantity=1))) is R.ORDER_CLOSED


def test_rejects_a_price_in_an_add_item_command() -> None:
    with pytest.raises(ValidationError):
        command(AddItem, sku="HOOD-M", quantity=1, unit_price={"amount_minor": 1, "currency": "EUR"})


def test_prices_an_added_item_from_the_catalog() -> None:
    decision = accepted(run(order(lines=()), command(AddItem, sku="HOOD-M", quantity=2)))
    assert decision.order.lines == (line(HOODIE, 2),)
    assert decision.change == "item_added"


def test_merges_an_added_item_into_its_line_at_todays_catalog_price() -> None:
    cheaper = {"HOOD-M": ProductInfo(sku="HOOD-M", name="Blue hoodie", price_minor=4000, currency="EUR", stock=5)}
    decision = accepted(run(order(lines=(line(HOODIE, 1),)), command(AddItem, sku="HOOD-M", quantity=1), cheaper))
    assert decision.order.lines == (line(cheaper["HOOD-M"], 2),)


def test_totals_are_integer_sums_of_quantity_times_unit_price() -> None:
    snapshot = order(lines=(line(HOODIE, 3), line(TEE, 7))).snapshot()
    assert snapshot.total.amount_minor == 3 * 4500 + 7 * 1250
    assert snapshot.total.currency == "EUR"


def test_an_order_without_lines_totals_zero_of_no_currency() -> None:
    assert order(lines=()).snapshot().total.model_dump() == {"amount_minor": 0, "currency": "XXX"}


def test_rejects_an_item_priced_in_another_currency() -> None:
    assert rejected(run(order(), command(AddItem, sku="MUG", quantity=1))) is R.CURRENCY_MISMATCH


def test_the_first_item_sets_the_order_currency() -> None:
    decision = accepted(run(order(lines=()), command(AddItem, sku="MUG", quantity=1)))
    assert decision.order.snapshot().total.currency == "USD"


@pytest.mark.parametrize("sku", ["NOPE", "OLD"])
def test_rejects_unknown_and_inactive_products(sku: str) -> None:
    assert rejected(run(order(), command(AddItem, sku=sku, quantity=1))) is R.UNKNOWN_PRODUCT


def test_rejects_adding_more_than_stock_counting_what_the_order_already_holds() -> None:
    current = order(lines=(line(HOODIE, 4),))
    assert rejected(run(current, command(AddItem, sku="HOOD-M", quantity=2))) is R.OUT_OF_STOCK
    assert accepted(run(current, command(AddItem, sku="HOOD-M", quantity=1))).order.quantity_of("HOOD-M") == 5


def test_unlimited_stock_never_runs_out() -> None:
    assert accepted(run(order(lines=()), command(AddItem, sku="TEE", quantity=1000)))


def test_rejects_more_than_a_thousand_units_on_one_line() -> None:
    current = order(lines=(line(TEE, 1000),))
    assert rejected(run(current, command(AddItem, sku="TEE", quantity=1))) is R.INVALID_TRANSITION


def test_removes_part_of_a_line() -> None:
    decision = accepted(run(order(), command(RemoveItem, sku="TEE", quantity=1)))
    assert decision.order.lines == (line(HOODIE, 1), line(TEE, 1))


def test_removing_at_least_the_whole_quantity_drops_the_line() -> None:
    decision = accepted(run(order(), command(RemoveItem, sku="TEE", quantity=5)))
    assert decision.order.lines == (line(HOODIE, 1),)


def test_rejects_removing_an_item_not_in_the_order() -> None:
    assert rejected(run(order(), command(RemoveItem, sku="MUG", quantity=1))) is R.ITEM_NOT_IN_ORDER


def test_customer_details_arrive_one_field_at_a_time() -> None:
    first = accepted(run(order(), command(SetCustomerDetails, details=CustomerDetails(name="Ana"))))
    second = accepted(run(first.order, command(SetCustomerDetails, details=CustomerDetails(phone="+351 1"))))
    assert second.order.customer == CustomerDetails(name="Ana", phone="+351 1")


def test_rejects_checkout_of_an_empty_order() -> None:
    assert rejected(run(order(lines=()), command(RequestCheckout))) is R.EMPTY_ORDER


def test_checkout_reserves_stock_and_reprices_from_the_catalog() -> None:
    dearer = {**CATALOG, "TEE": ProductInfo(sku="TEE", name="Tee", price_minor=1500, currency="EUR", stock=None)}
    decision = accepted(run(order(), command(RequestCheckout), dearer))
    assert decision.order.state is S.AWAITING_PAYMENT
    assert decision.stock is StockEffect.RESERVE
    assert decision.order.total_minor == 4500 + 2 * 1500


def test_rejects_checkout_when_stock_fell_below_the_order() -> None:
    scarce = {
        **CATALOG,
        "HOOD-M": ProductInfo(sku="HOOD-M", name="Blue hoodie", price_minor=4500, currency="EUR", stock=0),
    }
    assert rejected(run(order(), command(RequestCheckout), scarce)) is R.OUT_OF_STOCK


def test_rejects_checkout_when_a_product_was_retired() -> None:
    assert rejected(run(order(), command(RequestCheckout), {"TEE": TEE})) is R.UNKNOWN_PRODUCT


@pytest.mark.parametrize(
    ("state", "cls", "effect"),
    [
        (S.DRAFT, CancelOrder, StockEffect.NONE),
        (S.AWAITING_PAYMENT, CancelOrder, StockEffect.RELEASE),
        (S.PAID, CancelOrder, StockEffect.RELEASE),
        (S.PAID, FulfilOrder, StockEffect.NONE),
        (S.PAID, RefundOrder, StockEffect.RELEASE),
        (S.FULFILLED, RefundOrder, StockEffect.NONE),
        (S.FULFILLED, CloseOrder, StockEffect.NONE),
    ],
)
def test_stock_returns_to_the_shelf_only_when_an_order_ends_before_shipping(
    state: OrderState, cls: type[Command], effect: StockEffect
) -> None:
    assert accepted(run(order(state), command(cls, K.OWNER))).stock is effect


def test_rejects_a_stale_expected_version() -> None:
    decision = run(order(version=3), command(AddItem, sku="TEE", quantity=1, expected_version=2))
    assert rejected(decision) is R.STALE_VERSION


def test_accepts_the_current_expected_version_and_moves_it_by_one() -> None:
    decision = accepted(run(order(version=3), command(AddItem, sku="TEE", quantity=1, expected_version=3)))
    assert decision.order.version == 4
    assert decision.order.updated_at == NOW


def test_rejects_a_command_for_another_tenants_order() -> None:
    cmd = command(CancelOrder, K.OWNER, tenant_id=OTHER_TENANT)
    assert rejected(run(order(), cmd)) is R.CROSS_TENANT


def test_rejects_creating_a_draft_over_another_tenants_order() -> None:
    assert rejected(run(order(), command(CreateDraft, tenant_id=OTHER_TENANT))) is R.CROSS_TENANT


def test_rejects_creating_a_draft_that_exists() -> None:
    assert rejected(run(order(), command(CreateDraft))) is R.ORDER_EXISTS


def test_creates_an_empty_draft_at_version_one() -> None:
    decision = accepted(run(None, command(CreateDraft, conversation_id="conv-1")))
    assert (decision.order.state, decision.order.version, decision.order.lines) == (S.DRAFT, 1, ())
    assert (decision.change, decision.order.conversation_id, decision.order.tenant_id) == (
        "draft_created",
        "conv-1",
        TENANT,
    )


def test_rejects_a_customer_creating_a_draft_directly() -> None:
    assert rejected(run(None, command(CreateDraft, K.CUSTOMER))) is R.NOT_PERMITTED_FOR_ACTOR


def test_rejects_a_new_draft_with_a_nonzero_expected_version() -> None:
    assert rejected(run(None, command(CreateDraft, expected_version=1))) is R.STALE_VERSION


def test_rejects_commands_for_an_unknown_order() -> None:
    assert rejected(run(None, command(AddItem, sku="TEE", quantity=1))) is R.UNKNOWN_ORDER


def test_payment_marks_an_awaiting_order_paid_keeping_its_reservation() -> None:
    decision = accepted(decide_payment(order(S.AWAITING_PAYMENT), A.MARK_PAID, tenant_id=TENANT, now=NOW))
    assert (decision.order.state, decision.change, decision.stock) == (S.PAID, "paid", StockEffect.NONE)


@pytest.mark.parametrize("state", [S.PAID, S.FULFILLED, S.CLOSED])
def test_a_repeated_or_late_payment_changes_nothing(state: OrderState) -> None:
    assert isinstance(decide_payment(order(state), A.MARK_PAID, tenant_id=TENANT, now=NOW), Unchanged)


def test_payment_for_a_cancelled_order_is_rejected_so_a_person_sees_it() -> None:
    decision = decide_payment(order(S.CANCELLED), A.MARK_PAID, tenant_id=TENANT, now=NOW)
    assert rejected(decision) is R.ORDER_CLOSED


def test_payment_for_a_draft_is_an_invalid_transition() -> None:
    assert rejected(decide_payment(order(S.DRAFT), A.MARK_PAID, tenant_id=TENANT, now=NOW)) is R.INVALID_TRANSITION


def test_expired_payment_returns_the_order_to_draft_and_releases_stock_without_an_event() -> None:
    decision = accepted(decide_payment(order(S.AWAITING_PAYMENT), A.PAYMENT_EXPIRED, tenant_id=TENANT, now=NOW))
    assert (decision.order.state, decision.stock, decision.change) == (S.DRAFT, StockEffect.RELEASE, None)


@pytest.mark.parametrize("state", [S.DRAFT, S.PAID, S.CANCELLED])
def test_an_expiry_outside_awaiting_payment_changes_nothing(state: OrderState) -> None:
    assert isinstance(decide_payment(order(state), A.PAYMENT_EXPIRED, tenant_id=TENANT, now=NOW), Unchanged)


def test_a_failed_payment_returns_the_order_to_draft_and_releases_stock_without_an_event() -> None:
    decision = accepted(decide_payment(order(S.AWAITING_PAYMENT), A.PAYMENT_FAILED, tenant_id=TENANT, now=NOW))
    assert (decision.order.state, decision.stock, decision.change) == (S.DRAFT, StockEffect.RELEASE, None)


@pytest.mark.parametrize("state", [S.DRAFT, S.PAID, S.CANCELLED])
def test_a_failure_outside_awaiting_payment_changes_nothing(state: OrderState) -> None:
    assert isinstance(decide_payment(order(state), A.PAYMENT_FAILED, tenant_id=TENANT, now=NOW), Unchanged)


@pytest.mark.parametrize(("state", "effect"), [(S.PAID, StockEffect.RELEASE), (S.FULFILLED, StockEffect.NONE)])
def test_payment_refund_marks_the_order_refunded(state: OrderState, effect: StockEffect) -> None:
    decision = accepted(decide_payment(order(state), A.MARK_REFUNDED, tenant_id=TENANT, now=NOW))
    assert (decision.order.state, decision.change, decision.stock) == (S.REFUNDED, "refunded", effect)


def test_a_refund_fact_for_a_refunded_order_changes_nothing() -> None:
    assert isinstance(decide_payment(order(S.REFUNDED), A.MARK_REFUNDED, tenant_id=TENANT, now=NOW), Unchanged)


def test_payment_facts_respect_tenants_and_existence() -> None:
    assert rejected(decide_payment(order(), A.MARK_PAID, tenant_id=OTHER_TENANT, now=NOW)) is R.CROSS_TENANT
    assert rejected(decide_payment(None, A.MARK_PAID, tenant_id=TENANT, now=NOW)) is R.UNKNOWN_ORDER


def test_only_payment_facts_go_through_decide_payment() -> None:
    with pytest.raises(ValueError):
        decide_payment(order(), A.CANCEL, tenant_id=TENANT, now=NOW)


def test_needs_catalog_entries_only_for_adding_and_checkout() -> None:
    assert products_needed(order(), command(AddItem, sku="MUG", quantity=1)) == {"MUG"}
    assert products_needed(order(), command(RequestCheckout)) == {"HOOD-M", "TEE"}
    assert products_needed(order(), command(CancelOrder)) == frozenset()
