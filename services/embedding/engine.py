"""The loaded FastEmbed model. ONNX Runtime uses every thread it was given, so one batch runs at a time."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
from fastembed import TextEmbedding

from services.embedding.settings import EmbeddingSettings

log = logging.getLogger(__name__)

# The service is CPU-only; naming the provider keeps an onnxruntime-gpu install from changing that.
PROVIDERS = ["CPUExecutionProvider"]


@dataclass(frozen=True)
class Embedded:
    """One batch call's result: the vectors as one float32 array, and the tokens the model read."""

    vectors: np.ndarray  # shape (len(texts), dim), C-contiguous
    tokens: int | None


class EmbeddingEngine:
    """Wraps `fastembed.TextEmbedding`; call from one thread at a time."""

    def __init__(self, model: TextEmbedding, name: str, batch_size: int) -> None:
        self.model = model
        self.name = name
        self.batch_size = batch_size
        self.dim = int(model.embedding_size)

    @classmethod
    def load(cls, settings: EmbeddingSettings) -> EmbeddingEngine:
        """Load the model (offline when a folder is set) and run one embedding so the first request is warm."""
        path = settings.model_path()
        model = TextEmbedding(
            settings.embedding_model,
            cache_dir=str(settings.cache_dir()),
            threads=settings.thread_count(),
            providers=PROVIDERS,
            specific_model_path=str(path) if path else None,
            local_files_only=path is not None,
            enable_cpu_mem_arena=settings.memory_arena,
        )
        engine = cls(model, settings.embedding_model, settings.batch_size)
        engine.embed(["warm-up"])
        log.info("embedding model %s loaded (dim %d, %d threads, batch %d)", settings.embedding_model,
                 engine.dim, settings.thread_count(), settings.batch_size)
        return engine

    def embed(self, texts: list[str], count_tokens: bool = False) -> Embedded:
        """Embed every text in one call (FastEmbed splits it into batches of `batch_size`)."""
        rows = list(self.model.embed(texts, batch_size=self.batch_size))
        vectors = np.stack(rows).astype(np.float32, copy=False)
        tokens = self.model.token_count(texts, batch_size=self.batch_size) if count_tokens else None
        return Embedded(vectors, tokens)
