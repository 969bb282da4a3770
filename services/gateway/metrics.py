"""The gateway's own metrics, on the app's registry: backend attempts and requests no backend could answer."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter


class GatewayMetrics:
    """The gateway's own counters, on the app's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.attempts = Counter(
            "gateway_upstream_attempts", "Backend attempts by deployment and outcome",
            ["deployment", "outcome"], registry=registry,
        )
        self.unavailable = Counter("gateway_unavailable", "Requests no backend could answer", registry=registry)
