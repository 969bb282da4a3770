"""Model names, `auto` routing, least-busy choice among a model's backends, priority fallback and cooldown."""

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
    """One backend model: the public name, where it lives, what the backend calls it and the key it wants."""

    name: str
    api_base: str
    backend_model: str
    api_key: str | None = None  # None: the gateway's BACKEND_API_KEY (or API_KEY)


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


class Load:
    """How busy each backend is, keyed by base URL: requests in flight through the gateway, and the queue
    depth the backend last reported on its /health (0 where it reports none)."""

    def __init__(self) -> None:
        self.in_flight: dict[str, int] = {}
        self.queue_depth: dict[str, int] = {}

    def acquire(self, key: str) -> None:
        self.in_flight[key] = self.in_flight.get(key, 0) + 1

    def release(self, key: str) -> None:
        left = self.in_flight.get(key, 0) - 1
        if left > 0:
            self.in_flight[key] = left
        else:
            self.in_flight.pop(key, None)

    def of(self, key: str) -> int:
        return self.in_flight.get(key, 0) + self.queue_depth.get(key, 0)


class Router:
    """Orders the deployments for a route: the model's least busy healthy backend first, then its other
    backends, then the fallback model's, cooled-down ones last."""

    def __init__(self, deployments: dict[str, Deployment], cooldowns: Cooldowns,
                 extra: dict[str, list[Deployment]] | None = None) -> None:
        self.deployments = deployments  # the first backend of each model
        self.pools: dict[str, list[Deployment]] = {
            name: [first, *(extra or {}).get(name, [])] for name, first in deployments.items()
        }
        self.cooldowns = cooldowns
        self.load = Load()

    def backends(self) -> list[Deployment]:
        """Every backend of every model, each once."""
        return [d for pool in self.pools.values() for d in pool]

    def plan(self, first: str) -> Iterator[tuple[Deployment, bool]]:
        """Yield (deployment, cooling) in order, judged afresh before each deployment.

        Within a model the least busy backend goes first (ties keep the configured order); the requested
        model's backends go before its fallback's. A deployment in cooldown is still tried, once and after
        the fresh ones: its backend may have been restarted since it failed, and a refused connection
        costs well under a millisecond on loopback.
        """
        names = [n for n in (first, *FALLBACKS.get(first, ())) if n in self.pools]
        pending = [(rank, index, d) for rank, n in enumerate(names) for index, d in enumerate(self.pools[n])]
        while pending:
            fresh = [p for p in pending if self.cooldowns.remaining(p[2].api_base) <= 0]
            pick = min(fresh or pending, key=lambda p: (p[0], self.load.of(p[2].api_base), p[1]))
            pending.remove(pick)
            yield pick[2], not fresh
