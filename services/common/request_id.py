"""Request ids: taken from `X-Request-ID` or made at the edge, logged by every service, passed on by its clients.

The id lives in a context variable for the length of one request, so the log filter, the access log line and
the outgoing HTTP clients (`make_client`) all see it without being handed it.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from contextvars import ContextVar

import httpx
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "x-request-id"
# A client's id is kept only when it is short and plain, so it cannot forge log lines or bloat them.
ACCEPTED = re.compile(r"[A-Za-z0-9._:-]{1,128}")
# Probes and scrapes run every few seconds; an access line for each would drown the requests.
QUIET_PATHS = ("/health", "/metrics")

_current: ContextVar[str | None] = ContextVar("request_id", default=None)
access_log = logging.getLogger("services.access")


def current_request_id() -> str | None:
    """The id of the request being served in this context, if any."""
    return _current.get()


def new_request_id() -> str:
    return uuid.uuid4().hex


def accepted_id(value: str | None) -> str | None:
    """The client's id when it is acceptable, else None (a new one is made)."""
    return value if value is not None and ACCEPTED.fullmatch(value) else None


class RequestIdMiddleware:
    """Sets the request id for the request, returns it as `X-Request-ID` and writes one access line."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = dict(scope.get("headers") or []).get(HEADER.encode())
        request_id = accepted_id(given.decode("latin-1") if given is not None else None) or new_request_id()
        token = _current.set(request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (HEADER.encode(), request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            path = scope.get("path", "")
            if not path.startswith(QUIET_PATHS):
                access_log.info("%s %s %d", scope.get("method", ""), path, status, extra={
                    "method": scope.get("method", ""), "path": path, "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                })
            _current.reset(token)


async def propagate_request_id(request: httpx.Request) -> None:
    """httpx request hook: pass the current request id on to the service being called."""
    request_id = _current.get()
    if request_id is not None and HEADER not in request.headers:
        request.headers[HEADER] = request_id


class RequestIdFilter(logging.Filter):
    """Adds `request_id` to every record logged while a request is served."""

    def filter(self, record: logging.LogRecord) -> bool:
        request_id = _current.get()
        if request_id is not None and not hasattr(record, "request_id"):
            record.request_id = request_id
        return True
