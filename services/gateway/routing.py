"""Model names, `auto` routing, priority fallback and backend cooldown."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from services.common.classify import Choice, classify, classify_messages
from services.common.errors import ModelNotFound

CHAT = "chat-7b"
CODE = "code-7b"
AUTO = "auto"
ALIASES = {"gpt-3.5-turbo": CHAT, "qwen2.5-14b-instruct": CHAT}
FALLBACKS = {CHAT: (CODE,), CODE: (CHAT,)}
PUBLIC_NAMES = (CHAT, CODE, AUTO, *ALIASES)


@dataclass(frozen=True)
class Deployment:
    """One backend model: the public name, where it lives and what the backend calls it."""

    name: str
    api_base: str
    backend_model: str


@dataclass(frozen=True)
class Route:
    """The deployment a request goes to first, and why."""

    model: str
    reason: str
    auto: Choice | None = None  # what `auto` decided, when the request asked for it


def resolve(requested: object, body: dict) -> Route:
    """Map a requested model name to a deployment; `auto` classifies the prompt."""
    if requested in (CHAT, CODE):
        return Route(str(requested), "requested")
    if isinstance(requested, str) and requested in ALIASES:
        return Route(ALIASES[requested], f"alias {requested}")
    if requested == AUTO:
        messages = body.get("messages")
        if isinstance(messages, list):
            choice = classify_messages(messages)
        else:
            prompt = body.get("prompt")
            choice = classify(prompt if isinstance(prompt, str) else " ".join(map(str, prompt or [])))
        return Route(CODE if choice.kind == "code" else CHAT, f"auto: {choice.reason}", choice)
    raise ModelNotFound(
        f"model {requested!r} does not exist; valid models: {', '.join(PUBLIC_NAMES)}", param="model"
    )


class Cooldowns:
    """Backends that failed recently, keyed by base URL, so later requests try the healthy ones first."""

    def __init__(self, seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.seconds = seconds
        self.clock = clock
        self._until: dict[str, float] = {}

    def mark_failed(self, key: str) -> None:
        self._until[key] = self.clock() + self.seconds

    def mark_ok(self, key: str) -> None:
        self._until.pop(key, None)

    def remaining(self, key: str) -> float:
        """Seconds left in the key's cooldown (0 when it is not cooling down)."""
        until = self._until.get(key)
        if until is None:
            return 0.0
        left = until - self.clock()
        if left <= 0:
            del self._until[key]
            return 0.0
        return left

    def cooling(self) -> dict[str, float]:
        """Every key still cooling down, with the seconds left."""
        return {key: left for key in list(self._until) if (left := self.remaining(key)) > 0}


class Router:
    """Orders the deployments for a route: preferred first, cooled-down ones last."""

    def __init__(self, deployments: dict[str, Deployment], cooldowns: Cooldowns) -> None:
        self.deployments = deployments
        self.cooldowns = cooldowns

    def plan(self, first: str) -> Iterator[tuple[Deployment, bool]]:
        """Yield (deployment, cooling) in priority order, judged afresh before each deployment.

        A deployment in cooldown is still tried, once and after the fresh ones: its backend may have been
        restarted since it failed, and a refused connection costs well under a millisecond on loopback.
        """
        pending = [self.deployments[n] for n in (first, *FALLBACKS.get(first, ())) if n in self.deployments]
        while pending:
            fresh = [d for d in pending if self.cooldowns.remaining(d.api_base) <= 0]
            pick = fresh[0] if fresh else pending[0]
            pending.remove(pick)
            yield pick, not fresh
