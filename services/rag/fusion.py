"""Reciprocal rank fusion of rankings, and packing ranked chunks into a token budget."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

T = TypeVar("T")


def reciprocal_rank_fusion(rankings: Sequence[Sequence[str]], k: int = 60) -> list[tuple[str, float]]:
    """Fuse best-first id lists: score(id) = sum over lists of 1 / (k + rank), rank starting at 1; best first."""
    scores: dict[str, float] = {}
    for ranking in rankings:
        seen: set[str] = set()
        for rank, item in enumerate(ranking, start=1):
            if item in seen:  # a repeated id in one list counts at its best rank only
                continue
            seen.add(item)
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    # Ties keep first-seen order (sorted is stable), so the result is deterministic.
    return sorted(scores.items(), key=lambda pair: -pair[1])


def pack_context(chunks: Sequence[T], budget_tokens: int, tokens_of: Callable[[T], int]) -> list[T]:
    """Chunks in rank order that fit the token budget together; one that does not fit is skipped, not cut."""
    packed: list[T] = []
    remaining = budget_tokens
    for chunk in chunks:
        if remaining <= 0:
            break
        cost = tokens_of(chunk)
        if cost <= remaining:
            packed.append(chunk)
            remaining -= cost
    return packed
