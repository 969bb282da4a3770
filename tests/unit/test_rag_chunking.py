"""Chunker with the real embedding tokenizer: window limit, overlap, sentence alignment, determinism."""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import pytest

from services.common.models import EMBED_DIR
from services.rag.chunking import Chunker
from services.rag.text import TextAnalyzer


@pytest.fixture(scope="module")
def analyzer() -> TextAnalyzer:
    return TextAnalyzer()


@pytest.fixture(scope="module")
def chunker(models_dir: Path) -> Chunker:
    return Chunker(models_dir / EMBED_DIR / "tokenizer.json", window=512, overlap=100)


def english_text(sentences: int, seed: int = 1) -> str:
    rng = random.Random(seed)
    words = "file read open python data model token window overlap sentence korean english search index".split()
    return " ".join(
        " ".join(rng.choice(words) for _ in range(rng.randint(5, 30))).capitalize() + "." for _ in range(sentences)
    )


def test_counts_tokens_without_special_tokens_or_truncation(chunker: Chunker) -> None:
    assert chunker.count_tokens("reading files in python") == 4
    assert chunker.count_tokens("word " * 600) == 600  # tokenizer.json itself truncates at 128
    assert chunker.count_tokens_batch(["reading files", "", "python"]) == [2, 0, 1]


def test_windows_respect_the_limit_and_overlap(chunker: Chunker, analyzer: TextAnalyzer) -> None:
    text = english_text(300)
    chunks = chunker.chunk(text, analyzer)
    assert len(chunks) > 5
    sentences = set(analyzer.split_sentences(text))
    for chunk in chunks:
        assert chunk.token_count == chunker.count_tokens(chunk.text) <= 512
        assert chunk.token_count > 400  # packed, not one sentence per chunk
        assert chunk.text == text[chunk.start:chunk.end]
        assert chunk.content_hash == hashlib.sha256(chunk.text.encode()).hexdigest()
        first, last = chunk.text.split(". ")[0] + ".", chunk.text.rsplit(". ", 1)[-1]
        assert first in sentences and last in sentences  # windows start and end on sentence boundaries
    for before, after in zip(chunks, chunks[1:], strict=False):
        assert after.index == before.index + 1
        assert before.start < after.start < before.end  # consecutive windows overlap
        shared = chunker.count_tokens(text[after.start:before.end])
        assert 50 <= shared <= 150
    assert chunks[0].start == 0 and chunks[-1].end == len(text)


def test_chunks_are_deterministic(chunker: Chunker, analyzer: TextAnalyzer) -> None:
    text = english_text(120, seed=3) + "\n\n" + "파이썬에서 파일을 읽는 방법은 open 함수를 쓰는 것이다. " * 40
    assert chunker.chunk(text, analyzer) == chunker.chunk(text, analyzer)


def test_korean_text_is_chunked_within_the_limit(chunker: Chunker, analyzer: TextAnalyzer) -> None:
    text = "경복궁은 매주 화요일에 쉰다. 관람 시간은 오전 9시부터 오후 6시까지이다. " * 60
    chunks = chunker.chunk(text, analyzer)
    assert len(chunks) > 1
    assert all(chunker.count_tokens(chunk.text) <= 512 for chunk in chunks)
    assert all(chunk.text.endswith(".") for chunk in chunks)


def test_overlong_sentence_is_split_by_tokens(chunker: Chunker, analyzer: TextAnalyzer) -> None:
    text = "Short intro. " + " ".join(f"word{number}" for number in range(1500)) + " end. Tail sentence."
    chunks = chunker.chunk(text, analyzer)
    assert len(chunks) >= 3
    for chunk in chunks:
        assert chunk.token_count == chunker.count_tokens(chunk.text) <= 512
        assert not chunk.text.startswith(("#", "##")) and chunk.text == text[chunk.start:chunk.end]
    covered = set()
    for chunk in chunks:
        covered.update(range(chunk.start, chunk.end))
    assert all(position in covered for position, char in enumerate(text) if not char.isspace())


def test_long_code_block_is_split_at_lines(chunker: Chunker, analyzer: TextAnalyzer) -> None:
    body = "\n".join(f"    value_{number} = compute(value_{number - 1}, {number})" for number in range(1, 200))
    text = f"```python\ndef run():\n{body}\n```"
    chunks = chunker.chunk(text, analyzer)
    assert len(chunks) > 1
    for chunk in chunks:
        assert chunk.token_count <= 512
        lines = chunk.text.splitlines()
        assert all(line in text.splitlines() for line in lines)  # no line is cut in the middle


def test_small_and_empty_inputs(chunker: Chunker, analyzer: TextAnalyzer) -> None:
    assert chunker.chunk("", analyzer) == [] and chunker.chunk("  \n\n ", analyzer) == []
    [only] = chunker.chunk("One short sentence.", analyzer)
    assert (only.index, only.text, only.token_count) == (0, "One short sentence.", 4)


def test_small_windows_and_bad_parameters(models_dir: Path, analyzer: TextAnalyzer) -> None:
    small = Chunker(models_dir / EMBED_DIR / "tokenizer.json", window=64, overlap=16)
    chunks = small.chunk(english_text(60, seed=5), analyzer)
    assert len(chunks) > 10 and all(chunk.token_count <= 64 for chunk in chunks)
    with pytest.raises(ValueError):
        Chunker(models_dir / EMBED_DIR / "tokenizer.json", window=100, overlap=100)
