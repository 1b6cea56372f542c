"""Re-publishing chosen messages: the plan people confirm, the replay headers, and a paced publish."""

import asyncio
import logging
import time
from collections import Counter
from collections.abc import AsyncIterable, Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from sellmesh.ops.errors import BrokerUnavailable
from sellmesh.ops.message import Headers, Message

log = logging.getLogger(__name__)

REPLAY_TOPIC = "x-replay-topic"
REPLAY_PARTITION = "x-replay-partition"
REPLAY_OFFSET = "x-replay-offset"
REPLAY_REASON = "x-replay-reason"
REPLAY_BY = "x-replay-by"
REPLAY_AT = "x-replay-at"
REPLAY_HEADERS = frozenset({REPLAY_TOPIC, REPLAY_PARTITION, REPLAY_OFFSET, REPLAY_REASON, REPLAY_BY, REPLAY_AT})
UNDECODABLE = "(undecodable)"

Target = Callable[[Message], str]


@dataclass(frozen=True)
class ReplayItem:
    message: Message
    target: str


@dataclass
class ReplayPlan:
    """What a publish will do: every match is counted, at most `limit` of them are kept to publish."""

    source: str
    limit: int
    items: list[ReplayItem] = field(default_factory=list)
    matched: int = 0
    per_type: Counter[str] = field(default_factory=Counter)
    per_target: Counter[str] = field(default_factory=Counter)

    @property
    def left_out(self) -> int:
        return self.matched - len(self.items)

    def summary(self) -> list[str]:
        targets = ", ".join(f"{t} ({n})" for t, n in sorted(self.per_target.items())) or "nothing"
        lines = [
            f"{self.matched} message(s) from {self.source} match; {len(self.items)} will be published to {targets}"
        ]
        lines += [f"  {kind}: {count}" for kind, count in sorted(self.per_type.items())]
        if self.left_out:
            lines.append(f"  capped by --max {self.limit}: the last {self.left_out} match(es) will not be published")
        return lines


async def plan_replay(messages: AsyncIterable[Message], *, source: str, target: Target, limit: int) -> ReplayPlan:
    plan = ReplayPlan(source=source, limit=limit)
    async for message in messages:
        plan.matched += 1
        plan.per_type[message.event_type or UNDECODABLE] += 1
        if len(plan.items) < limit:
            item = ReplayItem(message, target(message))
            plan.items.append(item)
            plan.per_target[item.target] += 1
    return plan


def replay_headers(
    message: Message, *, reason: str, by: str, at: datetime, drop: Collection[str] = ()
) -> list[tuple[str, bytes]]:
    """The original headers (minus `drop` and any earlier replay's marks) plus where this copy came from."""
    kept: Headers = tuple((n, v) for n, v in message.headers if n not in drop and n not in REPLAY_HEADERS)
    marks = {
        REPLAY_TOPIC: message.topic,
        REPLAY_PARTITION: str(message.partition),
        REPLAY_OFFSET: str(message.offset),
        REPLAY_REASON: reason,
        REPLAY_BY: by,
        REPLAY_AT: at.isoformat(),
    }
    return [*kept, *((name, value.encode()) for name, value in marks.items())]


class Pacer:
    """Spaces sends `1/rate` seconds apart from the first, so a replay never floods the consumers."""

    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.interval = 1.0 / rate
        self.clock = clock
        self.sleep = sleep
        self._started: float | None = None
        self._sent = 0

    async def wait(self) -> None:
        now = self.clock()
        if self._started is None:
            self._started = now
        due = self._started + self._sent * self.interval
        if due > now:
            await self.sleep(due - now)
        self._sent += 1


async def publish_items(
    producer: AIOKafkaProducer,
    items: Sequence[ReplayItem],
    *,
    reason: str,
    by: str,
    at: datetime,
    rate: float,
    drop_headers: Collection[str] = (),
) -> int:
    """Publish each item's original bytes and key to its target, in the order read (per-key order holds)."""
    pacer = Pacer(rate)
    for sent, item in enumerate(items):
        await pacer.wait()
        message = item.message
        headers = replay_headers(message, reason=reason, by=by, at=at, drop=drop_headers)
        try:
            await producer.send_and_wait(item.target, value=message.value, key=message.key, headers=headers)
        except KafkaError as exc:
            # Say exactly where it stopped, so a second run can start after the last message that went out.
            raise BrokerUnavailable(
                f"published {sent} of {len(items)}; the broker refused {message.topic} partition "
                f"{message.partition} offset {message.offset}: {exc!r}; nothing after it was published"
            ) from None
    log.info(
        "messages re-published",
        extra={"count": len(items), "targets": sorted({i.target for i in items}), "reason": reason, "by": by},
    )
    return len(items)
