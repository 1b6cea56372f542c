"""Hand-written fakes for tests. The Graph API stand-in lives in `sellmesh.sandbox.fake_graph`, shared with the
benchmarks; it is re-exported here so tests import every fake from one place."""

import asyncio
import json
import uuid
from collections import defaultdict
from typing import Any

from aiokafka import ConsumerRecord, TopicPartition
from redis.exceptions import ConnectionError as RedisConnectionError

from schemas.handoff import ResolveHandoff
from sellmesh.sandbox.fake_graph import (
    MESSENGER_WINDOW_CLOSED,
    RATE_LIMITED,
    SERVER_ERROR,
    SUCCEED,
    WHATSAPP_WINDOW_CLOSED,
    FakeGraphApi,
    Recorded,
    Scripted,
    graph_error,
    token_error,
)

__all__ = [
    "MESSENGER_WINDOW_CLOSED",
    "RATE_LIMITED",
    "SERVER_ERROR",
    "SUCCEED",
    "WHATSAPP_WINDOW_CLOSED",
    "FakeGraphApi",
    "FakeKafkaConsumer",
    "KeyOrderTracker",
    "PublishRecorder",
    "Recorded",
    "Scripted",
    "graph_error",
    "kafka_record",
    "token_error",
]


class FakeKafkaConsumer:
    """The part of an aiokafka consumer that commits: the partitions it owns of topic `t`, and every commit it
    was asked for (refused with ConnectionError while `failing`)."""

    def __init__(self, partitions: range = range(4)) -> None:
        self.commits: list[dict[TopicPartition, int]] = []
        self.owned = {TopicPartition("t", p) for p in partitions}
        self.failing = False

    def assignment(self) -> set[TopicPartition]:
        return self.owned

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if self.failing:
            raise ConnectionError("broker gone")
        self.commits.append(dict(offsets))


def kafka_record(partition: int, offset: int) -> ConsumerRecord[bytes, bytes]:
    """A record of topic `t`."""
    return ConsumerRecord("t", partition, offset, 0, 0, None, b"{}", None, 0, 2, [])


class PublishRecorder:
    """Stands in for the broker's publish: keeps what it took, in the order it took it. `failures` refuses that
    many publishes, `down` every one, `delay` is the broker's time to answer. With `no_confirm` it answers with
    a future, as FastStream does, and a refusal arrives through that future."""

    def __init__(self, *, failures: int = 0, down: bool = False, delay: float = 0.0) -> None:
        self.failures = failures
        self.down = down
        self.delay = delay
        self.refused_keys: set[bytes] = set()  # publishes of these keys are refused while they are here
        self.published: list[bytes] = []
        self.in_flight = 0
        self.most_in_flight = 0  # publishes handed over before the first of them was answered, at most

    async def publish(self, message: bytes, *, key: bytes = b"", no_confirm: bool = False, **_: Any) -> Any:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        answer = self._answer(message, key)
        if no_confirm:
            return asyncio.ensure_future(answer)
        return await answer

    async def _answer(self, message: bytes, key: bytes) -> None:
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            else:
                await asyncio.sleep(0)  # a broker answers later, never within the call
            if self.down or self.failures or key in self.refused_keys:
                self.failures = max(0, self.failures - 1)
                raise ConnectionError("broker unreachable")
            self.published.append(message)
        finally:
            self.in_flight -= 1

    def event_ids(self) -> list[uuid.UUID]:
        return [uuid.UUID(json.loads(message)["event_id"]) for message in self.published]


class KeyOrderTracker:
    """A handler that records what each key (conversation) saw, in order, and the most messages ever in hand
    at once; it yields `delay` seconds per message, so other partitions get their turn if they can."""

    def __init__(self, *, delay: float = 0.02) -> None:
        self.delay = delay
        self.seen: dict[str, list[str]] = defaultdict(list)
        self.in_hand = 0
        self.most_in_hand = 0

    async def __call__(self, command: ResolveHandoff) -> None:
        self.in_hand += 1
        self.most_in_hand = max(self.most_in_hand, self.in_hand)
        try:
            await asyncio.sleep(self.delay)
            self.seen[command.conversation_id].append(command.note)
        finally:
            self.in_hand -= 1

    @property
    def handled(self) -> int:
        return sum(map(len, self.seen.values()))


class FlakyDedup:
    """An in-memory dedup whose lookup fails (as Redis does when it is down) for chosen event ids, `failures` times."""

    def __init__(self, failing: frozenset[uuid.UUID] = frozenset(), *, failures: int = 0) -> None:
        self.failures: dict[uuid.UUID, int] = dict.fromkeys(failing, failures)
        self.marked: set[str] = set()

    async def seen(self, key: str) -> bool:
        event_id = uuid.UUID(key.rsplit(":", 1)[1])
        if self.failures.get(event_id, 0) > 0:
            self.failures[event_id] -= 1
            raise RedisConnectionError("redis is down")
        return key in self.marked

    async def mark(self, key: str) -> None:
        self.marked.add(key)
