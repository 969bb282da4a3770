"""Reciprocal rank fusion arithmetic and context packing within a token budget."""

from __future__ import annotations

import pytest

from services.rag.fusion import pack_context, reciprocal_rank_fusion


def test_rrf_scores_are_sums_of_reciprocal_ranks() -> None:
    fused = dict(reciprocal_rank_fusion([["a", "b", "c"], ["b", "d"]], k=60))
    assert fused["a"] == pytest.approx(1 / 61)
    assert fused["b"] == pytest.approx(1 / 62 + 1 / 61)
    assert fused["c"] == pytest.approx(1 / 63)
    assert fused["d"] == pytest.approx(1 / 62)


def test_rrf_orders_best_first_and_rewards_agreement() -> None:
    fused = reciprocal_rank_fusion([["a", "b", "c"], ["c", "b", "a"], ["b"]])
    assert [item for item, _ in fused] == ["b", "a", "c"]
    scores = [score for _, score in fused]
    assert scores == sorted(scores, reverse=True)


def test_rrf_ties_keep_first_seen_order_and_k_matters() -> None:
    assert [item for item, _ in reciprocal_rank_fusion([["x", "y"], ["y", "x"]])] == ["x", "y"]
    assert reciprocal_rank_fusion([["a"]], k=0) == [("a", 1.0)]
    assert reciprocal_rank_fusion([]) == [] and reciprocal_rank_fusion([[], []]) == []


def test_rrf_counts_a_repeated_id_once_per_list() -> None:
    assert dict(reciprocal_rank_fusion([["a", "a", "b"]]))["a"] == pytest.approx(1 / 61)


def test_pack_keeps_rank_order_and_skips_what_does_not_fit() -> None:
    items = [("a", 500), ("b", 800), ("c", 400), ("d", 300), ("e", 100)]
    packed = pack_context(items, 1200, lambda item: item[1])
    assert [name for name, _ in packed] == ["a", "c", "d"]
    assert sum(tokens for _, tokens in packed) <= 1200


def test_pack_exact_budget_and_edge_cases() -> None:
    assert pack_context([5, 5, 2], 10, int) == [5, 5]
    assert pack_context([11, 3], 10, int) == [3]
    assert pack_context([1, 2], 0, int) == []
    assert pack_context([], 100, int) == []
