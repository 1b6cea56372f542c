"""Shutdown stops every subscriber at once and bounds each: a stuck or failing one holds back none of the others."""

import asyncio

import pytest

from sellmesh.mesh import stop_subscribers


class FakeSubscriber:
    def __init__(self, title: str, *, hangs: bool = False, fails: bool = False) -> None:
        self.title_ = title
        self.hangs = hangs
        self.fails = fails
        self.stopped = False
        self.cancelled = False

    async def stop(self) -> None:
        if self.fails:
            raise RuntimeError("last fetch timed out")
        if self.hangs:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled = True
                raise
        await asyncio.sleep(0.01)
        self.stopped = True


async def test_a_stuck_and_a_failing_subscriber_do_not_keep_the_others_from_stopping(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stuck, failing = FakeSubscriber("agent", hangs=True), FakeSubscriber("orders", fails=True)
    healthy = [FakeSubscriber("ingest"), FakeSubscriber("handoff")]
    await stop_subscribers([stuck, failing, *healthy], within=0.2)
    assert all(sub.stopped for sub in healthy)
    # Given up on after `within`: cancelled, not waited for.
    assert stuck.cancelled and not stuck.stopped
    warned = {(r.subscriber, r.stuck) for r in caplog.records if r.getMessage() == "consumer did not stop cleanly"}  # type: ignore[attr-defined]
    assert warned == {("agent", True), ("orders", False)}
