"""Token buckets per user and tool, refilled continuously; tuned per tool from settings."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping


class RateLimited(Exception):
    """The caller's bucket for this tool is empty; `retry_after` says when one token is back."""

    def __init__(self, user: str, tool: str, retry_after: float) -> None:
        self.retry_after = retry_after
        super().__init__(
            f"rate limit exceeded for user {user!r} on tool {tool!r}: retry in {retry_after:.2f} s"
        )


class RateLimiter:
    """`take(user, tool)` spends one token or raises `RateLimited`."""

    def __init__(
        self,
        per_second: float,
        burst: int,
        overrides: Mapping[str, tuple[float, int]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.default = (float(per_second), float(burst))
        self.overrides = {tool: (float(rate), float(size)) for tool, (rate, size) in (overrides or {}).items()}
        self.clock = clock
        self._buckets: dict[tuple[str, str], list[float]] = {}  # (user, tool) -> [tokens, last refill]

    def take(self, user: str, tool: str) -> None:
        """Spend one token from the (user, tool) bucket."""
        rate, size = self.overrides.get(tool, self.default)
        now = self.clock()
        bucket = self._buckets.get((user, tool))
        if bucket is None:
            bucket = self._buckets[(user, tool)] = [size, now]
        tokens = min(size, bucket[0] + (now - bucket[1]) * rate)
        bucket[1] = now
        if tokens < 1.0:
            bucket[0] = tokens
            raise RateLimited(user, tool, (1.0 - tokens) / rate)
        bucket[0] = tokens - 1.0
