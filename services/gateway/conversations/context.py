"""How much a backend's context holds: asked once a minute, corrected by what its errors and usage say."""

from __future__ import annotations

import json
import logging
import re
import time
from collections import OrderedDict
from dataclasses import dataclass

import httpx

from services.gateway.routing import Deployment

log = logging.getLogger(__name__)

WINDOW_TTL = 60.0  # a restarted backend may come back with another N_CTX
PROBE_TIMEOUT = 2.0
RATIO_MIN, RATIO_MAX, RATIO_SLACK = 0.5, 4.0, 1.1
RATIOS_KEPT = 1024
# Our inference service: "the prompt is N tokens but the context window is M tokens", or
# "max_tokens (X) plus the prompt (N tokens) exceeds the context window of M tokens".
PROMPT_TOKENS = re.compile(r"prompt(?: is|\s*\()\s*(\d+) tokens")
WINDOW_TOKENS = re.compile(r"context window (?:is|of) (\d+) tokens")


@dataclass(frozen=True)
class Overflow:
    """A backend's "the prompt does not fit" answer, with the numbers it gave, if any."""

    prompt_tokens: int | None
    n_ctx: int | None


def _number(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def parse_overflow(status: int, body: bytes) -> Overflow | None:
    """The overflow in a 400 answer: OpenAI's `context_length_exceeded` or llama.cpp's `exceed_context_size_error`."""
    if status != 400:
        return None
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError):
        return None
    if not isinstance(error, dict):
        return None
    if error.get("code") != "context_length_exceeded" and error.get("type") != "exceed_context_size_error":
        return None
    message = str(error.get("message") or "")
    prompt = _number(error.get("n_prompt_tokens"))
    window = _number(error.get("n_ctx"))
    if prompt is None and (found := PROMPT_TOKENS.search(message)):
        prompt = int(found.group(1))
    if window is None and (found := WINDOW_TOKENS.search(message)):
        window = int(found.group(1))
    return Overflow(prompt, window)


class ContextWindows:
    """n_ctx per backend (its /health, else /v1/models meta), cached; CONVERSATION_DEFAULT_CONTEXT otherwise."""

    def __init__(self, client: httpx.AsyncClient, default: int, headers: dict[str, str]) -> None:
        self.client = client
        self.default = default
        self.headers = headers
        self._known: dict[str, tuple[int, float]] = {}

    async def window(self, deployment: Deployment) -> int:
        cached = self._known.get(deployment.api_base)
        if cached is not None and cached[1] > time.monotonic():
            return cached[0]
        found = await self._ask(deployment.api_base)
        self.learn(deployment.api_base, found or self.default)
        return found or self.default

    def learn(self, api_base: str, n_ctx: int) -> None:
        self._known[api_base] = (n_ctx, time.monotonic() + WINDOW_TTL)

    async def _ask(self, api_base: str) -> int | None:
        root = api_base.removesuffix("/v1")
        for url, pick in ((f"{root}/health", _from_health), (f"{api_base}/models", _from_models)):
            try:
                response = await self.client.get(url, headers=self.headers, timeout=PROBE_TIMEOUT)
                found = pick(response.json()) if response.status_code in (200, 503) else None
            except (httpx.HTTPError, ValueError) as exc:
                log.debug("no context size from %s: %s", url, exc)
                continue
            if found:
                return found
        return None


def _from_health(body: object) -> int | None:
    return _number(body.get("n_ctx")) if isinstance(body, dict) else None


def _from_models(body: object) -> int | None:
    data = body.get("data") if isinstance(body, dict) else None
    for model in data if isinstance(data, list) else []:
        meta = model.get("meta") if isinstance(model, dict) else None
        if isinstance(meta, dict) and (found := _number(meta.get("n_ctx")) or _number(meta.get("n_ctx_train"))):
            return found
    return None


class Ratios:
    """Real tokens over estimated tokens, per conversation (its language and content decide it)."""

    def __init__(self) -> None:
        self._ratios: OrderedDict[str, float] = OrderedDict()

    def get(self, conversation_id: str) -> float:
        ratio = self._ratios.get(conversation_id)
        if ratio is None:
            return 1.0
        self._ratios.move_to_end(conversation_id)
        return ratio

    def learn(self, conversation_id: str, real_tokens: int, estimate: float) -> float:
        ratio = min(RATIO_MAX, max(RATIO_MIN, real_tokens / max(estimate, 1.0) * RATIO_SLACK))
        self._ratios[conversation_id] = ratio
        self._ratios.move_to_end(conversation_id)
        while len(self._ratios) > RATIOS_KEPT:
            self._ratios.popitem(last=False)
        return ratio
