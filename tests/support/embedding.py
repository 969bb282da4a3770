"""The real embedding engine behind a counter, for tests that prove a cache kept texts away from the model."""

from __future__ import annotations

import threading

from services.embedding.engine import Embedded, EmbeddingEngine


class CountingEngine:
    """The real engine, counting the texts each model call receives."""

    def __init__(self, engine: EmbeddingEngine) -> None:
        self.engine = engine
        self.dim = engine.dim
        self.calls: list[list[str]] = []
        self._lock = threading.Lock()

    def embed(self, texts: list[str], count_tokens: bool = False) -> Embedded:
        with self._lock:
            self.calls.append(list(texts))
        return self.engine.embed(texts, count_tokens)

    @property
    def texts(self) -> int:
        return sum(len(call) for call in self.calls)
