"""The store over payments' tables, inside the caller's transaction; lookups by order are tenant-scoped.

Stripe ids (`cs_...`, `pi_...`) are globally unique, so finding an attempt by one is how a Stripe
event is routed to its tenant; every decision after that checks the tenant it was routed with.
"""

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import update
from sqlmodel import Session, col, select

from schemas.envelope import Money
from schemas.payments import PaymentLinkCreated
from sellmesh.db import after_key, insert_unless_present
from services.payments.domain import (
    CheckoutPlan,
    ReturnUrls,
    StripeAccount,
    idempotency_key,
    kept_plan,
    moved_plan,
    renewed_plan,
)
from services.payments.settlement import Attempt, AttemptStatus, Cause, Step
from services.payments.tables import (
    CheckoutPlanRow,
    PaymentAttemptRow,
    PaymentAuditRow,
    StripeEventRow,
    SweepCheckpointRow,
)

__all__ = ["AttemptStatus", "Conflict", "PaymentAttemptRow", "PaymentStore", "attempt_view"]


class Conflict(Exception):
    """Another worker moved the attempt (or the checkpoint) first: decide again on fresh state."""


def attempt_view(row: PaymentAttemptRow) -> Attempt:
    return Attempt(
        tenant_id=row.tenant_id,
        order_id=row.order_id,
        checkout_session_id=row.checkout_session_id,
        amount=Money(amount_minor=row.amount_minor, currency=row.currency),
        status=AttemptStatus(row.status),
    )


