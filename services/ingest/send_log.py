"""What the sender did with each outbound message: its row, the message log, and the events it owes.

The outcome, the delivery status and any handoff request commit in one transaction (outbox),
so a crash never leaves a failed send that nobody hears about.
"""

import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, bindparam
from sqlalchemy import insert as sa_insert
from sqlalchemy import select as sa_select
from sqlalchemy import update as sa_update
from sqlmodel import Session

from schemas.channel import DeliveryState, DeliveryStatus, OutboundMessage
from schemas.envelope import Actor, ActorKind, Channel
from schemas.handoff import HandoffReason, RequestHandoff
from schemas.topics import CHANNEL_DELIVERY, HANDOFF_COMMANDS
from sellmesh.db import insert_unless_present, session_scope
from sellmesh.outbox import add_to_outbox
from sellmesh.service import caused_by, derived_id, now
from services.ingest.store import OutboundSend, last_inbound_at, log_message

log = logging.getLogger(__name__)

FINISHED = frozenset({"sent", "refused", "failed"})


@dataclass(frozen=True)
class Outcome:
    status: str  # sent, refused, failed
    error: str = ""
    error_code: str | None = None
    provider_id: str | None = None
    kind: str = "text"
    # When set, a person is asked to take the conversation over, with this note and reason.
    handoff_note: str | None = None
    handoff_reason: HandoffReason = HandoffReason.CHANNEL_WINDOW_CLOSED


def part_id(message: OutboundMessage, index: int) -> uuid.UUID:
    """Each extra request of a multi-request message gets its own send row: a retry skips the parts that went out."""
    return derived_id(message.event_id, "part", index)


def send_tag(message: OutboundMessage, index: int, *, last: int) -> str:
    """What a request carries to name its send (Meta hands it back on the echo): the message's own id, and for
    an extra request `<id>:<index>`. Both name the message's row, which its claim committed before any request
    went out; a part's own row is written only after its request returns, and an echo can come first."""
    return str(message.event_id) if index == last else f"{message.event_id}:{index}"


def tagged_send(tag: str) -> uuid.UUID | None:
    """The send row a tag names: the message's for `<id>` and `<id>:<index>`. Tags before `send_tag` named a
    part by its own row's id, which is a plain id too. None for anything else."""
    try:
        return uuid.UUID(tag.partition(":")[0])
    except ValueError:
        return None


@dataclass(frozen=True)
class Attempt:
    """What is known before posting: when the customer last wrote, which requests went out on an earlier try,
    whether an earlier try stopped mid-send (its claim is still `sending`), so it may have gone out, and whether
    another attempt claimed it a moment ago (two retries that both read `retrying`)."""

    last_inbound_at: datetime | None
    sent_parts: frozenset[int]
    in_doubt: bool = False
    busy: bool = False


def begin_attempt(engine: Engine, message: OutboundMessage, *, parts: int) -> Attempt | None:
    """One transaction before the Graph call: None when the message is finished (sent, refused, failed); in
    doubt when an earlier attempt's claim is still `sending`; busy when another attempt claimed it from `retrying`
    first; otherwise claims it (`sending`) and reads the window's start and which of its `parts` requests went
    out.

    A `sending` claim is in doubt at once, though its attempt may still be at work elsewhere (a handler that
    outlasted its partition's revoke): waiting for it would stall the partition behind a worker that may be dead,
    and a person asked for nothing beats a reply read twice. Its late outcome then leaves the doubt standing."""
    sends = OutboundSend.__table__  # type: ignore[attr-defined]
    mine = sends.c.event_id == message.event_id
    # Core statements: this runs for every outbound message, and an ORM session costs several times more.
    with engine.begin() as connection:
        # The claim first: a new message (nearly every one) needs no read of its status. When a row is there,
        # its status says what the earlier attempt left.
        if not insert_unless_present(connection, sends, _send(message, message.event_id, "sending")):
            status = connection.execute(_STATUS, {"send": message.event_id}).scalar_one()
            if status in FINISHED:
                return None
            if status == "sending":
                return Attempt(last_inbound_at=None, sent_parts=frozenset(), in_doubt=True)
            # Only from `retrying`: two attempts that both read it must not both claim it (the second one's UPDATE
            # waits for the first's commit, then finds the status changed).
            claimed = connection.execute(
                sa_update(sends).where(mine, sends.c.status == "retrying").values(status="sending", updated_at=now())
            )
            if not claimed.rowcount:
                return Attempt(last_inbound_at=None, sent_parts=frozenset(), busy=True)
        return Attempt(
            last_inbound_at=last_inbound_at(
                connection, tenant_id=message.tenant_id, conversation_id=message.conversation_id
            ),
            sent_parts=_sent_parts(connection, message, parts),
        )


def release(engine: Engine, message: OutboundMessage) -> None:
    """An attempt ended knowing nothing reached the channel (refused at connect, rate limited, an answer
    saying no): the claim goes back to `retrying`, so the next attempt sends instead of calling it in doubt."""
    sends = OutboundSend.__table__  # type: ignore[attr-defined]
    with engine.begin() as connection:
        connection.execute(
            sa_update(sends)
            .where(sends.c.event_id == message.event_id, sends.c.status == "sending")
            .values(status="retrying", updated_at=now())
        )


def _sent_parts(connection: Connection, message: OutboundMessage, count: int) -> frozenset[int]:
    """Which of the first `count` requests already went out on an earlier attempt."""
    ids = {part_id(message, index): index for index in range(count)}
    if not ids:
        return frozenset()
    return frozenset(ids[event_id] for event_id in connection.execute(_SENT, {"ids": list(ids)}).scalars())


