"""Tenacity retry policies for calls to other services."""

from __future__ import annotations

from collections.abc import Callable

import httpx
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential

TRANSIENT_HTTP = (httpx.ConnectError, httpx.ReadTimeout, httpx.ConnectTimeout, httpx.RemoteProtocolError)


def is_transient(exc: BaseException) -> bool:
    """Errors worth another try: a refused or dropped connection, a timeout."""
    return isinstance(exc, TRANSIENT_HTTP)


def async_retrying(
    max_attempts: int, min_wait: float, max_wait: float, retry_on: Callable[[BaseException], bool] = is_transient
) -> AsyncRetrying:
    """An exponential-backoff policy that re-raises the last error."""
    return AsyncRetrying(
        stop=stop_after_attempt(max(1, max_attempts)),
        wait=wait_exponential(multiplier=min_wait, min=min_wait, max=max_wait),
        retry=retry_if_exception(retry_on),
        reraise=True,
    )
