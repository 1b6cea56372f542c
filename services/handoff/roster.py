"""The team roster's rules: who may say whether a person is available, and who takes the next ticket (pure)."""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from schemas.envelope import ActorKind
from schemas.handoff import HandoffRejectionReason, SetAvailability

NEVER = datetime.min.replace(tzinfo=UTC)


class CommandRefused(Exception):
    """A command that current state or the actor's permissions do not allow; `reason` goes on the wire."""

    reason = HandoffRejectionReason.NOT_PERMITTED


class ActorNotAllowed(CommandRefused):
    reason = HandoffRejectionReason.NOT_PERMITTED


class UnknownStaff(CommandRefused):
    reason = HandoffRejectionReason.UNKNOWN_STAFF


@dataclass(frozen=True)
class StaffMember:
    """One person on a tenant's roster, with the load auto-assignment weighs."""

    staff_id: str
    available: bool
    open_tickets: int = 0
    last_assigned_at: datetime | None = None


@dataclass(frozen=True)
class Roster:
    """A tenant's staff by id, and the ids the command named that belong to another tenant's roster."""

    members: Mapping[str, StaffMember]
    foreign: frozenset[str] = frozenset()

    def is_member(self, staff_id: str) -> bool:
        return staff_id in self.members and staff_id not in self.foreign


EMPTY = Roster(members={})


def pick_staff(candidates: Sequence[StaffMember]) -> str | None:
    """The least-loaded available person; among equals, whoever was assigned longest ago (round-robin)."""
    available = [m for m in candidates if m.available]
    if not available:
        return None
    best = min(available, key=lambda m: (m.open_tickets, m.last_assigned_at or NEVER, m.staff_id))
    return best.staff_id


def require_person_of_tenant(kind: ActorKind, actor_id: str, roster: Roster) -> None:
    """Owners are vouched for by the gateway (their key is the tenant's); staff must be on the roster."""
    if kind is ActorKind.OWNER:
        return
    if kind is not ActorKind.STAFF:
        raise ActorNotAllowed(f"{kind} may not act for a person")
    if actor_id in roster.foreign or actor_id not in roster.members:
        raise UnknownStaff(f"staff {actor_id!r} is not on this tenant's team")


def decide_availability(command: SetAvailability, roster: Roster) -> StaffMember:
    """Owners set anyone's availability, staff only their own; a person of another tenant is refused.

    A staff member's first availability puts them on the roster: the gateway authenticated them as
    a member of this tenant, and the roster is how handoff learns its team.
    """
    actor = command.actor
    if command.staff_id in roster.foreign:
        raise UnknownStaff(f"staff {command.staff_id!r} belongs to another tenant")
    if actor.kind is ActorKind.STAFF:
        if actor.id != command.staff_id:
            raise ActorNotAllowed("staff may set only their own availability")
        if actor.id in roster.foreign:
            raise UnknownStaff(f"staff {actor.id!r} belongs to another tenant")
    elif actor.kind is not ActorKind.OWNER:
        raise ActorNotAllowed(f"{actor.kind} may not set availability")
    current = roster.members.get(command.staff_id)
    if current is None:
        return StaffMember(command.staff_id, command.available)
    return StaffMember(command.staff_id, command.available, current.open_tickets, current.last_assigned_at)