class PaymentStore:
    def __init__(self, session: Session) -> None:
        self.session = session

    def attempt(self, tenant_id: uuid.UUID, order_id: uuid.UUID, attempt: int) -> PaymentAttemptRow | None:
        query = select(PaymentAttemptRow).where(
            PaymentAttemptRow.tenant_id == tenant_id,
            PaymentAttemptRow.order_id == order_id,
            PaymentAttemptRow.attempt == attempt,
        )
        return self.session.exec(query).first()

    def add_attempt(self, link: PaymentLinkCreated, *, attempt: int, stripe_account: str | None = None) -> bool:
        """Record the attempt a link was created for, and its creation in the audit; False when it already was."""
        if self.attempt(link.tenant_id, link.order_id, attempt) is not None:
            return False
        row = PaymentAttemptRow(
            tenant_id=link.tenant_id,
            order_id=link.order_id,
            attempt=attempt,
            checkout_session_id=link.checkout_session_id,
            url=link.url,
            amount_minor=link.amount.amount_minor,
            currency=link.amount.currency,
            status=AttemptStatus.OPEN.value,
            expires_at=link.expires_at,
            created_at=link.occurred_at,
            stripe_account=stripe_account,
        )
        self.session.add(row)
        self.session.flush()  # the audit row names the attempt's id
        self._audit(row, before="", after=AttemptStatus.OPEN, source="checkout", event=None, at=link.occurred_at)
        return True

    def keep_checkout_plan(
        self,
        tenant_id: uuid.UUID,
        order_id: uuid.UUID,
        attempt: int,
        *,
        requested_at: datetime,
        now: datetime,
        urls: ReturnUrls | None = None,
        account: StripeAccount | None = None,
    ) -> CheckoutPlan:
        """The attempt's plan: the one an earlier try kept, or a new one with the tenant's `urls` and `account` of
        now, kept here (the caller commits it before asking Stripe). The row is locked, so two tries at once ask
        with one plan."""
        key = {"tenant_id": tenant_id, "order_id": order_id, "attempt": attempt}
        plans = CheckoutPlanRow.__table__  # type: ignore[attr-defined]
        row = self._locked_plan(key)
        stored = None if row is None else _plan(row)
        urls, account = urls or ReturnUrls(), account or StripeAccount()
        plan = kept_plan(stored, requested_at=requested_at, now=now, urls=urls, account=account)
        columns = _sent(plan.urls or urls, plan.account or account)
        if row is None:
            # In UTC: SQLite keeps a timestamp's wall time and drops its offset.
            fresh = {**key, "expires_at": plan.expires_at.astimezone(UTC), "generation": plan.generation, **columns}
            if not insert_unless_present(self.session.connection(), plans, fresh):
                raise Conflict(f"another try planned checkout {order_id}:{attempt} first")
        elif plan != stored:
            self._replace_plan(row, plan, columns)
        return plan

    def move_checkout_plan(
        self,
        tenant_id: uuid.UUID,
        order_id: uuid.UUID,
        attempt: int,
        *,
        refused: StripeAccount,
        requested_at: datetime,
        now: datetime,
        urls: ReturnUrls,
        account: StripeAccount,
    ) -> CheckoutPlan | None:
        """The plan after its account `refused` the platform: moved to the tenant's `account` of now
        (`domain.moved_plan`), or the plan another try moved it to meanwhile; None when the refusal stands."""
        row = self._locked_plan({"tenant_id": tenant_id, "order_id": order_id, "attempt": attempt})
        if row is None:
            return None
        stored = _plan(row)
        if stored.account != refused:
            return stored
        plan = moved_plan(stored, requested_at=requested_at, now=now, urls=urls, account=account)
        if plan is not None:
            self._replace_plan(row, plan, _sent(urls, account))
        return plan

    def renew_checkout_plan(
        self,
        tenant_id: uuid.UUID,
        order_id: uuid.UUID,
        attempt: int,
        *,
        failed_key: str,
        requested_at: datetime,
        now: datetime,
    ) -> None:
        """The plan after Stripe answered 5xx under `failed_key`: the next generation (`domain.renewed_plan`), once
        however many tries saw that answer; a plan another try renewed meanwhile stays as it is."""
        row = self._locked_plan({"tenant_id": tenant_id, "order_id": order_id, "attempt": attempt})
        if row is None or idempotency_key(order_id, attempt, row.generation) != failed_key:
            return
        stored = _plan(row)
        plan = renewed_plan(stored, requested_at=requested_at, now=now)
        self._replace_plan(row, plan, _sent(stored.urls or ReturnUrls(), stored.account or StripeAccount()))

    def _locked_plan(self, key: dict[str, Any]) -> CheckoutPlanRow | None:
        """The attempt's plan row, locked: two tries at once ask with one plan."""
        return self.session.exec(select(CheckoutPlanRow).filter_by(**key).with_for_update()).first()

    def _replace_plan(self, row: CheckoutPlanRow, plan: CheckoutPlan, columns: dict[str, str]) -> None:
        row.expires_at, row.generation = plan.expires_at.astimezone(UTC), plan.generation
        row.success_url, row.cancel_url = columns["success_url"], columns["cancel_url"]
        row.stripe_account = columns["stripe_account"]
        self.session.add(row)

    def by_session(self, session_id: str) -> PaymentAttemptRow | None:
        query = select(PaymentAttemptRow).where(PaymentAttemptRow.checkout_session_id == session_id)
        return self.session.exec(query).first()

    def by_payment_intent(self, payment_intent: str) -> PaymentAttemptRow | None:
        query = select(PaymentAttemptRow).where(PaymentAttemptRow.payment_intent_id == payment_intent)
        return self.session.exec(query).first()

    def other_attempts(self, tenant_id: uuid.UUID, order_id: uuid.UUID, *, attempt: int) -> list[PaymentAttemptRow]:
        query = select(PaymentAttemptRow).where(
            PaymentAttemptRow.tenant_id == tenant_id,
            PaymentAttemptRow.order_id == order_id,
            PaymentAttemptRow.attempt != attempt,
        )
        return list(self.session.exec(query.order_by(col(PaymentAttemptRow.attempt))))

    def mark_superseded(self, attempt_id: int) -> None:
        statement = update(PaymentAttemptRow).where(col(PaymentAttemptRow.id) == attempt_id).values(superseded=True)
        self.session.exec(statement)

    def advance(
        self, row: PaymentAttemptRow, step: Step, *, cause: Cause, payment_intent: str | None, at: datetime
    ) -> None:
        """Move the attempt one step, only from the status it was read in, and audit it; Conflict otherwise."""
        assert row.id is not None
        values: dict[str, object] = {"status": step.after.value}
        if payment_intent is not None:
            values["payment_intent_id"] = payment_intent
        statement = (
            update(PaymentAttemptRow)
            .where(col(PaymentAttemptRow.id) == row.id, col(PaymentAttemptRow.status) == step.before.value)
            .values(**values)
        )
        if self.session.exec(statement).rowcount != 1:
            raise Conflict(f"attempt {row.id} is no longer {step.before}")
        row.status = step.after.value
        self._audit(row, before=step.before, after=step.after, source=cause.source, event=cause.stripe_event_id, at=at)

    def _audit(
        self, row: PaymentAttemptRow, *, before: str, after: str, source: str, event: str | None, at: datetime
    ) -> None:
        assert row.id is not None
        audit = PaymentAuditRow(
            tenant_id=row.tenant_id,
            order_id=row.order_id,
            attempt_id=row.id,
            checkout_session_id=row.checkout_session_id,
            before=before,
            after=after,
            source=source,
            stripe_event_id=event,
            at=at,
        )
        self.session.add(audit)

    def audit(self, tenant_id: uuid.UUID, order_id: uuid.UUID) -> list[PaymentAuditRow]:
        query = select(PaymentAuditRow).where(
            PaymentAuditRow.tenant_id == tenant_id, PaymentAuditRow.order_id == order_id
        )
        return list(self.session.exec(query.order_by(col(PaymentAuditRow.id))))

    def stale_open(
        self, *, now: datetime, limit: int, after: tuple[datetime, int] | None = None
    ) -> list[PaymentAttemptRow]:
        """Open attempts past their expiry, across tenants, oldest first and after `after` (an attempt's expiry
        and id) when given: the sweep re-reads each from Stripe, a page a run."""
        query = select(PaymentAttemptRow).where(
            PaymentAttemptRow.status == AttemptStatus.OPEN.value, col(PaymentAttemptRow.expires_at) < now
        )
        if after is not None:
            query = query.where(after_key(col(PaymentAttemptRow.expires_at), col(PaymentAttemptRow.id), after))
        query = query.order_by(col(PaymentAttemptRow.expires_at), col(PaymentAttemptRow.id)).limit(limit)
        return list(self.session.exec(query))

    def connect_accounts(self, *, since: datetime) -> dict[str, uuid.UUID]:
        """The Connect accounts sessions were created in since `since`, with the tenant of each."""
        query = select(PaymentAttemptRow.stripe_account, PaymentAttemptRow.tenant_id).where(
            col(PaymentAttemptRow.stripe_account).is_not(None), col(PaymentAttemptRow.created_at) >= since
        )
        return {account: tenant for account, tenant in self.session.exec(query.distinct()) if account}

    def event_seen(self, stripe_event_id: str) -> bool:
        return self.session.get(StripeEventRow, stripe_event_id) is not None

    def record_event(self, row: StripeEventRow) -> None:
        """Keep one row per Stripe event id; a second one fails the commit with IntegrityError (the primary key)."""
        self.session.add(row)

    def checkpoint(self, scope: str) -> SweepCheckpointRow | None:
        return self.session.get(SweepCheckpointRow, scope)

    def move_checkpoint(self, scope: str, *, version: int, created_through: int, at: datetime) -> bool:
        """Advance the checkpoint only from `version`; False when a concurrent sweep moved it first."""
        statement = (
            update(SweepCheckpointRow)
            .where(col(SweepCheckpointRow.scope) == scope, col(SweepCheckpointRow.version) == version)
            .values(created_through=created_through, version=version + 1, updated_at=at)
        )
        return bool(self.session.exec(statement).rowcount == 1)


def _sent(urls: ReturnUrls, account: StripeAccount) -> dict[str, str]:
    # "" for what was not sent: NULL is kept for a plan made before the column was.
    return {
        "success_url": urls.success_url or "",
        "cancel_url": urls.cancel_url or "",
        "stripe_account": account.id or "",
    }


def _plan(row: CheckoutPlanRow) -> CheckoutPlan:
    urls = None
    if row.success_url is not None or row.cancel_url is not None:
        urls = ReturnUrls(row.success_url or None, row.cancel_url or None)  # "": not sent
    account = None if row.stripe_account is None else StripeAccount(row.stripe_account or None)  # "": the platform
    return CheckoutPlan(_utc(row.expires_at), row.generation, urls, account)


def _utc(value: datetime) -> datetime:
    # SQLite hands timestamps back without their zone; everything here is written in UTC.
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
