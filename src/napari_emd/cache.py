"""A process-wide cache of indexes built on first use (the stream line indexes, the
energy-plane event indexes, the blob record indexes): one build per key even when many
dask tasks ask at once, least recently used entries dropped past a size or count limit.
Keys hold a file identity (path, mtime, size), so a rewritten file gets a new entry."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class ProcessCache(Generic[T]):
    """Values built once per key and shared by the threads of this process.

    ``budget``: the most bytes (sum of the values' ``nbytes``) kept; ``max_items``: the
    most entries. Past either limit the least recently used entries go, never the newest.
    """

    def __init__(self, budget: int | None = None, max_items: int | None = None) -> None:
        self.budget = budget
        self.max_items = max_items
        self._lock = threading.Lock()
        self._values: OrderedDict[Hashable, T] = OrderedDict()
        self._building: dict[Hashable, threading.Lock] = {}

    def get(self, key: Hashable, build: Callable[[], T]) -> T:
        """The value of ``key``, built by ``build()`` the first time (other threads that
        ask meanwhile wait for that build instead of repeating it; a build that raises
        leaves nothing behind, and the next call tries again)."""
        with self._lock:
            value = self._values.get(key)
            if value is not None:
                self._values.move_to_end(key)
                return value
            building = self._building.setdefault(key, threading.Lock())
        with building:
            with self._lock:
                value = self._values.get(key)
            if value is not None:
                return value
            try:
                value = build()
            except BaseException:
                with self._lock:
                    self._building.pop(key, None)
                raise
            with self._lock:  # stored before the build lock goes: no second build
                self._values[key] = value
                self._building.pop(key, None)
                self._evict()
        return value

    def _evict(self) -> None:
        if self.max_items is not None:
            while len(self._values) > max(self.max_items, 1):
                self._values.popitem(last=False)
        if self.budget is not None:
            total = sum(int(getattr(v, "nbytes", 0)) for v in self._values.values())
            while total > self.budget and len(self._values) > 1:
                _, old = self._values.popitem(last=False)
                total -= int(getattr(old, "nbytes", 0))

    def pop(self, key: Hashable) -> T | None:
        """Forget the entry of ``key`` (e.g. found corrupt); returns it, or None."""
        with self._lock:
            return self._values.pop(key, None)

    def peek(self, key: Hashable) -> T | None:
        """The entry of ``key`` if it is built, without building it."""
        with self._lock:
            return self._values.get(key)

    def clear(self) -> None:
        """Forget every entry (e.g. after rewriting a file in place)."""
        with self._lock:
            self._values.clear()

    def __len__(self) -> int:
        return len(self._values)

    def values(self) -> list[T]:
        """The entries, least recently used first."""
        with self._lock:
            return list(self._values.values())
