"""The bounded LRU map the in-memory caches use: entry and byte bounds, recency, oversized values."""

from __future__ import annotations

from services.common.lru import LruCache


def test_the_least_recently_used_entry_goes_first() -> None:
    cache: LruCache[str, int] = LruCache(2)
    cache.put("a", 1)
    cache.put("b", 2)
    assert cache.get("a") == 1  # now "b" is the least recently used
    cache.put("c", 3)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (1, None, 3)
    assert len(cache) == 2


def test_the_byte_bound_holds_and_an_oversized_value_is_not_kept() -> None:
    cache: LruCache[str, bytes] = LruCache(100, max_bytes=10, size=len)
    cache.put("a", b"12345")
    cache.put("b", b"12345")
    cache.put("c", b"123")  # 13 bytes: "a" goes
    assert cache.get("a") is None and cache.bytes == 8
    cache.put("huge", b"x" * 11)
    assert cache.get("huge") is None and cache.get("b") == b"12345" and cache.bytes == 8
    cache.put("b", b"1")  # replacing a value counts only the new one
    assert cache.bytes == 4


def test_zero_entries_keeps_nothing() -> None:
    cache: LruCache[str, int] = LruCache(0)
    cache.put("a", 1)
    assert not cache.enabled and cache.get("a") is None and len(cache) == 0
