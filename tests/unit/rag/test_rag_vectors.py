"""Vectors are stored at unit length in DOT collections, so scores stay cosine similarities."""

from __future__ import annotations

from pathlib import Path
from uuid import uuid4

import pytest

from services.rag.clients.outage import RetryPolicy
from services.rag.clients.qdrant import Point, VectorStore, unit_length


def test_unit_length() -> None:
    assert unit_length([3.0, 4.0]) == pytest.approx([0.6, 0.8])
    assert unit_length([0.0, 0.0]) == [0.0, 0.0]


async def test_scores_are_cosine_similarities_whatever_the_vector_length(tmp_path: Path) -> None:
    store = VectorStore(RetryPolicy(1, 0.0, 0.0), path=tmp_path / "vectors")
    try:
        await store.ensure_collection("c", 2)
        same, other = uuid4(), uuid4()
        await store.upsert("c", [Point(same, [30.0, 40.0], {"document_id": "a"}),
                                 Point(other, [2.0, 0.0], {"document_id": "b"})])
        hits = await store.search("c", [0.6, 0.8], limit=2)
    finally:
        await store.close()
    assert [h[0] for h in hits] == [same, other]
    assert hits[0][1] == pytest.approx(1.0, abs=1e-5)
    assert hits[1][1] == pytest.approx(0.6, abs=1e-5)