def record_part(engine: Engine, message: OutboundMessage, index: int, kind: str, provider_id: str | None) -> None:
    part = part_id(message, index)
    with session_scope(engine) as session:
        session.execute(_SEND_INSERT, _send(message, part, "sent", provider_id=provider_id))
        _log(session, message, part, kind, provider_id)


def record_outcome(engine: Engine, message: OutboundMessage, outcome: Outcome, *, over: str = "sending") -> bool:
    """Settle the message over a row in status `over`: this attempt's claim (`sending`), or for a message given
    up on (`give_up`) a claim its last attempt released (`retrying`). False when another attempt settled it."""
    with session_scope(engine) as session:
        changes = {
            "status": outcome.status,
            "provider_message_id": outcome.provider_id,
            "error": outcome.error[:500],
            "updated_at": now(),
        }
        # An UPDATE by key rather than a load and a flush, of this attempt's claim only: another attempt may have
        # settled the message meanwhile (in doubt), and told everyone so.
        updated = session.execute(_OUTCOME, {"send": message.event_id, "over": over, **changes})
        if not updated.rowcount:  # type: ignore[attr-defined]
            settled = session.execute(_STATUS, {"send": message.event_id}).first()
            if settled is not None:
                log.warning(
                    "a send finished after another attempt settled it",
                    extra={"status": outcome.status, "settled": settled[0]},
                )
                return False
            # The claim was never written.
            row = _send(message, message.event_id, outcome.status, provider_id=outcome.provider_id)
            session.execute(_SEND_INSERT, {**row, "error": outcome.error[:500]})
        if outcome.status == "sent":
            _log(session, message, message.event_id, outcome.kind, outcome.provider_id)
        if outcome.status != "refused":
            add_to_outbox(
                session, topic=CHANNEL_DELIVERY, event=_delivery(message, outcome), key=message.conversation_id
            )
        if outcome.handoff_note is not None:
            add_to_outbox(
                session,
                topic=HANDOFF_COMMANDS,
                event=_handoff(message, outcome.handoff_note, outcome.handoff_reason),
                key=message.conversation_id,
            )
    return True


# Built once, values bound at execution: SQLAlchemy works out a statement's cache key once per object.
_SENDS = OutboundSend.__table__  # type: ignore[attr-defined]
# The SET clause comes from the parameters' other names (status, provider_message_id, error, updated_at).
_OUTCOME = sa_update(_SENDS).where(_SENDS.c.event_id == bindparam("send"), _SENDS.c.status == bindparam("over"))
_STATUS = sa_select(_SENDS.c.status).where(_SENDS.c.event_id == bindparam("send"))
_SENT = sa_select(_SENDS.c.event_id).where(_SENDS.c.event_id.in_(bindparam("ids", expanding=True)))
_SEND_INSERT = sa_insert(_SENDS)


def _send(
    message: OutboundMessage, event_id: uuid.UUID, status: str, *, provider_id: str | None = None
) -> dict[str, Any]:
    """A send row's values (`OutboundSend`'s columns), as plain values: a table-model object cost more to build
    than the statement that writes it."""
    return {
        "event_id": event_id,
        "tenant_id": message.tenant_id,
        "conversation_id": message.conversation_id,
        "author": message.author.value,
        "status": status,
        "provider_message_id": provider_id,
        "error": "",
        "updated_at": now(),
    }


def _log(session: Session, message: OutboundMessage, event_id: uuid.UUID, kind: str, provider_id: str | None) -> None:
    if provider_id is None:
        return
    image_alone = kind == "image" and message.channel is not Channel.WHATSAPP
    log_message(
        session,
        tenant_id=message.tenant_id,
        channel=message.channel.value,
        channel_account_id=uuid.UUID(message.channel_account_id),
        conversation_id=message.conversation_id,
        direction="out",
        channel_message_id=provider_id,
        event_id=event_id,
        kind=kind,
        text=(message.image_url or "") if image_alone else message.text,
    )


def _delivery(message: OutboundMessage, outcome: Outcome) -> DeliveryStatus:
    state = DeliveryState.SENT if outcome.status == "sent" else DeliveryState.FAILED
    return DeliveryStatus(
        event_id=derived_id("delivery", message.event_id, state.value),
        tenant_id=message.tenant_id,
        correlation_id=message.correlation_id,
        causation_id=message.event_id,
        occurred_at=now(),
        producer="ingest",
        conversation_id=message.conversation_id,
        channel=message.channel,
        message_id=outcome.provider_id or str(message.event_id),
        state=state,
        error_code=outcome.error_code,
        error_detail=outcome.error[:500] or None,
    )


def give_up(engine: Engine, message: OutboundMessage, error: BaseException) -> bool:
    """The message went to the DLQ with nothing sent (every attempt released its claim: the channel stayed
    unavailable or rate limited past the retry budget). It is failed, and a person is asked to reach the customer,
    as for any message the channel would not carry; a redrive of the dead letter then finds it finished. A claim
    still `sending` (a post may have gone out) or a message settled meanwhile is left as it is."""
    detail = f"not sent: {type(error).__name__}: {error}"
    return record_outcome(engine, message, Outcome(status="failed", error=detail, handoff_note=detail), over="retrying")


def _handoff(message: OutboundMessage, note: str, reason: HandoffReason) -> RequestHandoff:
    # CHANNEL_WINDOW_CLOSED is the closest reason for every "this channel cannot carry the message" case,
    # token errors included: a person must reach the customer (and, for a token, reconnect the account).
    return RequestHandoff(
        **caused_by(message, "handoff", producer="ingest"),
        conversation_id=message.conversation_id,
        actor=Actor(kind=ActorKind.SYSTEM, id="ingest"),
        reason=reason,
        channel=message.channel,
        channel_account_id=message.channel_account_id,
        customer_id=message.customer_id,
        note=note[:500],
    )
