"""Retry a dependency call with backoff, then turn a lasting failure into 503 + Retry-After."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import httpx
import psycopg
import psycopg_pool
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from services.common.errors import ServiceUnavailable
from services.common.retry import async_retrying

T = TypeVar("T")


class StoreClosed(RuntimeError):
    """The embedded store could not be opened (another process holds it, or it was closed)."""


def is_outage(exc: BaseException) -> bool:
    """Errors that mean "the dependency is not there right now", as opposed to a bug or bad input."""
    if isinstance(exc, psycopg.OperationalError | psycopg_pool.PoolTimeout | psycopg_pool.PoolClosed):
        return True
    if isinstance(exc, psycopg.errors.AdminShutdown | psycopg.errors.CannotConnectNow):
        return True
    if isinstance(exc, httpx.TransportError | ResponseHandlingException | StoreClosed | ConnectionError):
        return True
    if isinstance(exc, UnexpectedResponse):
        return exc.status_code is None or exc.status_code >= 500
    # qdrant-client's embedded mode says so in a RuntimeError once closed
    return isinstance(exc, RuntimeError) and "closed" in str(exc).lower()


@dataclass(frozen=True)
class RetryPolicy:
    """QDRANT_MAX_RETRIES / QDRANT_RETRY_MIN_WAIT / QDRANT_RETRY_MAX_WAIT, shared by every dependency."""

    attempts: int
    min_wait: float
    max_wait: float

    def retry_after(self) -> int:
        return max(1, int(round(self.max_wait)) or 1)

    async def call(self, dependency: str, fn: Callable[[], Awaitable[T]]) -> T:
        """Run `fn` with retries; a dependency that stays down raises ServiceUnavailable naming it."""
        try:
            async for attempt in async_retrying(self.attempts, self.min_wait, self.max_wait, is_outage):
                with attempt:
                    return await fn()
        except Exception as exc:
            if is_outage(exc):
                raise ServiceUnavailable(
                    f"{dependency} is unavailable: {describe(exc)}", retry_after=self.retry_after(),
                    code=f"{dependency}_unavailable",
                ) from exc
            raise
        raise AssertionError("unreachable: tenacity re-raises the last error")


def describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
