"""Start-up holds the garbage collector and settles it once the long-lived objects are built."""

import gc
from collections.abc import Iterator

import pytest

from sellmesh.cli import hold_collector, settle_collector


@pytest.fixture
def restored_collector() -> Iterator[None]:
    threshold, enabled = gc.get_threshold(), gc.isenabled()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)
    if enabled:
        gc.enable()


@pytest.mark.usefixtures("restored_collector")
def test_the_collector_runs_again_after_start_up_with_rarer_young_passes_and_start_up_frozen() -> None:
    _, *older = gc.get_threshold()
    hold_collector()
    assert not gc.isenabled()
    built = [{"n": i} for i in range(1000)]  # what start-up keeps for the process's life
    settle_collector(young=12_345)
    assert gc.isenabled()
    assert gc.get_threshold() == (12_345, *older)
    assert gc.get_freeze_count() >= len(built)
