"""Who may set availability and who takes the next ticket: plain functions, no database."""

import uuid
from datetime import UTC, datetime

import pytest

from schemas.envelope import Actor, ActorKind
from schemas.handoff import HandoffRejectionReason, SetAvailability
from services.handoff.roster import (
    ActorNotAllowed,
    Roster,
    StaffMember,
    UnknownStaff,
    decide_availability,
    pick_staff,
)

AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
ROSTER = Roster(members={"ana": StaffMember("ana", available=False, open_tickets=2, last_assigned_at=AT)})


def availability(actor: Actor, staff_id: str, available: bool = True) -> SetAvailability:
    return SetAvailability(
        event_id=uuid.uuid4(),
        tenant_id=uuid.uuid4(),
        correlation_id=uuid.uuid4(),
        occurred_at=AT,
        producer="test",
        actor=actor,
        staff_id=staff_id,
        available=available,
    )


def test_nobody_available_means_nobody_is_picked() -> None:
    assert pick_staff([StaffMember("ana", available=False)]) is None
    assert pick_staff([]) is None


def test_equal_load_goes_round_the_team_starting_with_who_never_had_a_ticket() -> None:
    team = [
        StaffMember("ana", True, 1, last_assigned_at=datetime(2026, 1, 1, 9, tzinfo=UTC)),
        StaffMember("bo", True, 1, last_assigned_at=datetime(2026, 1, 1, 8, tzinfo=UTC)),
        StaffMember("cy", True, 1),
    ]
    assert pick_staff(team) == "cy"
    assert pick_staff(team[:2]) == "bo"


def test_staff_set_their_own_availability_and_keep_their_load() -> None:
    member = decide_availability(availability(Actor(kind=ActorKind.STAFF, id="ana"), "ana"), ROSTER)
    assert member == StaffMember("ana", available=True, open_tickets=2, last_assigned_at=AT)


def test_a_staff_members_first_availability_puts_them_on_the_team() -> None:
    member = decide_availability(availability(Actor(kind=ActorKind.STAFF, id="bo"), "bo"), ROSTER)
    assert member == StaffMember("bo", available=True)


def test_owners_set_anyones_availability() -> None:
    member = decide_availability(availability(Actor(kind=ActorKind.OWNER, id="olga"), "ana", False), ROSTER)
    assert member.available is False


@pytest.mark.parametrize(
    "actor",
    [Actor(kind=ActorKind.STAFF, id="bo"), Actor(kind=ActorKind.AI), Actor(kind=ActorKind.SYSTEM)],
    ids=["other-staff", "ai", "system"],
)
def test_nobody_else_sets_a_persons_availability(actor: Actor) -> None:
    with pytest.raises(ActorNotAllowed) as refused:
        decide_availability(availability(actor, "ana"), ROSTER)
    assert refused.value.reason is HandoffRejectionReason.NOT_PERMITTED


def test_another_tenants_staff_is_refused_whoever_asks() -> None:
    roster = Roster(members={}, foreign=frozenset({"zed"}))
    for actor in (Actor(kind=ActorKind.OWNER, id="olga"), Actor(kind=ActorKind.STAFF, id="zed")):
        with pytest.raises(UnknownStaff) as refused:
            decide_availability(availability(actor, "zed"), roster)
        assert refused.value.reason is HandoffRejectionReason.UNKNOWN_STAFF
