"""Deployment switches that request bodies' validators need. Pydantic validators see no application state, so
the gateway's route class sets these for the request being validated (`problems.problem_route_class`)."""

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar

# HANDOFF_NOTIFY_ALLOW_LOCAL: notify URLs may be plain http and name local addresses (a developer's machine).
NOTIFY_ALLOW_LOCAL: ContextVar[bool] = ContextVar("notify_allow_local", default=False)


@contextlib.contextmanager
def notify_rules(*, allow_local: bool) -> Iterator[None]:
    token = NOTIFY_ALLOW_LOCAL.set(allow_local)
    try:
        yield
    finally:
        NOTIFY_ALLOW_LOCAL.reset(token)
