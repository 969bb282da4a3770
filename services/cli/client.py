"""A small streaming client for the gateway's OpenAI chat API (server-sent events over httpx)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx

CHAT_PATH = "/v1/chat/completions"
CONVERSATIONS_PATH = "/v1/conversations"
HISTORY_OMITTED_HEADER = "x-ai-suite-history-omitted"
MAX_ERROR_CHARS = 600


class GatewayUnreachable(Exception):
    """Nothing answers at the gateway URL."""

    def __init__(self, url: str, detail: str) -> None:
        super().__init__(f"cannot reach {url}: {detail}")
        self.url = url
        self.detail = detail


class GatewayError(Exception):
    """The gateway answered, but with an error (HTTP status, error event or broken stream)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass
class ChatRequest:
    """One streamed chat completion request."""

    model: str
    messages: list[dict[str, str]]
    max_tokens: int | None = None
    temperature: float | None = None
    conversation: str | None = None  # the gateway adds the stored history and keeps the exchange

    def payload(self) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.model, "messages": self.messages, "stream": True}
        if self.conversation is not None:
            body["conversation"] = self.conversation
        if self.max_tokens is not None:
            body["max_tokens"] = self.max_tokens
        if self.temperature is not None:
            body["temperature"] = self.temperature
        return body


def normalise_base_url(url: str) -> str:
    """Accept both `http://host:port` and `http://host:port/v1`; return the former."""
    url = url.strip().rstrip("/")
    return url.removesuffix("/v1")


def error_message(response: httpx.Response) -> str:
    """The human message inside an OpenAI-shaped error body, or the best text available."""
    try:
        body = response.json()
    except ValueError:
        body = None
    message: Any = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):
            message = error.get("message")
        elif isinstance(error, str):
            message = error
        if message is None:
            message = body.get("detail") or body.get("message")
    if message is None:
        message = response.text.strip() or response.reason_phrase
    text = " ".join(str(message).split())
    return text if len(text) <= MAX_ERROR_CHARS else text[:MAX_ERROR_CHARS] + "..."


def _event_text(data: str) -> str:
    try:
        event = json.loads(data)
    except ValueError as exc:
        raise GatewayError(f"the gateway sent a malformed stream event: {data[:200]!r}") from exc
    if not isinstance(event, dict):
        return ""
    if "error" in event:
        error = event["error"]
        message = error.get("message") if isinstance(error, dict) else error
        raise GatewayError(str(message or "the gateway reported an error mid-stream"))
    choices = event.get("choices") or []
    if not choices or not isinstance(choices[0], dict):
        return ""
    delta = choices[0].get("delta") or {}
    content = delta.get("content") if isinstance(delta, dict) else None
    return content if isinstance(content, str) else ""


def parse_sse(lines: Iterable[str]) -> Iterator[str]:
    """Yield the text deltas of an OpenAI chat stream; stop at `[DONE]`, raise on an error event."""
    data: list[str] = []
    for line in _with_final_blank(lines):
        if line.startswith(":"):
            continue  # SSE comment, used as a keep-alive
        if line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
            continue
        if line or not data:
            continue  # other SSE fields (event:, id:, retry:) carry nothing we use
        payload, data = "\n".join(data), []
        if payload.strip() == "[DONE]":
            return
        if text := _event_text(payload):
            yield text


def _with_final_blank(lines: Iterable[str]) -> Iterator[str]:
    yield from lines
    yield ""  # a stream cut without a trailing blank line still delivers its last event


class GatewayClient:
    """Synchronous client: the CLI does one thing at a time, and sync httpx starts faster."""

    def __init__(
        self, base_url: str, api_key: str | None = None, timeout: float = 120.0, connect_timeout: float = 5.0
    ) -> None:
        self.base_url = normalise_base_url(base_url)
        self.timeout = timeout
        headers = {"Accept": "text/event-stream"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        # trust_env=False: a proxy from the environment must not capture traffic to the local gateway.
        self._http = httpx.Client(
            base_url=self.base_url,
            headers=headers,
            timeout=httpx.Timeout(timeout, connect=connect_timeout),
            trust_env=False,
        )
        self.history_omitted = 0  # turns the gateway left out of the last answer's context

    def __enter__(self) -> GatewayClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def stream_chat(self, request: ChatRequest) -> Iterator[str]:
        """Yield answer text as it arrives; closing the iterator early closes the connection."""
        try:
            with self._http.stream("POST", CHAT_PATH, json=request.payload()) as response:
                if response.status_code >= 400:
                    response.read()
                    raise GatewayError(
                        f"gateway answered {response.status_code}: {error_message(response)}",
                        response.status_code,
                    )
                omitted = response.headers.get(HISTORY_OMITTED_HEADER, "0")
                self.history_omitted = int(omitted) if omitted.isdigit() else 0
                yield from parse_sse(response.iter_lines())
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise GatewayUnreachable(self.base_url, str(exc) or type(exc).__name__) from exc
        except httpx.TimeoutException as exc:
            raise GatewayError(f"the gateway did not answer within {self.timeout:g} s") from exc
        except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
            raise GatewayError(f"the gateway closed the connection mid-answer ({exc})") from exc

    def call(self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None) -> Any:
        """One JSON request (the conversations API); GatewayError for an error answer."""
        try:
            response = self._http.request(method, path, json=json, params=params,
                                          headers={"Accept": "application/json"})
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise GatewayUnreachable(self.base_url, str(exc) or type(exc).__name__) from exc
        except httpx.TimeoutException as exc:
            raise GatewayError(f"the gateway did not answer within {self.timeout:g} s") from exc
        if response.status_code >= 400:
            raise GatewayError(f"gateway answered {response.status_code}: {error_message(response)}",
                               response.status_code)
        try:
            return response.json()
        except ValueError as exc:
            raise GatewayError(f"the gateway answered {path} with something that is not JSON") from exc
