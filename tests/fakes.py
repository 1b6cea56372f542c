"""Hand-written fakes for tests. The Graph API stand-in lives in `sellmesh.sandbox.fake_graph`, shared with the
benchmarks; it is re-exported here so tests import every fake from one place."""

import asyncio
from collections import defaultdict

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
