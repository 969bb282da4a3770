"""The service's typed state: settings, metrics, and the model once it has loaded."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from fastapi import Request

from services.common.model_loading import model_state, not_ready
from services.inference.engine import ModelEngine
from services.inference.metrics import InferenceMetrics
from services.inference.scheduler import GenerationQueue
from services.inference.settings import InferenceSettings


@dataclass
class InferenceState:
    settings: InferenceSettings
    metrics: InferenceMetrics
    engine: ModelEngine | None = None
    queue: GenerationQueue | None = None
    load_error: str | None = None
    created: int = field(default_factory=lambda: int(time.time()))

    def model_state(self) -> str:
        return model_state(self.queue is not None, self.load_error)

    def loaded(self, engine: ModelEngine) -> None:
        """Put the loaded model behind its generation queue."""
        self.engine = engine
        settings = self.settings
        self.queue = GenerationQueue(engine, settings.max_queue, self.metrics, settings.stream_interval_ms / 1000,
                                     max_wait=settings.max_queue_wait)

    def failed(self, reason: str) -> None:
        self.load_error = reason

    def engine_or_raise(self) -> ModelEngine:
        self.ready()
        assert self.engine is not None
        return self.engine

    def ready(self) -> GenerationQueue:
        """The queue in front of the model; 503 while it loads or after it failed to load."""
        if self.queue is None:
            raise not_ready("the model", self.load_error)
        return self.queue


def inference_state(request: Request) -> InferenceState:
    state: InferenceState = request.app.state.inference
    return state
