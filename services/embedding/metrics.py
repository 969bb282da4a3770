"""Domain metrics of the embedding service, on the app's own registry."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Texts per ONNX run: EMBEDDING_BATCH_SIZE (64) bounds it, and EMBEDDING_BATCH_TOKENS makes long texts run
# in small groups, so the low buckets matter as much as the high ones.
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512)


@dataclass(frozen=True)
class EmbeddingMetrics:
    texts: Counter
    tokens: Counter
    truncated: Counter
    batch_seconds: Histogram
    batch_texts: Histogram
    queue_depth: Gauge
    rejected: Counter
    cache_hits: Counter
    cache_misses: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> EmbeddingMetrics:
        metrics = cls(
            texts=Counter("embedding_texts", "Texts the model embedded (rate: texts per second; cache hits are not "
                          "counted).", registry=registry),
            tokens=Counter("embedding_tokens", "Tokens the model read, after truncation.", registry=registry),
            truncated=Counter(
                "embedding_truncated_texts", "Texts cut to EMBEDDING_MAX_CHARS before embedding.", registry=registry
            ),
            batch_seconds=Histogram(
                "embedding_batch_seconds", "Time one request's batch call held the model.", registry=registry,
                buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            ),
            batch_texts=Histogram(
                "embedding_batch_texts", "Texts per ONNX run (a request's texts are split by length and "
                "EMBEDDING_BATCH_TOKENS).", registry=registry, buckets=BATCH_BUCKETS,
            ),
            queue_depth=Gauge(
                "embedding_queue_depth", "Requests running or waiting for the model.", registry=registry
            ),
            rejected=Counter(
                "embedding_rejected_requests", "Requests refused because the queue was full.", registry=registry
            ),
            cache_hits=Counter(
                "embedding_cache_hits", "Texts answered from the vector cache, by tier (memory, disk; a text "
                "repeated within one request counts as a memory hit).", ["tier"], registry=registry,
            ),
            cache_misses=Counter(
                "embedding_cache_misses", "Texts the cache did not hold, sent to the model.", registry=registry
            ),
        )
        for tier in ("memory", "disk"):
            metrics.cache_hits.labels(tier)  # both series exist from the start, so the hit ratio does too
        return metrics

    def cache_lookups(self, texts: int, misses: int, from_disk: int) -> None:
        """Count one request's cache lookups: `misses` distinct texts go to the model."""
        self.cache_misses.inc(misses)
        self.cache_hits.labels("disk").inc(from_disk)
        self.cache_hits.labels("memory").inc(texts - misses - from_disk)

    def embedded(self, texts: int, tokens: int, batches: tuple[int, ...]) -> None:
        """Count one finished batch call."""
        self.texts.inc(texts)
        self.tokens.inc(tokens)
        for size in batches:
            self.batch_texts.observe(size)
