"""Re-publishing chosen messages: the plan people confirm, the replay headers, and a paced publish.

Nothing goes to a topic of the contract unless its bytes decode as that topic's message: a consumer would
only dead-letter it again as `invalid`, over the reason it was kept for. Such messages are refused and
named, and stay where they were read.
"""

import asyncio
import logging
import time
from collections import Counter
from collections.abc import AsyncIterable, Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import groupby

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from schemas.registry import TOPIC_SCHEMAS
from sellmesh.ops.errors import BrokerUnavailable
from sellmesh.ops.message import Headers, Message, decode

log = logging.getLogger(__name__)

REPLAY_TOPIC = "x-replay-topic"
REPLAY_PARTITION = "x-replay-partition"
REPLAY_OFFSET = "x-replay-offset"
REPLAY_REASON = "x-replay-reason"
REPLAY_BY = "x-replay-by"
REPLAY_AT = "x-replay-at"
REPLAY_HEADERS = frozenset({REPLAY_TOPIC, REPLAY_PARTITION, REPLAY_OFFSET, REPLAY_REASON, REPLAY_BY, REPLAY_AT})
UNDECODABLE = "(undecodable)"
REFUSALS_SHOWN = 10

Target = Callable[[Message], str]


@dataclass(frozen=True)
class ReplayItem:
    """What to publish where, and the message it comes from (the replay headers say where that was read)."""

    message: Message
    target: str
    value: bytes
    key: bytes | None
    headers: Headers
    checked: bool = True  # False: the target has no schema to hold the value to

    @classmethod
    def copy(cls, message: Message, target: str, *, checked: bool = True) -> "ReplayItem":
        """The message itself, byte for byte, with its key and headers."""
        return cls(message, target, message.value, message.key, message.headers, checked)


@dataclass(frozen=True)
class Refusal:
    message: Message
    reason: str


# What one chosen message becomes: an item to publish, or why it may not be published.
Prepare = Callable[[Message], Awaitable[ReplayItem | Refusal]]


def copy_to(target: Target) -> Prepare:
    """Each message as it is, to `target(message)`, if it decodes as that topic's message.

    A topic outside the contract (`schemas/registry.py`) has no schema and no consumer in the mesh, so what
    goes there is published unchecked, and the plan says so.
    """

    async def prepare(message: Message) -> ReplayItem | Refusal:
        topic = target(message)
        if topic not in TOPIC_SCHEMAS:
            return ReplayItem.copy(message, topic, checked=False)
        _, problem = decode(message.value, topic)
        if problem is not None:
            return Refusal(message, f"does not decode as a {topic} message: {problem}")
        return ReplayItem.copy(message, topic)

    return prepare


@dataclass
class ReplayPlan:
    """What a publish will do: every match is counted; at most `limit` of them are kept to publish, and the
    matches refused on the way are kept with their reasons."""

    source: str
    limit: int
    items: list[ReplayItem] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)
    matched: int = 0
    per_type: Counter[str] = field(default_factory=Counter)
    per_target: Counter[str] = field(default_factory=Counter)

    @property
    def left_out(self) -> int:
        return self.matched - len(self.items) - len(self.refused)

    def summary(self) -> list[str]:
        if not self.matched:
            return [f"no message in {self.source} matches the selection"]
        targets = ", ".join(f"{t} ({n})" for t, n in sorted(self.per_target.items())) or "nothing"
        lines = [
            f"{self.matched} message(s) from {self.source} match; {len(self.items)} will be published to {targets}"
        ]
        lines += [f"  {kind}: {count}" for kind, count in sorted(self.per_type.items())]
        unchecked = sorted({item.target for item in self.items if not item.checked})
        lines += [f"  {topic} is not a topic of the contract: what goes there is not checked" for topic in unchecked]
        if self.refused:
            lines.append(f"  refused {len(self.refused)}, which will not be published and stay in {self.source}:")
            lines += [f"    {where(r.message)}  {r.reason}" for r in self.refused[:REFUSALS_SHOWN]]
            if len(self.refused) > REFUSALS_SHOWN:
                lines.append(f"    and {len(self.refused) - REFUSALS_SHOWN} more")
        if self.left_out:
            lines.append(f"  capped by --max {self.limit}: the last {self.left_out} match(es) will not be published")
        return lines

    def refusal_error(self) -> str:
        """One line naming every refused message's place, for the error the command ends with."""
        return (
            f"refused {len(self.refused)} message(s) of {self.source} ({offsets(r.message for r in self.refused)}): "
            "nothing was published for them; they stay where they are (see the plan above for why)"
        )


def where(message: Message) -> str:
    return f"p{message.partition}:{message.offset}"


def offsets(messages: Iterable[Message]) -> str:
    """`partition 0 offsets 3, 5-7; partition 2 offset 9`: runs of offsets written as ranges."""
    parts = []
    positions = sorted((m.partition, m.offset) for m in messages)
    for partition, found in groupby(positions, key=lambda p: p[0]):
        numbers = [offset for _, offset in found]
        runs: list[list[int]] = []
        for number in numbers:
            if runs and number == runs[-1][-1] + 1:
                runs[-1].append(number)
            else:
                runs.append([number])
        spans = [str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs]
        noun = "offset" if len(numbers) == 1 else "offsets"
        parts.append(f"partition {partition} {noun} {', '.join(spans)}")
    return "; ".join(parts)


async def plan_replay(messages: AsyncIterable[Message], *, source: str, prepare: Prepare, limit: int) -> ReplayPlan:
    plan = ReplayPlan(source=source, limit=limit)
    async for message in messages:
        plan.matched += 1
        plan.per_type[message.event_type or UNDECODABLE] += 1
        if len(plan.items) >= limit:
            continue
        prepared = await prepare(message)
        if isinstance(prepared, Refusal):
            plan.refused.append(prepared)
        else:
            plan.items.append(prepared)
            plan.per_target[prepared.target] += 1
    return plan


def replay_headers(
    message: Message,
    *,
    reason: str,
    by: str,
    at: datetime,
    drop: Collection[str] = (),
    headers: Headers | None = None,
) -> list[tuple[str, bytes]]:
    """`headers` (the message's own by default), minus `drop` and any earlier replay's marks, plus where the
    message was read."""
    carried = message.headers if headers is None else headers
    kept: Headers = tuple((n, v) for n, v in carried if n not in drop and n not in REPLAY_HEADERS)
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
    """Publish each item's bytes and key to its target, in the order read (per-key order holds)."""
    pacer = Pacer(rate)
    for sent, item in enumerate(items):
        await pacer.wait()
        message = item.message
        headers = replay_headers(message, reason=reason, by=by, at=at, drop=drop_headers, headers=item.headers)
        try:
            await producer.send_and_wait(item.target, value=item.value, key=item.key, headers=headers)
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
