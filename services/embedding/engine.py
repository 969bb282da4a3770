"""The loaded FastEmbed model. ONNX Runtime uses every thread it was given, so one batch runs at a time.

Texts are grouped shortest first, and a group grows only while its padded size (texts x longest) fits
EMBEDDING_BATCH_TOKENS. On CPU a batch of four 512-token texts runs faster per text than a batch of 64,
and it needs a fraction of the memory; short texts still go 64 at a time.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from fastembed import TextEmbedding
from fastembed.text.onnx_text_model import OnnxTextModel

from services.embedding.settings import EmbeddingSettings

log = logging.getLogger(__name__)

# The service is CPU-only; naming the provider keeps an onnxruntime-gpu install from changing that.
PROVIDERS = ["CPUExecutionProvider"]


@dataclass(frozen=True)
class Embedded:
    """One batch call's result: the vectors as one float32 array, and the tokens the model read."""

    vectors: np.ndarray  # shape (len(texts), dim), C-contiguous
    tokens: int | None
    batches: tuple[int, ...] = ()  # texts in each ONNX run, in the order they ran
    token_total: int = 0  # tokens the model read, counted whether or not the caller asked for them
    per_text_tokens: tuple[int, ...] = ()  # tokens of each text, in the order of the texts


def plan_batches(lengths: Sequence[int], batch_size: int, batch_tokens: int) -> list[list[int]]:
    """Indices of the texts, shortest first, in groups of at most `batch_size` whose padded size fits
    `batch_tokens`; a text longer than the budget runs alone."""
    batches: list[list[int]] = []
    current: list[int] = []
    for i in sorted(range(len(lengths)), key=lengths.__getitem__):
        # Sorted ascending, so the newcomer is the longest and sets the padded length of the group.
        if current and (len(current) >= batch_size or (len(current) + 1) * lengths[i] > batch_tokens):
            batches.append(current)
            current = []
        current.append(i)
    if current:
        batches.append(current)
    return batches


class EmbeddingEngine:
    """Wraps `fastembed.TextEmbedding`; call from one thread at a time."""

    def __init__(self, model: TextEmbedding, name: str, batch_size: int, batch_tokens: int) -> None:
        self.model = model
        self.name = name
        self.batch_size = batch_size
        self.batch_tokens = batch_tokens
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
        engine = cls(model, settings.embedding_model, settings.batch_size, settings.batch_tokens)
        engine.embed(["warm-up"])
        log.info("embedding model %s loaded (dim %d, %d threads, batch %d texts / %d tokens)",
                 settings.embedding_model, engine.dim, settings.thread_count(), settings.batch_size,
                 settings.batch_tokens)
        return engine

    def token_lengths(self, texts: list[str]) -> list[int]:
        """Tokens the model reads of each text, from its own tokenizer (so truncation matches)."""
        onnx = self.model.model
        assert isinstance(onnx, OnnxTextModel), f"{type(onnx).__name__} is not an ONNX text model"
        onnx._ensure_tokenizer()  # noqa: SLF001 - the tokenizer FastEmbed itself runs, loaded if not yet
        tokenizer = onnx.tokenizer
        assert tokenizer is not None
        return [sum(encoding.attention_mask) for encoding in tokenizer.encode_batch(texts)]

    def embed(self, texts: list[str], count_tokens: bool = False) -> Embedded:
        """Embed every text in one call, in length-sorted batches within the token budget."""
        lengths = self.token_lengths(texts)
        vectors = np.empty((len(texts), self.dim), dtype=np.float32)
        batches = plan_batches(lengths, self.batch_size, self.batch_tokens)
        for batch in batches:
            rows = self.model.embed([texts[i] for i in batch], batch_size=len(batch))
            vectors[batch] = np.stack(list(rows))
        total = sum(lengths)
        return Embedded(vectors, total if count_tokens else None, tuple(len(b) for b in batches), total,
                        tuple(lengths))
