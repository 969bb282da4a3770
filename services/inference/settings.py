"""Settings of the inference service, read from the environment and `.env`."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field

from services.common.models import GGUF_NAME
from services.common.settings import SuiteSettings


class InferenceSettings(SuiteSettings):
    """One model per process; MODEL_ALIAS lists every name it answers to."""

    port: int = Field(8001, alias="INFERENCE_PORT", ge=0, le=65535, description="Port to listen on.")
    model_file: str = Field(
        GGUF_NAME, alias="MODEL_FILE", description="GGUF file name under MODELS_DIR, or an absolute path."
    )
    model_alias: str = Field(
        "chat-7b", alias="MODEL_ALIAS",
        description="Comma-separated model names this service answers to; the first is the primary.",
    )
    n_gpu_layers: int = Field(0, alias="N_GPU_LAYERS", ge=-1, description="Layers offloaded to the GPU (-1: all).")
    n_ctx: int = Field(
        4096, alias="N_CTX", ge=64,
        description="Context window of each slot in tokens (prompt plus answer); the KV cache holds N_PARALLEL "
        "of them.",
    )
    n_parallel: int = Field(
        4, alias="N_PARALLEL", ge=1, le=64,
        description="Slots: requests generated together in one batch, each keeping its prompt cache.",
    )
    n_threads: int = Field(0, alias="N_THREADS", ge=0, description="CPU threads for generation; 0 uses every core.")
    n_batch: int = Field(
        512, alias="N_BATCH", ge=1,
        description="Tokens evaluated per step, for every slot together (prompts are split into such chunks).",
    )
    max_queue: int = Field(
        8, alias="MAX_QUEUE", ge=0,
        description="Requests allowed to wait while every slot is busy; more get 503 with Retry-After.",
    )
    max_queue_wait: float = Field(
        20.0, alias="MAX_QUEUE_WAIT", ge=0,
        description="Seconds a request may wait for a slot before it gets 503 with Retry-After (a client that "
        "would time out anyway learns to come back instead); 0 waits without limit.",
    )
    stream_interval_ms: float = Field(
        20.0, alias="STREAM_INTERVAL_MS", ge=0,
        description="Streaming sends at most one chunk per this many milliseconds (the first at once); "
        "fewer wake-ups leave more CPU to the model. 0 sends every token on its own.",
    )
    chat_template_file: Path | None = Field(
        None, alias="CHAT_TEMPLATE_FILE",
        description="Jinja chat template that replaces the GGUF's own (rendered in the same sandbox).",
    )

    def model_path(self) -> Path:
        """The model file: MODEL_FILE itself when absolute, else under MODELS_DIR."""
        path = Path(self.model_file)
        return path if path.is_absolute() else self.models_dir / path

    def aliases(self) -> list[str]:
        """The model names served, primary first, without blanks or duplicates."""
        names = [name.strip() for name in self.model_alias.split(",") if name.strip()]
        return list(dict.fromkeys(names)) or [Path(self.model_file).stem]

    def threads(self) -> int:
        return self.n_threads or os.cpu_count() or 1
