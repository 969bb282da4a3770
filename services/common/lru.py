"""A bounded least-recently-used map, by entry count and optionally by size: the in-memory caches' store."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class LruCache(Generic[K, V]):
    """At most `max_entries` values and `max_bytes` of `size(value)`; the least recently used go first.
    Not thread-safe: use it from one thread (the event loop)."""

    def __init__(self, max_entries: int, max_bytes: int | None = None,
                 size: Callable[[V], int] | None = None) -> None:
        self.max_entries = max(0, max_entries)
        self.max_bytes = max_bytes
        self._size = size or (lambda _: 0)
        self._items: OrderedDict[K, V] = OrderedDict()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._items)

    @property
    def enabled(self) -> bool:
        return self.max_entries > 0

    def get(self, key: K) -> V | None:
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def put(self, key: K, value: V) -> None:
        """Keep `value`; a value larger than the whole byte budget is not kept at all."""
        if not self.enabled:
            return
        size = self._size(value)
        if self.max_bytes is not None and size > self.max_bytes:
            return
        old = self._items.pop(key, None)
        if old is not None:
            self.bytes -= self._size(old)
        self._items[key] = value
        self.bytes += size
        while len(self._items) > self.max_entries or (self.max_bytes is not None and self.bytes > self.max_bytes):
            _, evicted = self._items.popitem(last=False)
            self.bytes -= self._size(evicted)

    def clear(self) -> None:
        self._items.clear()
        self.bytes = 0
