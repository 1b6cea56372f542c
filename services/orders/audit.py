"""The audit trail's rows: one per handled command or payment fact, whatever was decided (append-only)."""

import uuid
from datetime import datetime

from schemas.envelope import Actor, Envelope
from services.orders.catalog import CatalogAccepted, CatalogDecision, describe_change, product_state
from services.orders.order import Accepted, Decision, Rejected
from services.orders.tables import AuditRow


def audit_row(
    source: Envelope,
    *,
    order_id: uuid.UUID | None,
    sku: str | None,
    actor: Actor,
    action: str,
    decision: Decision | CatalogDecision,
    current: str | None,
    at: datetime,
) -> AuditRow:
    """The row recording `decision` on `source`; the store only ever inserts it, never updates or deletes.

    `current` is the state of the order (or product) the decision was made on: a rejected or
    unchanged entry shows it as both its before and after state.
    """
    row = AuditRow(
        tenant_id=source.tenant_id,
        order_id=order_id,
        sku=sku,
        message_id=source.event_id,
        correlation_id=source.correlation_id,
        actor_kind=actor.kind.value,
        actor_id=actor.id,
        action=action,
        outcome="accepted" if isinstance(decision, CatalogAccepted) else type(decision).__name__.lower(),
        at=at,
    )
    if isinstance(decision, Accepted):
        row.change = decision.change
        row.from_state = None if decision.previous is None else decision.previous.value
        row.to_state = decision.order.state.value
        row.version = decision.order.version
    elif isinstance(decision, CatalogAccepted):
        row.change = decision.change
        row.from_state = product_state(decision.previous)
        row.to_state = product_state(decision.product)
        row.detail = describe_change(decision.previous, decision.product)
    else:
        row.from_state = row.to_state = current
        row.detail = decision.detail
        row.reason = decision.reason.value if isinstance(decision, Rejected) else None
    return row
