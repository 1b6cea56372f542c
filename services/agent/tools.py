"""The tools the model may call, their argument schemas, and how a valid call becomes a command (pure)."""

import functools
import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from schemas.envelope import Actor, ActorKind, Channel, Envelope, Sku
from schemas.handoff import HandoffReason, RequestHandoff
from schemas.orders import (
    AddItem,
    ChannelAddress,
    CreateDraft,
    CustomerDetails,
    OrderSnapshot,
    OrderState,
    RemoveItem,
    RequestCheckout,
    SetCustomerDetails,
)
from schemas.topics import HANDOFF_COMMANDS, ORDERS_COMMANDS
from services.agent import lookups

AI = Actor(kind=ActorKind.AI, id="agent")
EDITABLE_STATES = (OrderState.DRAFT,)
# Orders lets the AI set details until payment: an address given after the link belongs on that order.
DETAILS_STATES = (OrderState.DRAFT, OrderState.AWAITING_PAYMENT)


class Args(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ItemArgs(Args):
    sku: Sku
    quantity: Annotated[int, Field(ge=1, le=1000)] = 1


class DetailsArgs(Args):
    name: Annotated[str, StringConstraints(max_length=200)] | None = None
    phone: Annotated[str, StringConstraints(max_length=32)] | None = None
    email: Annotated[str, StringConstraints(max_length=254)] | None = None
    address: Annotated[str, StringConstraints(max_length=500)] | None = None


class NoArgs(Args):
    pass


class SearchArgs(Args):
    query: Annotated[str, StringConstraints(max_length=200)] = ""


class HumanArgs(Args):
    reason: Literal["customer_asked", "low_confidence", "complaint_or_refund"] = "customer_asked"
    note: Annotated[str, StringConstraints(max_length=500)] = ""


TOOL_ARGS: Mapping[str, tuple[type[Args], str]] = {
    "search_products": (
        SearchArgs,
        "Find catalog products matching words (name, description); returns prices and stock.",
    ),
    "show_order": (NoArgs, "Show the customer's current order: lines, total and state."),
    "create_draft": (NoArgs, "Start a new empty draft order for this conversation."),
    "add_to_order": (
        ItemArgs,
        "Propose adding a catalog product (by SKU) to the customer's order; starts a draft if needed.",
    ),
    "remove_from_order": (ItemArgs, "Propose removing a quantity of a product from the customer's draft order."),
    "set_customer_details": (DetailsArgs, "Record the customer's name, phone, email or delivery address on the order."),
    "request_checkout": (NoArgs, "Ask for a payment link for the current draft order."),
    "request_human": (HumanArgs, "Bring a person from the business into this conversation; the AI then stops."),
}


@functools.cache
def _tool_definitions_json() -> str:
    # Building JSON schemas from the models costs milliseconds; it was a sixth of the agent's CPU per turn.
    return json.dumps(
        [
            {
                "type": "function",
                "function": {"name": name, "description": text, "parameters": model.model_json_schema()},
            }
            for name, (model, text) in TOOL_ARGS.items()
        ]
    )


def tool_definitions() -> list[dict[str, Any]]:
    """The tools offered to the model; a fresh copy each call, so nothing downstream can alter the next turn's."""
    loaded: list[dict[str, Any]] = json.loads(_tool_definitions_json())
    return loaded


@dataclass(frozen=True)
class Turn:
    """What the planner knows about the message being answered."""

    tenant_id: uuid.UUID
    correlation_id: uuid.UUID
    causation_id: uuid.UUID
    conversation_id: str
    channel: Channel
    channel_account_id: str
    customer_id: str
    now: datetime
    order_id: uuid.UUID | None
    order: OrderSnapshot | None
    catalog: Mapping[str, Mapping[str, Any]]  # sku -> product facts from the orders query module
    new_id: Callable[[str], uuid.UUID]


@dataclass
class Outcome:
    result: dict[str, Any]
    commands: list[tuple[str, Envelope, str]] = field(default_factory=list)
    order_id: uuid.UUID | None = None
    # Why a call was refused before reaching any service (counted and logged by the responder).
    refused: str | None = None


def _env(turn: Turn, tag: str) -> dict[str, Any]:
    return {
        "event_id": turn.new_id(tag),
        "tenant_id": turn.tenant_id,
        "correlation_id": turn.correlation_id,
        "causation_id": turn.causation_id,
        "occurred_at": turn.now,
        "producer": "agent",
    }


def plan(name: str, raw_arguments: str, turn: Turn) -> Outcome:
    """Validate one tool call and turn it into commands; refusals come back as a tool result, never a command."""
    if name not in TOOL_ARGS:
        return Outcome({"ok": False, "tool": name, "message": "Sorry, I can't do that here."}, refused="unknown_tool")
    model, _ = TOOL_ARGS[name]
    try:
        args = model.model_validate(json.loads(raw_arguments or "{}"))
    except (ValueError, ValidationError):
        return Outcome(
            {"ok": False, "tool": name, "message": "Sorry, I didn't get that. Could you say it again?"},
            refused="invalid_arguments",
        )
    if isinstance(args, SearchArgs):
        return Outcome(lookups.search(turn.catalog, args.query))
    if name == "show_order":
        return Outcome(lookups.show_order(turn.order))
    if name == "create_draft":
        return _create_draft(turn)
    if isinstance(args, HumanArgs):
        return _human(turn, args)
    if isinstance(args, ItemArgs):
        return _item(name, turn, args)
    if isinstance(args, DetailsArgs):
        return _details(turn, args)
    return _checkout(turn)


def _open_order(
    turn: Turn, commands: list[tuple[str, Envelope, str]], states: tuple[OrderState, ...] = EDITABLE_STATES
) -> uuid.UUID:
    """The order to edit: the current one if still in `states`, else a new draft proposed now."""
    if turn.order_id is not None and (turn.order is None or turn.order.state in states):
        return turn.order_id
    order_id = turn.new_id("order")
    commands.append(
        (
            ORDERS_COMMANDS,
            CreateDraft(
                **_env(turn, "create_draft"),
                order_id=order_id,
                actor=AI,
                conversation_id=turn.conversation_id,
                channel_address=ChannelAddress(
                    channel=turn.channel, channel_account_id=turn.channel_account_id, customer_id=turn.customer_id
                ),
            ),
            str(order_id),
        )
    )
    return order_id


def _item(name: str, turn: Turn, args: ItemArgs) -> Outcome:
    product = turn.catalog.get(args.sku)
    if product is None:
        # The model may only name products of this tenant's catalog; anything else is refused here.
        return Outcome(
            {"ok": False, "tool": name, "message": "Sorry, we don't have that product."}, refused="unknown_product"
        )
    if name == "remove_from_order" and turn.order_id is None:
        return Outcome({"ok": False, "tool": name, "message": "There is no order to change yet."}, refused="no_order")
    if name == "remove_from_order" and turn.order is not None and turn.order.state not in EDITABLE_STATES:
        # Removing from a fresh empty draft would be rejected and would lose track of the real order.
        return Outcome(
            {"ok": False, "tool": name, "message": "Your order can't be changed any more."}, refused="not_editable"
        )
    commands: list[tuple[str, Envelope, str]] = []
    order_id = _open_order(turn, commands)
    command_type = AddItem if name == "add_to_order" else RemoveItem
    command = command_type(**_env(turn, name), order_id=order_id, actor=AI, sku=args.sku, quantity=args.quantity)
    commands.append((ORDERS_COMMANDS, command, str(order_id)))
    result = {
        "ok": True,
        "tool": name,
        "sku": args.sku,
        "quantity": args.quantity,
        "name": product["name"],
        "unit_price": product["price"],
    }
    return Outcome(result, commands, order_id)


def _details(turn: Turn, args: DetailsArgs) -> Outcome:
    commands: list[tuple[str, Envelope, str]] = []
    order_id = _open_order(turn, commands, DETAILS_STATES)
    details = CustomerDetails(**args.model_dump())
    commands.append(
        (
            ORDERS_COMMANDS,
            SetCustomerDetails(**_env(turn, "details"), order_id=order_id, actor=AI, details=details),
            str(order_id),
        )
    )
    return Outcome({"ok": True, "tool": "set_customer_details"}, commands, order_id)


def _create_draft(turn: Turn) -> Outcome:
    commands: list[tuple[str, Envelope, str]] = []
    order_id = _open_order(turn, commands)
    return Outcome({"ok": True, "tool": "create_draft"}, commands, order_id)


def _checkout(turn: Turn) -> Outcome:
    if turn.order_id is None:
        return Outcome(
            {"ok": False, "tool": "request_checkout", "message": "Your order is empty so far. What would you like?"},
            refused="no_order",
        )
    command = RequestCheckout(**_env(turn, "checkout"), order_id=turn.order_id, actor=AI)
    return Outcome(
        {"ok": True, "tool": "request_checkout"}, [(ORDERS_COMMANDS, command, str(turn.order_id))], turn.order_id
    )


def _human(turn: Turn, args: HumanArgs) -> Outcome:
    return handoff(turn, HandoffReason(args.reason), note=args.note)


def handoff(turn: Turn, reason: HandoffReason, *, note: str = "") -> Outcome:
    """A request for a person; also used by the responder's own stop rules (quota, guardrail, model down)."""
    command = RequestHandoff(
        **_env(turn, "handoff"),
        conversation_id=turn.conversation_id,
        actor=AI,
        reason=reason,
        channel=turn.channel,
        channel_account_id=turn.channel_account_id,
        customer_id=turn.customer_id,
        note=note,
    )
    return Outcome(
        {"ok": True, "tool": "request_human"}, [(HANDOFF_COMMANDS, command, turn.conversation_id)], turn.order_id
    )
