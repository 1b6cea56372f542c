"""Envelope fields of a message the bench makes up: a fresh id that is its own correlation, made now."""

import uuid

from sellmesh.service import EnvelopeFields, now


def bench_envelope(tenant_id: uuid.UUID) -> EnvelopeFields:
    event_id = uuid.uuid4()
    return EnvelopeFields(
        event_id=event_id,
        tenant_id=tenant_id,
        correlation_id=event_id,
        causation_id=None,
        occurred_at=now(),
        producer="bench",
    )
