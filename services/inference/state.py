"""The service's typed state: settings, metrics, and the model once it has loaded."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from fastapi import Request

from services.common.errors import ServiceUnavailable
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
        if self.load_error:
            return f"failed: {self.load_error}"
        return "ok" if self.queue is not None else "loading"

    def engine_or_raise(self) -> ModelEngine:
        self.ready()
        assert self.engine is not None
        return self.engine

    def ready(self) -> GenerationQueue:
        """The queue in front of the model; 503 while it loads or after it failed to load."""
        if self.queue is None:
            if self.load_error:
                raise ServiceUnavailable(f"the model failed to load: {self.load_error}", retry_after=30,
                                         code="model_load_failed")
            raise ServiceUnavailable("the model is still loading", retry_after=2, code="model_loading")
        return self.queue


def inference_state(request: Request) -> InferenceState:
    state: InferenceState = request.app.state.inference
    return state
