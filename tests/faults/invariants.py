"""What must hold after any mix of crashes and outages, read back from the database, the topics and the fake
channel API. Each check returns the problems it found (empty when the invariant holds), so one failing run
shows every broken invariant at once."""

import json
import uuid
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from sqlalchemy import Engine, text

from bench.customers import Inbox
from bench.scenario import Customer
from schemas.topics import ALL_TOPICS, ORDERS_EVENTS, PAYMENTS_EVENTS, dlq_of
from sellmesh.sandbox.fake_graph import Recorded
from sellmesh.service import derived_id

Problems = list[str]


async def read_topic(bootstrap: str, topic: str) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record on `topic` from the beginning to the current end, read without a consumer group."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()  # loads the metadata without creating the topic
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not partitions:
            return []
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records: list[ConsumerRecord[bytes, bytes]] = []

        async def behind() -> bool:
            return any([await consumer.position(tp) < end for tp, end in ends.items()])

        while await behind():
            for batch in (await consumer.getmany(timeout_ms=200)).values():
                records.extend(batch)
        return records
    finally:
        await consumer.stop()


def every_reply_arrived_once(inbox: Inbox, people: list[Customer], *, handed_over: Collection[str] = ()) -> Problems:
    """The channel saw exactly the replies each script expects: none missing, none twice. A customer in
    `handed_over` (a send of theirs in doubt) stopped mid-script, so may have fewer, but never more."""
    problems: Problems = []
    for c in people:
        got = len(inbox.by_recipient[c.customer_id])
        if got == c.expected_replies or (c.customer_id in handed_over and got < c.expected_replies):
            continue
        at_most = " at most" if c.customer_id in handed_over else ""
        problems.append(
            f"{c.customer_id} ({c.script}, {c.channel.value}): {got} replies, expected{at_most} {c.expected_replies}"
        )
    return problems


def every_inbound_answered_or_handed_over(engine: Engine, tenants: list[uuid.UUID]) -> Problems:
    """Each inbound message logged has its one reply sent (the reply's id derives from it), or a person has it."""
    with engine.connect() as conn:
        inbound = conn.execute(
            text("SELECT event_id, tenant_id, conversation_id FROM ingest_messages WHERE direction = 'in'")
        ).all()
        sent = {
            str(row.event_id)
            for row in conn.execute(text("SELECT event_id FROM ingest_sends WHERE status = 'sent'")).all()
        }
        handed_over = {
            (str(row.tenant_id), row.conversation_id)
            for row in conn.execute(text("SELECT tenant_id, conversation_id FROM handoff_tickets")).all()
        }
    ours = {str(t) for t in tenants}
    return [
        f"inbound {row.event_id} in {row.conversation_id}: no reply sent and no handoff"
        for row in inbound
        if str(row.tenant_id) in ours
        and str(derived_id(row.event_id, "reply")) not in sent
        and (str(row.tenant_id), row.conversation_id) not in handed_over
    ]


# How the sender marks a send it gave up on because an earlier attempt may have reached the channel.
IN_DOUBT = "delivery in doubt"


@dataclass(frozen=True)
class SendLog:
    """The sender's rows for our tenants, by event id: those it recorded as sent, and those left in doubt."""

    sent: frozenset[str]
    in_doubt: frozenset[str]


def read_send_log(engine: Engine, tenants: list[uuid.UUID]) -> SendLog:
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT event_id, tenant_id, status, error FROM ingest_sends")).all()
    ours = [row for row in rows if str(row.tenant_id) in {str(t) for t in tenants}]
    return SendLog(
        sent=frozenset(str(row.event_id) for row in ours if row.status == "sent"),
        in_doubt=frozenset(
            str(row.event_id) for row in ours if row.status == "failed" and (row.error or "").startswith(IN_DOUBT)
        ),
    )


def send_id_of(body: Any) -> str | None:
    """The send's event id the sender put in a Send API body: WhatsApp carries it in `biz_opaque_callback_data`,
    Messenger and Instagram in the message's `metadata`."""
    if not isinstance(body, dict):
        return None
    if body.get("messaging_product") == "whatsapp":
        value = body.get("biz_opaque_callback_data")
    else:
        message = body.get("message")
        value = message.get("metadata") if isinstance(message, dict) else None
    return value if isinstance(value, str) and value else None


def arrivals_of(inbox: Inbox) -> list[Recorded]:
    """Every send the fake channel API accepted (a refused request reached nobody)."""
    return [recorded for arrivals in inbox.by_recipient.values() for recorded in arrivals]


def _where(recorded: Recorded) -> str:
    return f"{recorded.path} {json.dumps(recorded.json)[:200]}"


def no_send_arrived_twice(arrivals: Iterable[Recorded]) -> Problems:
    """Each send id reached the channel at most once: a second arrival is a reply the customer read twice."""
    counts = Counter(send_id for r in arrivals if (send_id := send_id_of(r.json)) is not None)
    return [f"send {send_id} arrived {n} times at the channel" for send_id, n in counts.items() if n > 1]


