"""Settings of the embedding service, read from the environment and `.env`."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field

from services.common.models import EMBED_DIR
from services.common.settings import SuiteSettings

DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


class EmbeddingSettings(SuiteSettings):
    """One FastEmbed model per process, with the request limits of the original system."""

    port: int = Field(8003, alias="EMBEDDING_PORT", ge=0, le=65535, description="Port to listen on.")
    embedding_model: str = Field(
        DEFAULT_MODEL, alias="EMBEDDING_MODEL", description="FastEmbed model name (also the name answered with)."
    )
    model_dir: str = Field(
        EMBED_DIR, alias="EMBEDDING_MODEL_DIR",
        description="Folder with the model's ONNX and tokenizer files, relative to MODELS_DIR or absolute; "
        "empty lets FastEmbed download the model by name into DATA_DIR/cache/fastembed.",
    )
    model_alias: str = Field(
        "embedding,text-embedding-ada-002", alias="EMBEDDING_MODEL_ALIAS",
        description="Comma-separated extra model names /v1/embeddings accepts (editors send OpenAI names).",
    )
    threads: int = Field(0, alias="EMBEDDING_THREADS", ge=0, description="ONNX Runtime threads; 0 uses every core.")
    batch_size: int = Field(64, alias="EMBEDDING_BATCH_SIZE", ge=1, le=4096, description="Most texts per ONNX run.")
    batch_tokens: int = Field(
        2048, alias="EMBEDDING_BATCH_TOKENS", ge=1,
        description="Most padded tokens per ONNX run (texts x the longest of them): long texts run in smaller "
        "batches, which is faster on CPU and keeps memory low.",
    )
    memory_arena: bool = Field(
        True, alias="EMBEDDING_MEMORY_ARENA",
        description="ONNX Runtime's CPU memory arena: faster, but keeps the peak of the largest batch; "
        "false returns memory after each batch at about a fifth less throughput.",
    )
    max_texts: int = Field(
        1024, alias="EMBEDDING_MAX_TEXTS", ge=1, description="Most texts in one request; more get 413."
    )
    max_chars: int = Field(
        8000, alias="EMBEDDING_MAX_CHARS", ge=1,
        description="Longer texts are cut to this many characters and reported in `truncated`.",
    )
    max_queue: int = Field(
        32, alias="EMBEDDING_MAX_QUEUE", ge=0,
        description="Requests allowed to wait behind the running batch; more get 503 with Retry-After.",
    )
    cache: bool = Field(
        True, alias="EMBEDDING_CACHE",
        description="Keep vectors by content hash (sha256 of model name and text), so a repeated text is not "
        "embedded again; false turns off both tiers.",
    )
    cache_entries: int = Field(
        20000, alias="EMBEDDING_CACHE_ENTRIES", ge=0,
        description="Vectors kept in memory (least recently used go first; 384 dims take 1.5 KiB each); "
        "0 turns the memory tier off.",
    )
    cache_disk_mb: int = Field(
        512, alias="EMBEDDING_CACHE_DISK_MB", ge=0,
        description="Size of the on-disk tier, DATA_DIR/cache/embeddings.sqlite3, in MiB (oldest entries go "
        "first); it survives restarts; 0 turns it off.",
    )
    # 1024 texts of 8000 characters, Korean at 3 bytes each, do not fit the shared 4 MiB default.
    max_body_bytes: int = Field(
        32 * 1024 * 1024, alias="MAX_BODY_BYTES", description="Largest request body accepted, in bytes."
    )

    def model_path(self) -> Path | None:
        """The local model folder, or None when FastEmbed should fetch the model by name."""
        if not self.model_dir.strip():
            return None
        path = Path(self.model_dir)
        return path if path.is_absolute() else self.models_dir / path

    def cache_dir(self) -> Path:
        return self.data_dir / "cache" / "fastembed"

    def vector_cache_path(self) -> Path:
        return self.data_dir / "cache" / "embeddings.sqlite3"

    def thread_count(self) -> int:
        return self.threads or os.cpu_count() or 1

    def model_names(self) -> list[str]:
        """Every name /v1/embeddings answers to: the model, its short name, then the aliases."""
        names = [self.embedding_model, self.embedding_model.rsplit("/", 1)[-1]]
        names += [name.strip() for name in self.model_alias.split(",") if name.strip()]
        return list(dict.fromkeys(names))
