"""Forward OpenAI requests to OpenAI-speaking backends: raw bytes in, raw bytes out, with failover."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from urllib.parse import quote

import anyio
import httpx
from fastapi.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from services.common.errors import ServiceUnavailable, UpstreamTimeout
from services.gateway.metrics import GatewayMetrics
from services.gateway.routing import Deployment, Route, Router
from services.gateway.settings import GatewaySettings

log = logging.getLogger(__name__)

MODEL_HEADER = "x-ai-suite-model"
REASON_HEADER = "x-ai-suite-route-reason"
PASSED_HEADERS = ("content-type", "retry-after")
DEFAULT_RETRY_AFTER = 2


class BackendFailed(Exception):
    """One attempt failed in a way another try or another backend may fix."""

    def __init__(self, reason: str, retry_after: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


@dataclass(frozen=True)
class Failure:
    """How one deployment failed, after all its tries."""

    deployment: Deployment
    reason: str
    tries: int
    retry_after: str | None = None


def describe_transport_error(exc: Exception) -> str:
    """Short words for a failed connection, for logs and the client's error message."""
    if isinstance(exc, httpx.ConnectTimeout):
        return "connect timed out"
    if isinstance(exc, httpx.ConnectError):
        return "connection refused"
    if isinstance(exc, httpx.TimeoutException | TimeoutError):
        return "timed out"
    return f"connection failed ({type(exc).__name__})"


def describe_status(response: httpx.Response) -> str:
    message = response.text[:200]
    try:
        message = response.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        pass
    return f"HTTP {response.status_code}: {message}"


def last_event_end(buffer: bytes) -> int:
    """Index just past the last complete SSE event in `buffer` (0 when there is none)."""
    lf = buffer.rfind(b"\n\n")
    crlf = buffer.rfind(b"\r\n\r\n")
    return max(lf + 2 if lf >= 0 else 0, crlf + 4 if crlf >= 0 else 0)


def stream_error_event(message: str) -> bytes:
    error = {"error": {"message": message, "type": "server_error", "code": "upstream_stream_broken"}}
    return b"data: " + json.dumps(error).encode() + b"\n\ndata: [DONE]\n\n"


