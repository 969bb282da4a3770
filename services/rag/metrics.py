"""Domain metrics of the RAG service, on the app's own registry."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


@dataclass(frozen=True)
class RagMetrics:
    chunks_written: Counter
    chunks_removed: Counter
    files_skipped: Counter
    retrieval_seconds: Histogram
    answer_seconds: Histogram
    dependency_errors: Counter
    bm25_chunks: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry) -> RagMetrics:
        return cls(
            chunks_written=Counter("rag_chunks_written_total", "Chunks embedded and stored.", registry=registry),
            chunks_removed=Counter("rag_chunks_removed_total", "Chunks deleted.", registry=registry),
            files_skipped=Counter("rag_files_skipped_total", "Files that could not be read.", registry=registry),
            retrieval_seconds=Histogram(
                "rag_retrieval_seconds", "Retrieval time per search or query, by stage.", ["stage"],
                buckets=(0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1, 2.5), registry=registry,
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
        )
