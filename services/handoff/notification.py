"""Notifications to a tenant's webhook: queued with the ticket change (same transaction), signed when sent.

The body is the handoff event as published. `X-Sellmesh-Timestamp` is the send time in Unix seconds
and `X-Sellmesh-Signature` is `sha256=` + hex HMAC-SHA256 of `"{timestamp}.{body}"` with the tenant's
notify secret, so a receiver can check both origin and freshness (and refuse replays of old bodies).
"""

import hashlib
import hmac
import ipaddress
import uuid
from datetime import datetime

from sqlalchemy import DateTime, Index, Text, UniqueConstraint
from sqlmodel import Column, Field, Session, SQLModel

from schemas.envelope import Envelope
from sellmesh.addresses import is_public, judged

SIGNATURE_HEADER = "X-Sellmesh-Signature"
TIMESTAMP_HEADER = "X-Sellmesh-Timestamp"
EVENT_HEADER = "X-Sellmesh-Event-Id"

PENDING = "pending"
DELIVERED = "delivered"
FAILED = "failed"
DROPPED = "dropped"


class HandoffNotificationRow(SQLModel, table=True):
    __tablename__ = "handoff_notifications"
    __table_args__ = (
        UniqueConstraint("tenant_id", "event_id", name="uq_handoff_notification_event"),
        Index("ix_handoff_notifications_due", "status", "next_attempt_at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    tenant_id: uuid.UUID
    event_id: uuid.UUID
    event_type: str = Field(max_length=32)
    payload: str = Field(sa_column=Column(Text, nullable=False))
    status: str = Field(default=PENDING, max_length=16)
    attempts: int = 0
    next_attempt_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    last_error: str = Field(default="", max_length=300)
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    delivered_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))


def queue_notification(session: Session, event: Envelope, *, event_type: str, now: datetime) -> None:
    """Queue `event` for the tenant's webhook; it exists only if the caller's transaction commits.

    A redelivered cause derives the same event id; the handler's dedup stops it before this line.
    """
    session.add(
        HandoffNotificationRow(
            tenant_id=event.tenant_id,
            event_id=event.event_id,
            event_type=event_type,
            payload=event.model_dump_json(),
            next_attempt_at=now,
            created_at=now,
        )
    )


def signature(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def signed_headers(secret: str, timestamp: int, body: bytes, event_id: uuid.UUID) -> dict[str, str]:
    headers = {
        "content-type": "application/json",
        TIMESTAMP_HEADER: str(timestamp),
        EVENT_HEADER: str(event_id),
    }
    if secret:
        headers[SIGNATURE_HEADER] = signature(secret, timestamp, body)
    return headers


def backoff_seconds(attempts: int, *, base: float = 2.0, cap: float = 3600.0) -> float:
    """Wait after the `attempts`-th failure: 2 s, 4 s, 8 s ... up to an hour."""
    return float(min(cap, base * 2 ** (attempts - 1)))


def address_refusal(address: str) -> str | None:
    """Why no notification may go to this IP address, or None for a public one.

    Anything not globally routable is refused, which covers more than the named kinds: shared (carrier NAT),
    documentation and benchmarking ranges too. IPv4 carried in IPv6 (`::ffff:127.0.0.1`, `64:ff9b::a00:1`) is
    judged as that IPv4 address.
    """
    # An IPv6 zone (`fe80::1%eth0`) names no other host; an IPv6 address carrying an IPv4 one (mapped, NAT64,
    # 6to4...) reaches that IPv4 address, so that is the one judged.
    ip = judged(ipaddress.ip_address(address.split("%", 1)[0]))
    if is_public(ip):
        return None
    kinds = (
        ("loopback", ip.is_loopback),
        ("unspecified", ip.is_unspecified),
        ("link-local", ip.is_link_local),
        ("multicast", ip.is_multicast),
        ("reserved", ip.is_reserved),
        ("private", ip.is_private),
    )
    kind = next((name for name, found in kinds if found), "non-public")
    return f"{kind} address {ip}"
