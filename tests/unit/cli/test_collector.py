"""Start-up holds the garbage collector and settles it once the long-lived objects are built."""

import gc
from collections.abc import Iterator

import pytest

from sellmesh.cli import START_UP_YOUNG_THRESHOLD, hold_collector, settle_collector


@pytest.fixture
def restored_collector() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


@pytest.mark.usefixtures("restored_collector")
def test_the_collector_runs_again_after_start_up_with_rarer_young_passes_and_start_up_frozen() -> None:
    _, *older = gc.get_threshold()
    hold_collector()
    # Held, not off: a start-up that hangs still collects its garbage.
    assert gc.isenabled() and gc.get_threshold() == (START_UP_YOUNG_THRESHOLD, *older)
    built = [[i] for i in range(1000)]  # what start-up keeps for the process's life (lists: tracked by the collector)
    assert any(o is built[0] for o in gc.get_objects())
    settle_collector(young=12_345)
    assert gc.isenabled()
    assert gc.get_threshold() == (12_345, *older)
    # Frozen: in no generation a collection walks any more.
    assert not any(o is built[0] or o is built for o in gc.get_objects())
