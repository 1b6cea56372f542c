"""Every message type round-trips through JSON unchanged, rejects junk, and the exported contract is fresh."""

import json
import typing
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

from schemas.channel import (
    Author,
    DeliveryState,
    DeliveryStatus,
    InboundMessage,
    OutboundMessage,
    QuickReply,
    RawWebhook,
    ReactionContent,
    TextContent,
    WhatsAppTemplate,
)
from schemas.envelope import Actor, ActorKind, Channel, Money
from schemas.handoff import (
    AssignHandoff,
    EscalationReason,
    HandoffAssigned,
    HandoffEscalated,
    HandoffOpened,
    HandoffReason,
    HandoffRejected,
    HandoffRejectionReason,
    HandoffReplied,
    HandoffResolved,
    ReplyHandoff,
    RequestHandoff,
    ResolveHandoff,
    SetAvailability,
    SlaBreached,
)
from schemas.orders import (
    AddItem,
    CancelOrder,
    CatalogChanged,
    ChannelAddress,
    CloseOrder,
    CommandRejected,
    CreateDraft,
    CustomerDetails,
    FulfilOrder,
    OrderChanged,
    OrderSnapshot,
    OrderState,
    ProductSnapshot,
    RefundOrder,
    RejectionReason,
    RemoveItem,
    RequestCheckout,
    SetCustomerDetails,
    UpsertProduct,
)
from schemas.payments import (
    CheckoutRefused,
    PaymentDisputed,
    PaymentExpired,
    PaymentFailed,
    PaymentLinkCreated,
    PaymentMismatch,
    PaymentRefunded,
    PaymentSucceeded,
    StripeEventReceived,
)
from schemas.registry import TOPIC_SCHEMAS, adapter_for
from schemas.topics import CHANNEL_INBOUND, ORDERS_COMMANDS

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
TENANT = uuid.UUID("00000000-0000-4000-8000-000000000001")
ORDER = uuid.UUID("00000000-0000-4000-8000-000000000002")
EUR = Money(amount_minor=1250, currency="EUR")
AI = Actor(kind=ActorKind.AI)


def env() -> dict[str, Any]:
    event_id = uuid.uuid4()
    return {
        "event_id": event_id,
        "tenant_id": TENANT,
        "correlation_id": event_id,
        "occurred_at": NOW,
        "producer": "test",
    }


def chan() -> dict[str, Any]:
    return {
        "conversation_id": "conv-1",
        "channel": Channel.WHATSAPP,
        "channel_account_id": "acc-1",
        "customer_id": "c-1",
    }


PRODUCT = {
    "name": "Espresso beans 250g",
    "description": "dark roast",
    "attributes": {"roast": "dark"},
    "price": EUR,
    "stock": 40,
    "active": True,
}
OWNER = Actor(kind=ActorKind.OWNER, id="key-1")
SNAPSHOT = OrderSnapshot(order_id=ORDER, state=OrderState.DRAFT, version=1, total=EUR)
HANDOFF = {"conversation_id": "conv-1", "ticket_id": "t-1"}
PAYMENT = {"order_id": ORDER, "checkout_session_id": "cs_test_1"}

