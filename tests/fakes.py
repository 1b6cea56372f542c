"""Hand-written fakes for tests. The Graph API stand-in lives in `sellmesh.sandbox.fake_graph`, shared with the
benchmarks; it is re-exported here so tests import every fake from one place."""

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
    "Recorded",
    "Scripted",
    "graph_error",
    "token_error",
]
