"""The long-running commands' event loop: uvloop unless SELLMESH_EVENT_LOOP says asyncio."""

import asyncio

import pytest
import uvloop

from sellmesh import event_loop
from sellmesh.settings import MeshSettings


async def _running_loop() -> asyncio.AbstractEventLoop:
    return asyncio.get_running_loop()


def test_uvloop_runs_the_coroutine_on_a_uvloop_loop() -> None:
    loop = event_loop.run(_running_loop(), loop="uvloop")
    assert isinstance(loop, uvloop.Loop)
    assert loop.is_closed()  # the runner closed it on the way out


def test_asyncio_runs_it_on_the_standard_loop() -> None:
    loop = event_loop.run(_running_loop(), loop="asyncio")
    assert not isinstance(loop, uvloop.Loop)
    assert isinstance(loop, asyncio.BaseEventLoop)


def test_the_coroutines_result_and_errors_come_back() -> None:
    async def fails() -> None:
        raise ValueError("boom")

    async def answers() -> int:
        await asyncio.sleep(0)
        return 42

    assert event_loop.run(answers(), loop="uvloop") == 42
    with pytest.raises(ValueError, match="boom"):
        event_loop.run(fails(), loop="uvloop")


def test_the_setting_defaults_to_uvloop_and_refuses_unknown_loops(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SELLMESH_EVENT_LOOP", raising=False)
    assert MeshSettings().sellmesh_event_loop == "uvloop"
    monkeypatch.setenv("SELLMESH_EVENT_LOOP", "asyncio")
    assert MeshSettings().sellmesh_event_loop == "asyncio"
    monkeypatch.setenv("SELLMESH_EVENT_LOOP", "trio")
    with pytest.raises(ValueError, match="sellmesh_event_loop"):
        MeshSettings()
