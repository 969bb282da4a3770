"""Domain metrics of the RAG service, on the app's own registry."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# Stages of one retrieval: the query's embedding, dense (Qdrant) search, BM25, their fusion, the chunk rows.
STAGES = ("embed", "dense", "bm25", "fusion", "postgres", "total")
ENDPOINTS = ("search", "query")
DEPENDENCIES = ("postgres", "qdrant", "embedding", "gateway")
# Why a file (or a whole /index request) was not indexed; a fixed set, so each series exists from the start.
FAILURE_REASONS = ("unreadable", "cannot_read", "not_a_file", "outside_documents", "no_text", "empty_file",
                   "dependency_unavailable")
# Cosine similarity of the best dense match: near 1 for a close paraphrase, under 0.3 for unrelated text.
SCORE_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


@dataclass(frozen=True)
class RagMetrics:
    chunks_written: Counter
    chunks_removed: Counter
    indexing_failures: Counter
    retrieval_seconds: Histogram
    retrievals: Counter
    empty_retrievals: Counter
    top_score: Histogram
    answer_seconds: Histogram
    dependency_errors: Counter
    bm25_chunks: Gauge
    collection_documents: Gauge
    collection_chunks: Gauge
    query_cache_hits: Counter
    query_cache_misses: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry) -> RagMetrics:
        metrics = cls(
            chunks_written=Counter("rag_chunks_written_total", "Chunks embedded and stored.", registry=registry),
            chunks_removed=Counter("rag_chunks_removed_total", "Chunks deleted.", registry=registry),
            indexing_failures=Counter(
                "rag_indexing_failures_total", "Files (or /index requests) that could not be indexed, by reason.",
                ["reason"], registry=registry,
            ),
            retrieval_seconds=Histogram(
                "rag_retrieval_seconds", "Retrieval time per search or query, by stage.", ["stage"],
                buckets=(0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1, 2.5), registry=registry,
            ),
            retrievals=Counter("rag_retrievals_total", "Retrievals, by endpoint.", ["endpoint"], registry=registry),
            empty_retrievals=Counter(
                "rag_empty_retrievals_total",
                "Retrievals where nothing matched: no BM25 term in common, no dense match over RAG_EMPTY_SCORE.",
                ["endpoint"], registry=registry,
            ),
            top_score=Histogram(
                "rag_retrieval_top_score", "Cosine similarity of the best dense match of each retrieval.",
                buckets=SCORE_BUCKETS, registry=registry,
            ),
            answer_seconds=Histogram(
                "rag_answer_seconds", "Time to a full answer from the gateway.",
                buckets=(0.5, 1, 2, 5, 10, 20, 40, 80, 120), registry=registry,
            ),
            dependency_errors=Counter(
                "rag_dependency_unavailable_total", "Requests answered 503 because a dependency was down.",
                ["dependency"], registry=registry,
            ),
            bm25_chunks=Gauge("rag_bm25_chunks", "Chunks held by the in-memory BM25 indexes.", registry=registry),
            collection_documents=Gauge(
                "rag_collection_documents", "Documents indexed, per collection.", ["collection"], registry=registry
            ),
            collection_chunks=Gauge(
                "rag_collection_chunks", "Chunks indexed, per collection.", ["collection"], registry=registry
            ),
            query_cache_hits=Counter(
                "rag_query_cache_hits", "Retrievals whose query vector came from the query cache.", registry=registry
            ),
            query_cache_misses=Counter(
                "rag_query_cache_misses", "Retrievals whose query was embedded (the query cache did not hold it).",
                registry=registry,
            ),
        )
        # labelled series appear only once touched; these start at 0 so rates and ratios work from the start
        for reason in FAILURE_REASONS:
            metrics.indexing_failures.labels(reason)
        for endpoint in ENDPOINTS:
            metrics.retrievals.labels(endpoint)
            metrics.empty_retrievals.labels(endpoint)
        for dependency in DEPENDENCIES:
            metrics.dependency_errors.labels(dependency)
        return metrics

    def retrieved(self, endpoint: str, matched: bool) -> None:
        """Count one retrieval, and whether nothing in the collection matched it."""
        self.retrievals.labels(endpoint).inc()
        if not matched:
            self.empty_retrievals.labels(endpoint).inc()
