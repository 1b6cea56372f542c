"""Hand-written fakes for tests. The Graph API stand-in lives in `sellmesh.sandbox.fake_graph`, shared with the
benchmarks; it is re-exported here so tests import every fake from one place."""

import asyncio
import uuid
from collections import defaultdict

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
    "KeyOrderTracker",
    "Recorded",
    "Scripted",
    "graph_error",
    "token_error",
]


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
