"""The team roster handoff owns: who is on each tenant's team, who is available, and their current load."""

import uuid
from collections.abc import Iterable
from datetime import datetime

from sqlalchemy import DateTime, func
from sqlmodel import Column, Field, Session, SQLModel, col, select

from services.handoff.domain import TicketStatus
from services.handoff.roster import Roster, StaffMember
from services.handoff.store import HandoffTicketRow, as_utc


class HandoffStaffRow(SQLModel, table=True):
    """A person on a tenant's team; staff ids come from the gateway and are unique across tenants."""

    __tablename__ = "handoff_staff"

    tenant_id: uuid.UUID = Field(primary_key=True)
    staff_id: str = Field(primary_key=True, max_length=128, index=True)
    available: bool = False
    updated_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    # Breaks ties between equally loaded people, so assignments go round the team.
    last_assigned_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))


class StaffStore:
    """Roster reads and writes inside the caller's transaction."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def roster(self, tenant_id: uuid.UUID, *, named: Iterable[str] = ()) -> Roster:
        """The tenant's team with open-ticket counts; `named` ids on another tenant's team come back as foreign."""
        rows = self.session.exec(select(HandoffStaffRow).where(HandoffStaffRow.tenant_id == tenant_id)).all()
        loads = dict(
            self.session.exec(
                select(HandoffTicketRow.assigned_to, func.count())
                .where(
                    HandoffTicketRow.tenant_id == tenant_id,
                    HandoffTicketRow.status == TicketStatus.OPEN.value,
                    col(HandoffTicketRow.assigned_to).is_not(None),
                )
                .group_by(col(HandoffTicketRow.assigned_to))
            ).all()
        )
        members = {
            row.staff_id: StaffMember(
                staff_id=row.staff_id,
                available=row.available,
                open_tickets=int(loads.get(row.staff_id, 0)),
                last_assigned_at=as_utc(row.last_assigned_at) if row.last_assigned_at else None,
            )
            for row in rows
        }
        return Roster(members=members, foreign=self._foreign(tenant_id, {n for n in named if n} - set(members)))

    def _foreign(self, tenant_id: uuid.UUID, staff_ids: set[str]) -> frozenset[str]:
        if not staff_ids:
            return frozenset()
        query = select(HandoffStaffRow.staff_id).where(
            col(HandoffStaffRow.staff_id).in_(staff_ids), HandoffStaffRow.tenant_id != tenant_id
        )
        return frozenset(self.session.exec(query).all())

    def save(self, tenant_id: uuid.UUID, member: StaffMember, *, now: datetime) -> None:
        row = self.session.get(HandoffStaffRow, (tenant_id, member.staff_id))
        if row is None:
            row = HandoffStaffRow(
                tenant_id=tenant_id, staff_id=member.staff_id, available=member.available, updated_at=now
            )
        row.available = member.available
        row.updated_at = now
        self.session.add(row)

    def mark_assigned(self, tenant_id: uuid.UUID, staff_id: str, *, now: datetime) -> None:
        """Move this person to the back of the round; an owner taking over has no roster row to move."""
        row = self.session.get(HandoffStaffRow, (tenant_id, staff_id))
        if row is not None:
            row.last_assigned_at = now
            self.session.add(row)
