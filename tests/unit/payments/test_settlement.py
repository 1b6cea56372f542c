"""Reconciliation as plain functions: decided from Stripe's current objects, never backwards, mismatch never paid."""

import uuid
from dataclasses import replace
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from schemas.envelope import Money
from schemas.payments import PaymentExpired, PaymentMismatch, PaymentRefunded, PaymentSucceeded
from services.payments.settlement import (
    RANK,
    Attempt,
    AttemptStatus,
    Cause,
    NotThisAttempt,
    Observation,
    Step,
    announcement,
    observe,
    plan,
    settled,
)
from services.payments.stripe_event import ASYNC_FAILED, SESSION_COMPLETED, ChargeState, SessionState

S = AttemptStatus
TENANT = uuid.UUID("00000000-0000-4000-8000-000000000001")
ORDER = uuid.UUID("00000000-0000-4000-8000-0000000000aa")
EUR = Money(amount_minor=2500, currency="EUR")
AT = datetime(2026, 3, 4, 10, 0, tzinfo=UTC)
ATTEMPT = Attempt(tenant_id=TENANT, order_id=ORDER, checkout_session_id="cs_1", amount=EUR, status=S.OPEN)
CAUSE = Cause(uuid.UUID(int=1), uuid.UUID(int=2), stripe_event_id="evt_1", source="webhook")


def session(status: str = "complete", payment_status: str = "paid", **changes: object) -> SessionState:
    base = SessionState(
        id="cs_1",
        status=status,
        payment_status=payment_status,
        amount_total=2500,
        currency="EUR",
        payment_intent="pi_1" if status == "complete" else None,
        client_reference_id=str(ORDER),
        metadata={"tenant_id": str(TENANT), "order_id": str(ORDER)},
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def charge(*, refunded: bool = False, disputed: bool = False, intent: str = "pi_1") -> ChargeState:
    return ChargeState(
        id="ch_1",
        payment_intent=intent,
        amount=2500,
        amount_refunded=2500 if refunded else 0,
        refunded=refunded,
        disputed=disputed,
        currency="EUR",
    )


@pytest.mark.parametrize(
    ("state", "event_type", "target"),
    [
        (session("open", "unpaid"), SESSION_COMPLETED, S.OPEN),
        (session(), SESSION_COMPLETED, S.PAID),
        (session(payment_status="no_payment_required"), SESSION_COMPLETED, S.PAID),
        (session(payment_status="unpaid"), SESSION_COMPLETED, S.OPEN),
        (session(payment_status="unpaid"), ASYNC_FAILED, S.FAILED),
        (session(), ASYNC_FAILED, S.PAID),
        (session("expired", "unpaid"), SESSION_COMPLETED, S.EXPIRED),
    ],
    ids=["open", "paid", "free", "delayed-pending", "delayed-failed", "failed-event-but-paid", "expired"],
)
def test_decides_from_the_sessions_current_state_not_the_event(
    state: SessionState, event_type: str, target: AttemptStatus
) -> None:
    assert observe(ATTEMPT, state, None, event_type=event_type).target is target


def test_a_paid_session_for_another_amount_or_currency_is_a_mismatch_never_paid() -> None:
    for wrong in (session(amount_total=2400), session(currency="USD"), session(amount_total=None)):
        seen = observe(ATTEMPT, wrong, None, event_type=SESSION_COMPLETED)
        assert (seen.target, seen.collected) == (S.MISMATCH, S.MISMATCH)
        steps = plan(S.OPEN, seen, superseded=False)
        assert [step.after for step in steps] == [S.MISMATCH]
        fact = announcement(steps[0], ATTEMPT, seen, cause=CAUSE, event_id=uuid.uuid4(), at=AT)
        assert isinstance(fact, PaymentMismatch)
        assert (fact.expected, fact.received) == (EUR, seen.received)


def test_refund_and_dispute_come_from_the_charge_and_a_partial_refund_stays_paid() -> None:
    assert observe(ATTEMPT, session(), charge(refunded=True), event_type=None).target is S.REFUNDED
    assert observe(ATTEMPT, session(), charge(disputed=True), event_type=None).target is S.DISPUTED
    assert observe(ATTEMPT, session(), charge(refunded=True, disputed=True), event_type=None).target is S.REFUNDED
    partial = replace(charge(), amount_refunded=100)
    assert observe(ATTEMPT, session(), partial, event_type=None).target is S.PAID


@pytest.mark.parametrize(
    "wrong",
    [
        session(id="cs_other"),
        session(metadata={"tenant_id": str(uuid.uuid4()), "order_id": str(ORDER)}),
        session(metadata={"tenant_id": str(TENANT), "order_id": str(uuid.uuid4())}),
        session(client_reference_id="someone-else"),
    ],
    ids=["session", "tenant", "order", "reference"],
)
def test_refuses_a_session_that_names_another_tenant_order_or_attempt(wrong: SessionState) -> None:
    with pytest.raises(NotThisAttempt):
        observe(ATTEMPT, wrong, None, event_type=SESSION_COMPLETED)


def test_refuses_a_charge_of_another_payment() -> None:
    with pytest.raises(NotThisAttempt):
        observe(ATTEMPT, session(), charge(refunded=True, intent="pi_other"), event_type=None)


def test_a_refund_seen_before_the_payment_announces_paid_then_refunded() -> None:
    seen = observe(ATTEMPT, session(), charge(refunded=True), event_type=None)
    steps = plan(S.OPEN, seen, superseded=False)
    assert steps == (Step(S.OPEN, S.PAID), Step(S.PAID, S.REFUNDED))
    facts = [announcement(step, ATTEMPT, seen, cause=CAUSE, event_id=uuid.uuid4(), at=AT) for step in steps]
    assert [type(f) for f in facts] == [PaymentSucceeded, PaymentRefunded]
    assert all(
        f is not None and (f.correlation_id, f.causation_id) == (uuid.UUID(int=1), uuid.UUID(int=2)) for f in facts
    )


def test_the_expiry_of_a_replaced_attempt_is_recorded_but_not_announced() -> None:
    expired = Observation(S.EXPIRED)
    [quiet] = plan(S.OPEN, expired, superseded=True)
    assert (quiet.after, quiet.announce) == (S.EXPIRED, False)
    assert announcement(quiet, ATTEMPT, expired, cause=CAUSE, event_id=uuid.uuid4(), at=AT) is None
    [loud] = plan(S.OPEN, expired, superseded=False)
    assert isinstance(announcement(loud, ATTEMPT, expired, cause=CAUSE, event_id=uuid.uuid4(), at=AT), PaymentExpired)


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (S.PAID, S.EXPIRED),
        (S.PAID, S.OPEN),
        (S.REFUNDED, S.PAID),
        (S.REFUNDED, S.DISPUTED),
        (S.EXPIRED, S.FAILED),
        (S.MISMATCH, S.PAID),
        (S.DISPUTED, S.PAID),
    ],
)
def test_never_moves_back_or_sideways(current: AttemptStatus, target: AttemptStatus) -> None:
    assert plan(current, Observation(target, collected=S.PAID), superseded=False) == ()


