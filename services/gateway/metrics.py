"""The gateway's own metrics, on the app's registry: backend attempts, unanswerable requests, conversation memory,
the response cache."""

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
        self.turns_omitted = Counter(
            "gateway_conversation_turns_omitted",
            "Stored conversation turns left out of a request so that it fits the model's context",
            registry=registry,
        )
        self.history_trims = Counter(
            "gateway_conversation_history_trims", "Conversation requests that left out one or more turns",
            registry=registry,
        )
        self.context_refits = Counter(
            "gateway_conversation_context_refits",
            "Conversation requests sent again with less history after the backend said the prompt was too long",
            registry=registry,
        )
        self.searches = Counter(
            "gateway_conversation_searches", "Conversation searches by the engines that answered",
            ["engines"], registry=registry,
        )
        self.response_cache_hits = Counter(
            "gateway_response_cache_hits", "Deterministic requests answered from the response cache",
            registry=registry,
        )
        self.response_cache_misses = Counter(
            "gateway_response_cache_misses", "Deterministic requests the response cache did not hold",
            registry=registry,
        )