SAMPLES: list[Any] = [
    RawWebhook(**env(), channel_account_id="acc-1", body="{}", received_at=NOW),
    InboundMessage(**env(), **chan(), message_id="wamid.1", sent_at=NOW, content=TextContent(text="café ☕")),
    InboundMessage(
        **env(), **chan(), message_id="wamid.2", sent_at=NOW, content=ReactionContent(emoji="👍", reacted_to="m")
    ),
    OutboundMessage(**env(), **chan(), author=Author.AI, text="hi"),
    OutboundMessage(
        **env(),
        **chan(),
        author=Author.AI,
        text="Add it?",
        quick_replies=(QuickReply(title="Yes", payload="YES"),),
        image_url="https://cdn.example.com/mug.jpg",
    ),
    OutboundMessage(
        **env(),
        **chan(),
        author=Author.SYSTEM,
        text="Ana, your order shipped",
        template=WhatsAppTemplate(name="order_update", language="en_US", body_parameters=("Ana",)),
    ),
    DeliveryStatus(**env(), conversation_id="c", channel=Channel.MESSENGER, message_id="m", state=DeliveryState.READ),
    CreateDraft(**env(), order_id=ORDER, actor=AI, conversation_id="conv-1"),
    CreateDraft(
        **env(),
        order_id=ORDER,
        actor=AI,
        conversation_id="conv-1",
        channel_address=ChannelAddress(channel=Channel.WHATSAPP, channel_account_id="acc-1", customer_id="c-1"),
    ),
    UpsertProduct(**env(), sku="ESP-250", actor=OWNER, **PRODUCT),
    UpsertProduct(**env(), sku="GIFT", actor=OWNER, name="Gift card", price=EUR, stock=None),
    AddItem(**env(), order_id=ORDER, actor=AI, sku="ESP-250", quantity=2),
    RemoveItem(**env(), order_id=ORDER, actor=AI, sku="ESP-250", quantity=1),
    SetCustomerDetails(**env(), order_id=ORDER, actor=AI, details=CustomerDetails(address="1 Main St")),
    RequestCheckout(**env(), order_id=ORDER, actor=AI, expected_version=3),
    CancelOrder(**env(), order_id=ORDER, actor=Actor(kind=ActorKind.OWNER), reason="asked"),
    FulfilOrder(**env(), order_id=ORDER, actor=Actor(kind=ActorKind.STAFF)),
    CloseOrder(**env(), order_id=ORDER, actor=Actor(kind=ActorKind.OWNER)),
    RefundOrder(**env(), order_id=ORDER, actor=Actor(kind=ActorKind.OWNER)),
    OrderChanged(**env(), order_id=ORDER, change="draft_created", actor=AI, order=SNAPSHOT),
    CommandRejected(**env(), order_id=ORDER, command_type="add_item", actor=AI, reason=RejectionReason.OUT_OF_STOCK),
    CommandRejected(
        **env(),
        product_sku="ESP-250",
        command_type="upsert_product",
        actor=AI,
        reason=RejectionReason.NOT_PERMITTED_FOR_ACTOR,
    ),
    CatalogChanged(
        **env(),
        command_id=uuid.uuid4(),
        change="product_created",
        actor=OWNER,
        product=ProductSnapshot(sku="ESP-250", **PRODUCT),
    ),
    StripeEventReceived(**env(), stripe_event_id="evt_1", stripe_event_type="checkout.session.completed", body="{}"),
    PaymentLinkCreated(**env(), **PAYMENT, url="https://pay", amount=EUR, expires_at=NOW),
    PaymentSucceeded(**env(), **PAYMENT, amount=EUR),
    PaymentFailed(**env(), **PAYMENT, reason="card_declined"),
    PaymentExpired(**env(), **PAYMENT),
    PaymentRefunded(**env(), **PAYMENT, amount=EUR),
    PaymentDisputed(**env(), **PAYMENT, amount=EUR),
    PaymentMismatch(**env(), **PAYMENT, expected=EUR, received=Money(amount_minor=1, currency="USD")),
    CheckoutRefused(**env(), order_id=ORDER, order_version=3, reason="too many lines"),
    RequestHandoff(
        **env(),
        conversation_id="conv-1",
        actor=AI,
        reason=HandoffReason.CUSTOMER_ASKED,
        channel=Channel.WHATSAPP,
        channel_account_id="a",
        customer_id="c",
    ),
    AssignHandoff(**env(), conversation_id="conv-1", actor=Actor(kind=ActorKind.OWNER), staff_id="s1"),
    ReplyHandoff(**env(), conversation_id="conv-1", actor=Actor(kind=ActorKind.STAFF), text="hello"),
    ResolveHandoff(**env(), conversation_id="conv-1", actor=Actor(kind=ActorKind.STAFF)),
    HandoffOpened(**env(), **HANDOFF, reason=HandoffReason.COMPLAINT_OR_REFUND),
    HandoffAssigned(**env(), **HANDOFF, staff_id="s1"),
    HandoffReplied(**env(), **HANDOFF, staff_id="s1"),
    HandoffResolved(**env(), **HANDOFF),
    SlaBreached(**env(), **HANDOFF, deadline=NOW),
    SetAvailability(**env(), actor=Actor(kind=ActorKind.STAFF, id="s1"), staff_id="s1", available=True),
    HandoffEscalated(**env(), **HANDOFF, reason=EscalationReason.SLA_BREACHED),
    HandoffRejected(
        **env(), conversation_id="conv-1", command_id=uuid.uuid4(), reason=HandoffRejectionReason.NOT_ASSIGNED
    ),
]