def every_sent_row_arrived(arrivals: Iterable[Recorded], log: SendLog) -> Problems:
    """Each send recorded as `sent` is at the channel: the row says so only after the channel accepted it."""
    arrived = {send_id_of(r.json) for r in arrivals}
    return [f"send {send_id} recorded as sent never arrived at the channel" for send_id in log.sent - arrived]


def every_arrival_is_a_known_send(arrivals: Iterable[Recorded], log: SendLog) -> Problems:
    """Whatever reached the channel is a send the sender knows it made (sent) or may have made (in doubt)."""
    known = log.sent | log.in_doubt
    problems: Problems = []
    for recorded in arrivals:
        send_id = send_id_of(recorded.json)
        if send_id is None:
            problems.append(f"arrival without a send id: {_where(recorded)}")
        elif send_id not in known:
            problems.append(f"send {send_id} arrived but is neither sent nor in doubt: {_where(recorded)}")
    return problems


def sends_match_arrivals(arrivals: list[Recorded], log: SendLog) -> Problems:
    """Every send at the channel once per event id, and each one the sender's log accounts for."""
    return [
        *no_send_arrived_twice(arrivals),
        *every_sent_row_arrived(arrivals, log),
        *every_arrival_is_a_known_send(arrivals, log),
    ]


def _events(records: list[ConsumerRecord[bytes, bytes]], tenants: set[str]) -> list[dict[str, Any]]:
    events = [json.loads(r.value or b"{}") for r in records]
    return [e for e in events if e.get("tenant_id") in tenants]


def orders_match_their_events(
    engine: Engine, tenants: list[uuid.UUID], records: list[ConsumerRecord[bytes, bytes]]
) -> Problems:
    """Each order row is the state of its latest `order_changed` event; one version never has two stories."""
    ours = {str(t) for t in tenants}
    by_version: dict[tuple[str, int], set[str]] = defaultdict(set)
    latest: dict[str, dict[str, Any]] = {}
    for event in _events(records, ours):
        if event.get("type") != "order_changed":
            continue
        snapshot = event["order"]
        by_version[(event["order_id"], snapshot["version"])].add(event["event_id"])
        if event["order_id"] not in latest or snapshot["version"] > latest[event["order_id"]]["version"]:
            latest[event["order_id"]] = snapshot
    problems = [
        f"order {o} version {v}: {len(ids)} different events" for (o, v), ids in by_version.items() if len(ids) > 1
    ]
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT tenant_id, order_id, state, version FROM orders_orders")).all()
    for row in rows:
        if str(row.tenant_id) not in ours:
            continue
        last = latest.get(str(row.order_id))
        if last is None or (last["state"], last["version"]) != (row.state, row.version):
            seen = None if last is None else (last["state"], last["version"])
            problems.append(f"order {row.order_id}: row is {(row.state, row.version)}, its events say {seen}")
    return problems


def payments_match_their_events(
    engine: Engine, tenants: list[uuid.UUID], records: list[ConsumerRecord[bytes, bytes]], *, buyers: int
) -> Problems:
    """Every buyer paid once: one `paid` event per paid attempt, its order paid, and nothing paid twice."""
    ours = {str(t) for t in tenants}
    paid_events: dict[str, set[str]] = defaultdict(set)
    for event in _events(records, ours):
        if event.get("type") == "paid":
            paid_events[event["order_id"]].add(event["event_id"])
    with engine.connect() as conn:
        attempts = conn.execute(text("SELECT tenant_id, order_id, status FROM payments_attempts")).all()
        orders = {
            str(row.order_id): row.state
            for row in conn.execute(text("SELECT order_id, state FROM orders_orders")).all()
        }
    paid = [a for a in attempts if str(a.tenant_id) in ours and a.status == "paid"]
    problems = [f"{len(paid)} paid attempts for {buyers} buyers"] if len(paid) != buyers else []
    for attempt in paid:
        order = str(attempt.order_id)
        if len(paid_events[order]) != 1:
            problems.append(f"order {order}: paid attempt with {len(paid_events[order])} paid events")
        if orders.get(order) != "paid":
            problems.append(f"order {order}: attempt paid but the order is {orders.get(order)}")
    paid_orders = {str(a.order_id) for a in paid}
    problems += [f"order {o}: paid event without a paid attempt" for o in paid_events if o not in paid_orders]
    return problems


async def dead_letters(bootstrap: str, tenants: list[uuid.UUID]) -> Problems:
    """No message of ours in any DLQ: every fault here is transient, so retries must carry each message through."""
    ours = {str(t) for t in tenants}
    problems: Problems = []
    for topic in ALL_TOPICS:
        for record in await read_topic(bootstrap, dlq_of(topic)):
            headers = {k: v.decode(errors="replace") for k, v in record.headers or ()}
            if headers.get("tenant_id") in ours:
                problems.append(
                    f"{dlq_of(topic)}: {headers.get('x-error-kind')} {headers.get('x-error-message', '')[:200]}"
                )
    return problems


async def topic_records(
    bootstrap: str,
) -> tuple[list[ConsumerRecord[bytes, bytes]], list[ConsumerRecord[bytes, bytes]]]:
    return await read_topic(bootstrap, ORDERS_EVENTS), await read_topic(bootstrap, PAYMENTS_EVENTS)
