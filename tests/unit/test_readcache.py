"""ReadCache: per-engine TTL entries, no cached misses, and no value kept across a clear it overlapped."""

from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import Engine, create_engine

from sellmesh import readcache
from sellmesh.readcache import ReadCache

TTL = 5.0


class Clock:
    """Stands in for the `time` module inside sellmesh.readcache: only `monotonic` is read there."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


class Loader:
    """A loader that counts its calls and returns whatever `value` is at the time of the call."""

    def __init__(self, value: str | None) -> None:
        self.value = value
        self.calls = 0

    def __call__(self) -> str | None:
        self.calls += 1
        return self.value


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(readcache, "time", fake)
    return fake


@pytest.fixture
def engines() -> Iterator[tuple[Engine, Engine]]:
    first, second = create_engine("sqlite://"), create_engine("sqlite://")
    yield first, second
    first.dispose()
    second.dispose()


@pytest.fixture
def engine(engines: tuple[Engine, Engine]) -> Engine:
    return engines[0]


def test_a_second_read_within_the_ttl_does_not_call_the_loader(clock: Clock, engine: Engine) -> None:
    cache: ReadCache[str] = ReadCache(ttl_seconds=TTL)
    load = Loader("v1")
    assert cache.get(engine, "k", load) == "v1"
    load.value = "v2"
    clock.now += TTL - 0.01
    assert cache.get(engine, "k", load) == "v1"
    assert load.calls == 1


def test_a_read_after_the_ttl_reloads(clock: Clock, engine: Engine) -> None:
    cache: ReadCache[str] = ReadCache(ttl_seconds=TTL)
    load = Loader("v1")
    cache.get(engine, "k", load)
    load.value = "v2"
    clock.now += TTL
    assert cache.get(engine, "k", load) == "v2"
    assert load.calls == 2
    assert cache.get(engine, "k", load) == "v2"  # the reloaded value is kept again
    assert load.calls == 2


def test_a_missing_row_is_never_cached_so_a_row_that_appears_is_found_at_once(clock: Clock, engine: Engine) -> None:
    cache: ReadCache[str] = ReadCache(ttl_seconds=TTL)
    load = Loader(None)
    assert cache.get(engine, "k", load) is None
    assert cache.get(engine, "k", load) is None
    assert load.calls == 2
    load.value = "connected"
    assert cache.get(engine, "k", load) == "connected"
    assert load.calls == 3


def test_a_missing_row_after_the_ttl_is_returned_as_missing_not_as_the_old_value(clock: Clock, engine: Engine) -> None:
    cache: ReadCache[str] = ReadCache(ttl_seconds=TTL)
    load = Loader("v1")
    cache.get(engine, "k", load)
    load.value = None
    clock.now += TTL + 1
    assert cache.get(engine, "k", load) is None
    assert cache.get(engine, "k", load) is None
    assert load.calls == 3


def test_two_engines_never_share_an_entry(clock: Clock, engines: tuple[Engine, Engine]) -> None:
    first, second = engines
    cache: ReadCache[str] = ReadCache(ttl_seconds=TTL)
    first_load, second_load = Loader("from first"), Loader("from second")
    assert cache.get(first, "k", first_load) == "from first"
    assert cache.get(second, "k", second_load) == "from second"
    assert cache.get(first, "k", second_load) == "from first"
    assert cache.get(second, "k", first_load) == "from second"
    assert (first_load.calls, second_load.calls) == (1, 1)


def test_different_keys_on_one_engine_are_kept_apart(clock: Clock, engine: Engine) -> None:
    cache: ReadCache[str] = ReadCache(ttl_seconds=TTL)
    assert cache.get(engine, ("whatsapp", "1"), Loader("a")) == "a"
    assert cache.get(engine, ("whatsapp", "2"), Loader("b")) == "b"
    assert cache.get(engine, ("whatsapp", "1"), Loader("not loaded")) == "a"


def test_clear_forces_a_reload_on_every_engine(clock: Clock, engines: tuple[Engine, Engine]) -> None:
    first, second = engines
    cache: ReadCache[str] = ReadCache(ttl_seconds=TTL)
    load = Loader("v1")
    cache.get(first, "k", load)
    cache.get(second, "k", load)
    load.value = "v2"
    cache.clear()
    assert cache.get(first, "k", load) == "v2"
    assert cache.get(second, "k", load) == "v2"
    assert load.calls == 4


def test_a_value_loaded_across_a_clear_is_returned_but_not_kept(clock: Clock, engine: Engine) -> None:
    cache: ReadCache[str] = ReadCache(ttl_seconds=TTL)
    calls: list[str] = []

    def load_during_a_commit() -> str:
        # A commit elsewhere clears the cache while this read runs: what it read may predate that commit.
        calls.append("overlapped")
        cache.clear()
        return "maybe stale"

    assert cache.get(engine, "k", load_during_a_commit) == "maybe stale"
    after = Loader("fresh")
    assert cache.get(engine, "k", after) == "fresh"
    assert after.calls == 1
    # A load that overlaps no clear is kept as usual.
    assert cache.get(engine, "k", after) == "fresh"
    assert after.calls == 1
    assert calls == ["overlapped"]


def test_entries_beyond_max_entries_do_not_grow_without_bound(clock: Clock, engine: Engine) -> None:
    limit = 10
    cache: ReadCache[int] = ReadCache(ttl_seconds=TTL, max_entries=limit)
    calls: list[int] = []

    def loader(key: int) -> Callable[[], int]:
        def load() -> int:
            calls.append(key)
            return key

        return load

    keys = range(1000)
    for key in keys:
        assert cache.get(engine, key, loader(key)) == key
    calls.clear()
    for key in keys:
        assert cache.get(engine, key, loader(key)) == key
    # At most `limit` values can still have been held, so nearly every key had to be loaded again.
    assert len(calls) >= len(keys) - limit
    assert len(cache._by_engine[engine]) <= limit


def test_a_full_cache_still_keeps_the_value_it_just_loaded(clock: Clock, engine: Engine) -> None:
    cache: ReadCache[str] = ReadCache(ttl_seconds=TTL, max_entries=2)
    for key in ("a", "b", "c"):
        cache.get(engine, key, Loader(key))
    load = Loader("not loaded")
    assert cache.get(engine, "c", load) == "c"
    assert load.calls == 0


def test_fresh_answers_from_the_cache_alone_until_the_value_expires_or_is_cleared(clock: Clock) -> None:
    cache: ReadCache[str] = ReadCache(ttl_seconds=TTL)
    engine = create_engine("sqlite://")
    assert cache.fresh(engine, "k") is None
    cache.get(engine, "k", Loader("v"))
    assert cache.fresh(engine, "k") == "v"
    assert cache.fresh(create_engine("sqlite://"), "k") is None, "another engine's value leaked"
    clock.now += TTL + 0.1
    assert cache.fresh(engine, "k") is None
    cache.get(engine, "k", Loader("w"))
    cache.clear()
    assert cache.fresh(engine, "k") is None
