"""The opt-in exact-response cache: a deterministic request (temperature 0 with a seed) asked again gets the
stored answer, streamed ones replayed byte for byte, without reaching a backend.

Keyed by sha256 of the path, the routed model and the canonical JSON body (sorted keys), so any change to
the messages, the sampling parameters or `stream` is another entry. Requests with `conversation` never come
here: their answer depends on stored history. Only complete 200 answers are kept.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass

from fastapi.responses import Response, StreamingResponse

from services.common.lru import LruCache
from services.gateway.metrics import GatewayMetrics
from services.gateway.proxy import MODEL_HEADER, REASON_HEADER, Forwarder
from services.gateway.routing import Route
from services.gateway.settings import GatewaySettings

CACHE_HEADER = "x-ai-suite-cache"
KEPT_HEADERS = ("content-type", MODEL_HEADER, REASON_HEADER)
BROKEN_STREAM = b"upstream_stream_broken"


@dataclass(frozen=True)
class Stored:
    content: bytes
    headers: dict[str, str]
    streamed: bool
    expires: float


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def deterministic(body: dict) -> bool:
    """Temperature 0 with an integer seed and one choice: the same request gives the same answer."""
    seed = body.get("seed")
    return (_number(body.get("temperature")) and body["temperature"] == 0
            and isinstance(seed, int) and not isinstance(seed, bool) and body.get("n", 1) == 1)


def cache_key(path: str, model: str, body: dict) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(f"{path}\0{model}\0{canonical}".encode("utf-8", "surrogatepass")).hexdigest()


class ResponseCache:
    """A bounded LRU of whole answers, by entries, bytes and age."""

    def __init__(self, settings: GatewaySettings, metrics: GatewayMetrics) -> None:
        self.ttl = settings.response_cache_ttl
        self.entries: LruCache[str, Stored] = LruCache(
            settings.response_cache_entries, settings.response_cache_mb * 1024 * 1024, lambda s: len(s.content))
        self.metrics = metrics

    async def serve(self, forwarder: Forwarder, path: str, raw: bytes, body: dict, route: Route) -> Response:
        """The stored answer, or the backend's, kept for next time when it is complete."""
        key = cache_key(path, route.model, body)
        stored = self.entries.get(key)
        if stored is not None and stored.expires > time.monotonic():
            self.metrics.response_cache_hits.inc()
            return self._replay(stored)
        self.metrics.response_cache_misses.inc()
        response = await forwarder.forward(path, raw, body, route)
        response.headers[CACHE_HEADER] = "miss"
        if response.status_code != 200:
            return response
        headers = {name: response.headers[name] for name in KEPT_HEADERS if name in response.headers}
        if isinstance(response, StreamingResponse):
            response.body_iterator = self._record(key, headers, response.body_iterator)
        else:
            self._keep(key, Stored(bytes(response.body), headers, False, time.monotonic() + self.ttl))
        return response

    async def _record(self, key: str, headers: dict[str, str],
                      chunks: AsyncIterable[str | bytes | memoryview]) -> AsyncIterator[bytes]:
        """Pass the stream through and keep it once it ended whole (a client that left keeps nothing)."""
        seen: list[bytes] = []
        async for chunk in chunks:
            data = chunk.encode() if isinstance(chunk, str) else bytes(chunk)
            seen.append(data)
            yield data
        content = b"".join(seen)
        if BROKEN_STREAM not in content and b"[DONE]" in content:
            self._keep(key, Stored(content, headers, True, time.monotonic() + self.ttl))

    def _keep(self, key: str, stored: Stored) -> None:
        self.entries.put(key, stored)

    @staticmethod
    def _replay(stored: Stored) -> Response:
        headers = {**stored.headers, CACHE_HEADER: "hit"}
        media_type = headers.pop("content-type", "application/json")
        if stored.streamed:
            async def replay() -> AsyncIterator[bytes]:
                yield stored.content

            return StreamingResponse(replay(), media_type=media_type, headers=headers)
        return Response(stored.content, media_type=media_type, headers=headers)
