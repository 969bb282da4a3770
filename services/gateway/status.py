"""`GET /v1/status`: each model backend's state (healthy, loading, cooling down, down), queue and last speed.

The view is cached: a background task polls every backend's /health at most once a second while someone
reads the status (it stops after STATUS_IDLE_SECONDS without a reader), and each answer combines the last
poll with the live cooldowns, so a failover shows at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx

from services.gateway.proxy import describe_transport_error
from services.gateway.routing import Router

log = logging.getLogger(__name__)

POLL_INTERVAL = 1.0
POLL_TIMEOUT = 1.0
STATUS_IDLE_SECONDS = 30.0
FIRST_POLL_WAIT = 5.0
STALE_AFTER = 2 * POLL_INTERVAL  # an older view is refreshed before it is served


@dataclass(frozen=True)
class Probe:
    """What one backend's /health said at the last poll."""

    healthy: bool
    loading: bool
    body: dict[str, Any]
    error: str | None


def _int(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


async def probe_health(client: httpx.AsyncClient, root: str) -> Probe:
    try:
        response = await client.get(f"{root}/health", timeout=POLL_TIMEOUT)
    except httpx.TransportError as exc:
        return Probe(False, False, {}, describe_transport_error(exc))
    try:
        body = response.json()
    except ValueError:
        body = {}
    body = body if isinstance(body, dict) else {}
    if response.status_code == 200:
        return Probe(True, False, body, None)
    if body.get("status") == "loading":
        return Probe(False, True, body, None)
    dependencies = body.get("dependencies")
    detail = "; ".join(f"{k}: {v}" for k, v in dependencies.items() if v != "ok") \
        if isinstance(dependencies, dict) else ""
    return Probe(False, False, body, f"HTTP {response.status_code}" + (f" ({detail})" if detail else ""))


class StatusBoard:
    """The backends behind the gateway (grouped by base URL) and their last polled health."""

    def __init__(self, client: httpx.AsyncClient, router: Router,
                 clock: Callable[[], float] = time.time) -> None:
        self.client = client
        self.router = router
        self.clock = clock
        self.backends: dict[str, list[str]] = {}
        for deployment in router.deployments.values():
            self.backends.setdefault(deployment.api_base, []).append(deployment.name)
        self.probes: dict[str, Probe] = {}
        self.checked_at: float | None = None
        self._asked = 0.0
        self._task: asyncio.Task[None] | None = None
        self._polled = asyncio.Event()

    async def poll(self) -> None:
        bases = list(self.backends)
        found = await asyncio.gather(*(probe_health(self.client, base.removesuffix("/v1")) for base in bases))
        self.probes = dict(zip(bases, found, strict=True))
        self.checked_at = self.clock()
        self._polled.set()

    async def _loop(self) -> None:
        while True:
            started = time.monotonic()
            try:
                await self.poll()
            except Exception:  # a poll must never end the loop silently with stale data served
                log.exception("polling the backends' health failed")
            if time.monotonic() - self._asked >= STATUS_IDLE_SECONDS:
                return  # nobody reads the status: stop until the next reader
            await asyncio.sleep(max(0.0, POLL_INTERVAL - (time.monotonic() - started)))

    async def view(self) -> dict[str, Any]:
        """The status body; starts the poller when it is idle and waits for a first poll."""
        self._asked = time.monotonic()
        stale = self.checked_at is None or self.clock() - self.checked_at > STALE_AFTER
        if stale:
            self._polled.clear()  # after an idle spell the view is old: wait for the next poll
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._loop(), name="backend-status")
        if stale:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._polled.wait(), FIRST_POLL_WAIT)
        return {"object": "status", "checked_at": self.checked_at,
                "backends": [self._backend(base, models) for base, models in self.backends.items()]}

    def _backend(self, base: str, models: list[str]) -> dict[str, Any]:
        probe = self.probes.get(base) or Probe(False, False, {}, "not polled yet")
        cooling = self.router.cooldowns.remaining(base)
        if probe.loading:
            state = "loading"
        elif not probe.healthy:
            state = "down"
        elif cooling > 0:
            state = "cooling_down"
        else:
            state = "healthy"
        body = probe.body
        slots = body.get("slots")
        total = slots.get("total") if isinstance(slots, dict) else slots
        running = body.get("running", slots.get("running") if isinstance(slots, dict) else None)
        return {
            "name": base.removesuffix("/v1").split("://", 1)[-1],
            "models": models,
            "state": state,
            "queue_depth": _int(body.get("waiting", body.get("queue_depth"))),
            "running": _int(running),
            "slots": _int(total),
            "last_tokens_per_second": _number(body.get("last_tokens_per_second")),
            "cooldown_remaining_s": round(cooling, 3) if cooling > 0 else None,
            "error": probe.error,
        }

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
