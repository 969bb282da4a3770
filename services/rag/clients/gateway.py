"""Chat completions through the gateway, whole or streamed."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx

from services.common.errors import ServiceUnavailable, SuiteError, UpstreamTimeout


class GatewayError(SuiteError):
    """The gateway answered, but not with a completion."""

    status = 502
    type = "upstream_error"
    code = "gateway_error"


class ContextTooLong(GatewayError):
    """The prompt does not fit the answering model's context window."""

    code = "context_length_exceeded"


def _failure(response_status: int, text: str) -> SuiteError:
    message = f"the gateway answered HTTP {response_status}: {text[:300]}"
    if response_status == 400 and "context_length_exceeded" in text:
        return ContextTooLong(message)
    if response_status in (429, 502, 503, 504):
        return ServiceUnavailable(message, retry_after=5, code="gateway_unavailable")
    return GatewayError(message)


class GatewayClient:
    """No retries here: the gateway itself retries and fails over between models."""

    def __init__(self, base_url: str, http: httpx.AsyncClient, model: str, timeout: float,
                 max_tokens: int) -> None:
        self.url = base_url.rstrip("/")
        self.http = http
        self.model = model
        self.timeout = timeout
        self.max_tokens = max_tokens

    def _body(self, messages: list[dict], stream: bool, max_tokens: int | None) -> dict:
        return {"model": self.model, "messages": messages, "stream": stream, "temperature": 0.1,
                "max_tokens": max_tokens or self.max_tokens}

    async def complete(self, messages: list[dict], max_tokens: int | None = None) -> str:
        try:
            response = await self.http.post(f"{self.url}/v1/chat/completions",
                                             json=self._body(messages, False, max_tokens), timeout=self.timeout)
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(f"no answer from the gateway within {self.timeout:g}s") from exc
        except httpx.TransportError as exc:
            raise ServiceUnavailable(f"gateway is unavailable: {type(exc).__name__}",
                                     code="gateway_unavailable") from exc
        if response.status_code != 200:
            raise _failure(response.status_code, response.text)
        try:
            return str(response.json()["choices"][0]["message"]["content"] or "")
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise GatewayError(f"the gateway's answer has no message: {response.text[:200]}") from exc

    async def stream(self, messages: list[dict]) -> AsyncIterator[str]:
        """Yield content deltas; raises a SuiteError if the stream cannot start or breaks."""
        try:
            async with self.http.stream("POST", f"{self.url}/v1/chat/completions",
                                        json=self._body(messages, True, None), timeout=self.timeout) as response:
                if response.status_code != 200:
                    raise _failure(response.status_code, (await response.aread()).decode(errors="replace"))
                async for line in response.aiter_lines():
                    delta = _delta(line)
                    if delta:
                        yield delta
        except httpx.TimeoutException as exc:
            raise UpstreamTimeout(f"no answer from the gateway within {self.timeout:g}s") from exc
        except httpx.TransportError as exc:
            raise ServiceUnavailable(f"gateway is unavailable: {type(exc).__name__}",
                                     code="gateway_unavailable") from exc

    async def ping(self) -> None:
        response = await self.http.get(f"{self.url}/health")
        if response.status_code != 200:
            raise ConnectionError(f"HTTP {response.status_code}")


def _delta(line: str) -> str:
    if not line.startswith("data:"):
        return ""
    data = line[5:].strip()
    if not data or data == "[DONE]":
        return ""
    event = json.loads(data)
    if "error" in event:
        message = event["error"].get("message") if isinstance(event["error"], dict) else event["error"]
        raise GatewayError(f"the answer broke off: {message}")
    choices = event.get("choices") or [{}]
    return str((choices[0].get("delta") or {}).get("content") or "")
