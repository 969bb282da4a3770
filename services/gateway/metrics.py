"""The gateway's own metrics, on the app's registry: requests, `auto` choices, backends, conversation memory,
the response cache."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from fastapi import Request
from fastapi.responses import Response
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from services.common.errors import SuiteError

# From a cached 1-token answer (a few ms) to a long generation on CPU.
UPSTREAM_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
CLIENT_GONE = 499  # the client went away before the answer (nginx's code; no response was sent)
UNKNOWN_MODEL = "unknown"  # a body that could not be read, or a model name the gateway does not serve
AUTO_SIGNALS = ("code_block", "file_name", "keyword", "source_code", "no_signal", "no_user_message")


class GatewayMetrics:
    """The gateway's own counters, on the app's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.requests = Counter(
            "gateway_requests", "Requests by requested model, route and answer status",
            ["model", "route", "status"], registry=registry,
        )
        self.auto_choices = Counter(
            "gateway_auto_choices", "`auto` requests by the model kind chosen and the signal that chose it",
            ["choice", "reason"], registry=registry,
        )
        self.attempts = Counter(
            "gateway_upstream_attempts", "Backend attempts by deployment and outcome",
            ["deployment", "outcome"], registry=registry,
        )
        self.upstream_seconds = Histogram(
            "gateway_upstream_duration_seconds",
            "Time from sending a request to a backend to its answer (a stream's first chunk), by backend",
            ["backend"], buckets=UPSTREAM_BUCKETS, registry=registry,
        )
        self.failovers = Counter(
            "gateway_failovers", "Requests answered by another backend after `backend` failed or was cooling down",
            ["backend"], registry=registry,
        )
        self.cooldowns = Counter(
            "gateway_backend_cooldowns", "Times a backend failed and entered its cooldown", ["backend"],
            registry=registry,
        )
        self.in_cooldown = Gauge(
            "gateway_backend_in_cooldown", "1 while a backend is in cooldown after a failure", ["backend"],
            registry=registry,
        )
        self.unavailable = Counter("gateway_unavailable", "Requests no backend could answer", registry=registry)
        self.turns_omitted = Counter(
            "gateway_conversation_turns_omitted",
            "Stored conversation turns left out of a request so that it fits the model's context",
            registry=registry,
        )
        self.history_trims = Counter(
            "gateway_conversation_trims", "Conversation requests that left out one or more turns",
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
        for choice, signal in (("code", s) for s in AUTO_SIGNALS[:4]):
            self.auto_choices.labels(choice, signal)
        for signal in AUTO_SIGNALS[4:]:
            self.auto_choices.labels("chat", signal)

    def watch_backends(self, backends: Iterable[str], cooling: Callable[[str], bool]) -> None:
        """Series for every backend from the start, so a dashboard shows 0 rather than nothing."""
        def reader(backend: str) -> Callable[[], float]:
            return lambda: 1.0 if cooling(backend) else 0.0

        for backend in backends:
            self.failovers.labels(backend)
            self.cooldowns.labels(backend)
            self.in_cooldown.labels(backend).set_function(reader(backend))


def gateway_metrics(request: Request) -> GatewayMetrics:
    metrics: GatewayMetrics = request.app.state.metrics
    return metrics


@dataclass
class RequestLabels:
    """The labels of one request in `gateway_requests_total`, filled in as the request is read and answered."""

    model: str
    route: str
    status: int = 500

    def answered(self, response: Response) -> Response:
        self.status = response.status_code
        return response


@contextmanager
def counted(request: Request, route: str) -> Iterator[RequestLabels]:
    """Count the request in the block once it is answered, whether with a response or an error."""
    labels = RequestLabels(UNKNOWN_MODEL, route)
    try:
        yield labels
    except SuiteError as exc:
        labels.status = exc.status
        raise
    except asyncio.CancelledError:
        labels.status = CLIENT_GONE
        raise
    finally:
        gateway_metrics(request).requests.labels(labels.model, labels.route, str(labels.status)).inc()
