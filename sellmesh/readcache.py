"""A short-lived cache for rows read on every message's path but rarely changed (tenants, channel accounts).

Each value is kept `ttl_seconds` per engine. The owner of the cached tables clears it on every commit that
changes them, so a change made in this process is seen at once; another process sees it within the TTL.
Nothing is cached for a missing row: a channel account connected a moment ago must be found.
"""

import threading
import time
import weakref
from collections.abc import Callable, Hashable, Iterable
from typing import Any, Generic, TypeVar

from sqlalchemy import Engine
from sqlalchemy import event as sa_event
from sqlalchemy.orm import Mapper, Session, object_session

V = TypeVar("V")


class ReadCache(Generic[V]):
    def __init__(self, *, ttl_seconds: float, max_entries: int = 10_000) -> None:
        self.ttl_seconds = ttl_seconds
        self.max_entries = max_entries
        # Per engine, so tests on several databases in one process never see each other's rows.
        self._by_engine: weakref.WeakKeyDictionary[Engine, dict[Hashable, tuple[float, V]]] = (
            weakref.WeakKeyDictionary()
        )
        self._lock = threading.Lock()  # readers run in worker threads
        # Bumped by clear(): a value loaded before a clear may predate the change that caused it, so it is not kept.
        self._generation = 0

    def get(self, engine: Engine, key: Hashable, load: Callable[[], V | None]) -> V | None:
        now = time.monotonic()
        with self._lock:
            entries = self._by_engine.setdefault(engine, {})
            hit = entries.get(key)
            generation = self._generation
        if hit is not None and hit[0] > now:
            return hit[1]
        value = load()
        if value is not None:
            with self._lock:
                if generation != self._generation:
                    return value
                if len(entries) >= self.max_entries:
                    entries.clear()
                entries[key] = (now + self.ttl_seconds, value)
        return value

    def fresh(self, engine: Engine, key: Hashable) -> V | None:
        """The cached value while it is fresh, else None (then `get` loads it): lets a caller on the event
        loop skip the worker thread its load would need."""
        with self._lock:
            hit = self._by_engine.get(engine, {}).get(key)
        return hit[1] if hit is not None and hit[0] > time.monotonic() else None

    def clear(self) -> None:
        with self._lock:
            self._generation += 1
            for entries in self._by_engine.values():
                entries.clear()


def clear_on_writes(models: Iterable[type], *caches: ReadCache[Any]) -> None:
    """Clear `caches` whenever a row of `models` is written through the ORM in this process: at the flush, and
    again at the commit, since a reader between the two still saw the committed rows and may have cached them."""
    written_here = object()  # this registration's mark in a session's info

    def written(_mapper: Mapper[object], _connection: object, target: object) -> None:
        session = object_session(target)
        if session is not None:
            session.info[written_here] = True
        for cache in caches:
            cache.clear()

    def committed(session: Session) -> None:
        if session.info.pop(written_here, False):
            for cache in caches:
                cache.clear()

    for model in models:
        for when in ("after_insert", "after_update", "after_delete"):
            sa_event.listen(model, when, written)
    sa_event.listen(Session, "after_commit", committed)