class Forwarder:
    """Sends one request along the route's deployments until one answers."""

    def __init__(
        self, client: httpx.AsyncClient, router: Router, settings: GatewaySettings, metrics: GatewayMetrics
    ) -> None:
        self.client = client
        self.router = router
        self.settings = settings
        self.metrics = metrics
        self.headers = {"content-type": "application/json", "accept-encoding": "identity"}
        if settings.upstream_key:
            self.headers["authorization"] = f"Bearer {settings.upstream_key}"

    async def forward(self, path: str, raw: bytes, body: dict, route: Route) -> Response:
        """Try the route's deployments in priority order, with bounded retries each, within the deadline."""
        deadline = time.monotonic() + self.settings.llm_request_timeout
        stream = body.get("stream") is True
        failures: list[Failure] = []
        for deployment, cooling in self.router.plan(route.model):
            payload = raw if body.get("model") == deployment.backend_model else self._rewrite(body, deployment)
            tries = 1 if cooling else 1 + self.settings.max_retries
            response = await self._try_deployment(deployment, path, payload, tries, deadline, stream, failures)
            if response is not None:
                reason = route.reason
                if deployment.name != route.model:
                    self.metrics.failovers.labels(route.model).inc()
                    why = failures[0].reason if failures else "in cooldown"
                    reason = f"{route.reason}; fallback from {route.model} ({why})"
                self._label(response, deployment, reason)
                return response
            if time.monotonic() >= deadline:
                break
        raise self._unavailable(failures, deadline)

    async def _try_deployment(self, deployment: Deployment, path: str, payload: bytes, tries: int,
                              deadline: float, stream: bool, failures: list[Failure]) -> Response | None:
        """Up to `tries` attempts on one deployment; a final failure is appended to `failures`."""
        # What the last failure said, not the exception: its traceback holds this frame, and keeping it here
        # would make a cycle that holds the upstream response until the garbage collector runs.
        last: tuple[str, str | None] | None = None
        attempt = 0
        while attempt < tries and (remaining := deadline - time.monotonic()) > 0:
            if attempt:
                await asyncio.sleep(min(0.05 * 2 ** (attempt - 1), 0.5, remaining))
            attempt += 1
            sent = time.perf_counter()
            try:
                response = await self._attempt(deployment, path, payload, deadline - time.monotonic(), stream)
            except BackendFailed as failure:
                last = (failure.reason, failure.retry_after)
                self.metrics.attempts.labels(deployment.name, "failed").inc()
                if self.router.cooldowns.remaining(deployment.api_base) <= 0:
                    self.metrics.cooldowns.labels(deployment.name).inc()
                self.router.cooldowns.mark_failed(deployment.api_base)
                log.warning("backend %s at %s failed (try %d/%d): %s", deployment.name, deployment.api_base,
                            attempt, tries, failure.reason)
                continue
            self.metrics.upstream_seconds.labels(deployment.name).observe(time.perf_counter() - sent)
            self.router.cooldowns.mark_ok(deployment.api_base)
            self.metrics.attempts.labels(deployment.name, "ok").inc()
            return response
        if last is not None:
            failures.append(Failure(deployment, last[0], attempt, last[1]))
        return None

    def _rewrite(self, body: dict, deployment: Deployment) -> bytes:
        return json.dumps({**body, "model": deployment.backend_model}, ensure_ascii=False).encode()

    def _label(self, response: Response, deployment: Deployment, reason: str) -> None:
        response.headers[MODEL_HEADER] = deployment.name
        # Header values must be ASCII; the classifier's reason may quote a Korean keyword.
        response.headers[REASON_HEADER] = quote(reason, safe=" '():;,.-_/=")

    def _unavailable(self, failures: list[Failure], deadline: float) -> ServiceUnavailable:
        self.metrics.unavailable.inc()
        retry_after = next((f.retry_after for f in reversed(failures) if f.retry_after), None)
        tried = "; ".join(
            f"{f.deployment.name} at {f.deployment.api_base}: {f.reason} ({f.tries} tr{'y' if f.tries == 1 else 'ies'})"
            for f in failures
        ) or "no attempt fitted in the time limit"
        seconds = int(retry_after) if retry_after and retry_after.isdigit() else DEFAULT_RETRY_AFTER
        if time.monotonic() >= deadline:
            return UpstreamTimeout(
                f"no model backend answered within LLM_REQUEST_TIMEOUT={self.settings.llm_request_timeout:g}s: "
                f"{tried}", retry_after=seconds,
            )
        return ServiceUnavailable(
            f"no model backend is available: {tried}", retry_after=seconds, code="backends_unavailable"
        )

    def _headers_for(self, deployment: Deployment) -> dict[str, str]:
        if deployment.api_key is None:
            return self.headers
        return {**self.headers, "authorization": f"Bearer {deployment.api_key}"}

    async def _attempt(self, deployment: Deployment, path: str, payload: bytes, remaining: float,
                       stream: bool) -> Response:
        """One request to one backend, counted in its in-flight load until the answer (or stream) ends."""
        load = self.router.load
        load.acquire(deployment.api_base)
        released = False

        def release() -> None:
            nonlocal released
            if not released:
                released = True
                load.release(deployment.api_base)

        try:
            if stream:
                response = await self._attempt_stream(deployment, path, payload, remaining, release)
                if not isinstance(response, StreamingResponse):
                    release()
                return response
            return await self._attempt_plain(deployment, path, payload, remaining)
        except BaseException:
            release()
            raise
        finally:
            if not stream:
                release()

    async def _attempt_plain(self, deployment: Deployment, path: str, payload: bytes, remaining: float) -> Response:
        url = deployment.api_base + path
        timeout = httpx.Timeout(remaining, connect=min(self.settings.connect_timeout, remaining))
        try:
            upstream = await self.client.post(url, content=payload, headers=self._headers_for(deployment),
                                              timeout=timeout)
        except httpx.TransportError as exc:
            raise BackendFailed(describe_transport_error(exc)) from exc
        if upstream.status_code >= 500:
            raise BackendFailed(describe_status(upstream), upstream.headers.get("retry-after"))
        headers = {k: upstream.headers[k] for k in PASSED_HEADERS if k in upstream.headers}
        return Response(upstream.content, status_code=upstream.status_code, headers=headers)

    async def _attempt_stream(self, deployment: Deployment, path: str, payload: bytes, remaining: float,
                              done: Callable[[], None]) -> Response:
        url = deployment.api_base + path
        timeout = httpx.Timeout(self.settings.llm_request_timeout, connect=self.settings.connect_timeout)
        request = self.client.build_request("POST", url, content=payload, headers=self._headers_for(deployment),
                                            timeout=timeout)
        upstream: httpx.Response | None = None
        try:
            # The first chunk is read before answering, so a backend that dies before its first
            # byte can still be failed over; the client sees no difference in time to first token.
            async with asyncio.timeout(remaining):
                upstream = await self.client.send(request, stream=True)
                if upstream.status_code >= 400:
                    await upstream.aread()
                    await upstream.aclose()
                    if upstream.status_code >= 500:
                        raise BackendFailed(describe_status(upstream), upstream.headers.get("retry-after"))
                    headers = {k: upstream.headers[k] for k in PASSED_HEADERS if k in upstream.headers}
                    return Response(upstream.content, status_code=upstream.status_code, headers=headers)
                chunks = upstream.aiter_raw()
                first = await anext(chunks, b"")
        except (httpx.TransportError, TimeoutError) as exc:
            if upstream is not None:
                await upstream.aclose()
            raise BackendFailed(describe_transport_error(exc)) from exc
        media_type = upstream.headers.get("content-type", "text/event-stream")
        return TrackedStream(relay(upstream, chunks, first, done), done, media_type=media_type)


class TrackedStream(StreamingResponse):
    """A relayed stream that ends its backend's in-flight count however the response ends, also when the
    client is gone before the first chunk is sent (then the relay never starts, so its cleanup never runs)."""

    def __init__(self, content: AsyncIterator[bytes], done: Callable[[], None], media_type: str) -> None:
        super().__init__(content, media_type=media_type)
        self.done = done

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.done()


async def relay(upstream: httpx.Response, chunks: AsyncIterator[bytes], first: bytes,
                done: Callable[[], None] | None = None) -> AsyncIterator[bytes]:
    """Pass SSE bytes through whole events, so a broken stream can end with a clean in-band error."""
    pending = first
    try:
        while True:
            cut = last_event_end(pending)
            if cut:
                yield pending[:cut]
                pending = pending[cut:]
            chunk = await anext(chunks, None)
            if chunk is None:
                break
            pending += chunk
        if pending:
            yield pending
    except httpx.TransportError as exc:
        log.warning("backend stream broke after the first byte: %s", describe_transport_error(exc))
        yield stream_error_event(f"the model backend stream broke: {describe_transport_error(exc)}")
    finally:
        # Shielded: on a client disconnect this runs inside a cancelled scope, and the upstream
        # connection must still be closed so the backend stops generating.
        if done is not None:
            done()
        with anyio.CancelScope(shield=True):
            await upstream.aclose()