def members(schema: Any) -> set[type]:
    """The concrete model classes a topic's schema admits (a model, or an annotated union of models)."""
    if isinstance(schema, type):
        return {schema}
    union = typing.get_args(schema)[0]
    return set(typing.get_args(union))


def topic_of(sample: Any) -> str:
    return next(topic for topic, schema in TOPIC_SCHEMAS.items() if type(sample) in members(schema))


def test_every_message_type_of_every_topic_has_a_sample() -> None:
    every_type = set().union(*(members(schema) for schema in TOPIC_SCHEMAS.values()))
    assert every_type == {type(sample) for sample in SAMPLES}


@pytest.mark.parametrize("sample", SAMPLES, ids=lambda s: type(s).__name__)
def test_message_round_trips_through_json_bytes(sample: Any) -> None:
    adapter: TypeAdapter[Any] = adapter_for(topic_of(sample))
    assert adapter.validate_json(sample.model_dump_json().encode()) == sample


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(extra_field=1),
        lambda d: d.update(tenant_id="not-a-uuid"),
        lambda d: d.update(occurred_at="2026-11-25T12:00:00"),
        lambda d: d.update(type="nope"),
        lambda d: d.pop("event_id"),
        lambda d: d.update(quantity=0),
        lambda d: d.update(quantity=1001),
        lambda d: d.update(quantity="2"),
        lambda d: d.update(sku="bad sku!"),
    ],
    ids=[
        "extra",
        "bad-uuid",
        "naive-time",
        "unknown-type",
        "missing-id",
        "zero-qty",
        "huge-qty",
        "string-qty",
        "bad-sku",
    ],
)
def test_invalid_command_is_rejected(mutate: Any) -> None:
    data = AddItem(**env(), order_id=ORDER, actor=AI, sku="ESP-250", quantity=2).model_dump(mode="json")
    mutate(data)
    with pytest.raises(ValidationError):
        adapter_for(ORDERS_COMMANDS).validate_json(json.dumps(data))


@pytest.mark.parametrize(
    "money",
    [
        {"amount_minor": -1, "currency": "EUR"},
        {"amount_minor": 1, "currency": "eur"},
        {"amount_minor": 1.5, "currency": "EUR"},
    ],
)
def test_money_is_non_negative_integer_minor_units_of_an_iso_currency(money: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        Money.model_validate_json(json.dumps(money))


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.update(stock=-1),
        lambda d: d.pop("stock"),
        lambda d: d.update(stock="3"),
        lambda d: d.update(name=""),
        lambda d: d.update(description="x" * 4001),
        lambda d: d.update(attributes={f"k{i}": "v" for i in range(33)}),
        lambda d: d.update(attributes={"colour": "x" * 257}),
        lambda d: d.update(attributes={"": "v"}),
        lambda d: d.update(attributes={"size": 3}),
        lambda d: d.update(price={"amount_minor": -5, "currency": "EUR"}),
        lambda d: d.update(sku="no spaces"),
        lambda d: d.update(order_id=str(ORDER)),
    ],
    ids=[
        "negative-stock",
        "missing-stock",
        "string-stock",
        "empty-name",
        "long-description",
        "too-many-attributes",
        "long-attribute",
        "empty-attribute-name",
        "non-text-attribute",
        "negative-price",
        "bad-sku",
        "order-id",
    ],
)
def test_invalid_catalog_command_is_rejected(mutate: Any) -> None:
    data = UpsertProduct(**env(), sku="ESP-250", actor=OWNER, **PRODUCT).model_dump(mode="json")
    mutate(data)
    with pytest.raises(ValidationError):
        adapter_for(ORDERS_COMMANDS).validate_json(json.dumps(data))


@pytest.mark.parametrize("names", [{}, {"order_id": ORDER, "product_sku": "ESP-250"}], ids=["neither", "both"])
def test_a_rejection_names_exactly_one_order_or_product(names: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        CommandRejected(**env(), **names, command_type="x", actor=AI, reason=RejectionReason.UNKNOWN_ORDER)


def test_oversized_text_is_rejected() -> None:
    data = SAMPLES[1].model_dump(mode="json")
    data["content"]["text"] = "x" * 5000
    with pytest.raises(ValidationError):
        adapter_for(CHANNEL_INBOUND).validate_json(json.dumps(data))


def test_exported_json_schemas_and_asyncapi_are_fresh() -> None:
    from sellmesh.contract import stale_files

    assert stale_files() == [], "run `make schemas` and commit the result"
