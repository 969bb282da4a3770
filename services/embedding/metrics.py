"""Domain metrics of the embedding service, on the app's own registry."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass(frozen=True)
class EmbeddingMetrics:
    texts: Counter
    truncated: Counter
    batch_seconds: Histogram
    queue_depth: Gauge
    rejected: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> EmbeddingMetrics:
        return cls(
            texts=Counter("embedding_texts", "Texts embedded.", registry=registry),
            truncated=Counter(
                "embedding_truncated_texts", "Texts cut to EMBEDDING_MAX_CHARS before embedding.", registry=registry
            ),
            batch_seconds=Histogram(
                "embedding_batch_seconds", "Time one request's batch call held the model.", registry=registry,
                buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            ),
            queue_depth=Gauge(
                "embedding_queue_depth", "Requests running or waiting for the model.", registry=registry
            ),
            rejected=Counter(
                "embedding_rejected_requests", "Requests refused because the queue was full.", registry=registry
            ),
        )