@given(
    st.lists(st.sampled_from([S.OPEN, S.EXPIRED, S.FAILED, S.PAID, S.MISMATCH, S.REFUNDED, S.DISPUTED]), max_size=12),
    st.sampled_from([S.PAID, S.MISMATCH]),
)
def test_any_sequence_of_observations_only_climbs_the_ladder(
    targets: list[AttemptStatus], collected: AttemptStatus
) -> None:
    status = S.OPEN
    for target in targets:
        for step in plan(status, Observation(target, collected=collected), superseded=False):
            assert step.before is status
            assert RANK[step.after] > RANK[step.before]
            status = step.after
    assert RANK[status] == max([0, *(RANK[t] for t in targets)])


def test_an_attempt_at_the_top_needs_no_question_to_stripe() -> None:
    assert settled(S.PAID, with_charge=False)
    assert not settled(S.PAID, with_charge=True)
    assert not settled(S.EXPIRED, with_charge=False)
    assert settled(S.REFUNDED, with_charge=True)
    # A disputed charge may still be refunded (an inquiry settled by a refund, a dispute that is over).
    assert not settled(S.DISPUTED, with_charge=True)


def test_a_refund_after_a_dispute_is_a_step_up_and_announced() -> None:
    seen = observe(ATTEMPT, session(), charge(refunded=True, disputed=True), event_type=None)
    [step] = plan(S.DISPUTED, seen, superseded=False)
    assert step == Step(S.DISPUTED, S.REFUNDED)
    assert isinstance(announcement(step, ATTEMPT, seen, cause=CAUSE, event_id=uuid.uuid4(), at=AT), PaymentRefunded)


def test_a_payment_given_straight_back_is_recorded_but_only_its_refund_announced() -> None:
    paid = observe(ATTEMPT, session(), None, event_type=None)
    [quiet] = plan(S.OPEN, paid, superseded=False, announce_payment=False)
    assert (quiet.after, quiet.announce) == (S.PAID, False)
    refunded = observe(ATTEMPT, session(), charge(refunded=True), event_type=None)
    steps = plan(S.OPEN, refunded, superseded=False, announce_payment=False)
    assert [(step.after, step.announce) for step in steps] == [(S.PAID, False), (S.REFUNDED, True)]
