"""Length-sorted batches within a token budget: the plan, and vectors identical to one-text-at-a-time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.embedding.engine import EmbeddingEngine, plan_batches
from tests.unit.test_embedding_api import make_settings


@given(st.lists(st.integers(1, 600), max_size=200), st.integers(1, 70), st.integers(1, 5000))
def test_plan_covers_every_text_once_within_both_limits(lengths: list[int], size: int, budget: int) -> None:
    batches = plan_batches(lengths, size, budget)
    assert sorted(i for batch in batches for i in batch) == list(range(len(lengths)))
    order = [lengths[i] for batch in batches for i in batch]
    assert order == sorted(order)  # shortest first, so each batch pads to its last text
    for batch in batches:
        assert 1 <= len(batch) <= size
        assert len(batch) == 1 or len(batch) * lengths[batch[-1]] <= budget


def test_plan_sizes_for_long_and_short_texts() -> None:
    assert [len(b) for b in plan_batches([512] * 10, 64, 2048)] == [4, 4, 2]
    assert [len(b) for b in plan_batches([20] * 100, 64, 2048)] == [64, 36]
    assert plan_batches([5000, 3], 64, 2048) == [[1], [0]]  # over the budget alone: its own batch


@pytest.fixture(scope="module")
def engine(models_dir: Path) -> EmbeddingEngine:
    return EmbeddingEngine.load(make_settings(models_dir, EMBEDDING_THREADS=1, EMBEDDING_BATCH_TOKENS=600))


def test_mixed_lengths_come_back_in_order_and_match_single_text_runs(
    engine: EmbeddingEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = [("long text about the falcon on the north tower " * 60).strip(), "short one", "medium " * 40,
             "한국어 문장도 섞여 있습니다", ("another long text " * 120).strip(), "x"]
    alone = np.stack([engine.model.embed([t], batch_size=1).__next__() for t in texts])
    runs: list[int] = []
    real = engine.model.embed

    def spy(batch: list[str], batch_size: int) -> object:
        runs.append(len(batch))
        return real(batch, batch_size=batch_size)

    monkeypatch.setattr(engine.model, "embed", spy)
    result = engine.embed(texts, count_tokens=True)
    assert np.allclose(result.vectors, alone, atol=1e-5)
    assert result.tokens == engine.model.token_count(texts)
    lengths = engine.token_lengths(texts)
    assert max(lengths) == 512  # the long ones are cut where the model cuts them
    assert sum(runs) == len(texts) and max(runs) < len(texts)  # the two long texts did not share one run
