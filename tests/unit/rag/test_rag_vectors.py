"""Vectors are stored at unit length in DOT collections, so scores stay cosine similarities."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path
from uuid import UUID, uuid4

import numpy as np
import pytest

from services.rag.clients.dense import DenseMatrix
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


def _brute_force(points: dict[UUID, np.ndarray], query: np.ndarray, limit: int) -> list[UUID]:
    scores = {point_id: float(vector @ query) for point_id, vector in points.items()}
    return sorted(scores, key=lambda point_id: -scores[point_id])[:limit]


def test_dense_matrix_ranks_like_brute_force_through_removals_and_reused_rows() -> None:
    rng = np.random.default_rng(3)
    matrix = DenseMatrix(8, capacity=4)
    points: dict[UUID, np.ndarray] = {}

    def add(count: int, document: str) -> None:
        rows = rng.standard_normal((count, 8)).astype(np.float32)
        new = {uuid4(): row / np.linalg.norm(row) for row in rows}
        matrix.upsert((point_id, vector.tolist(), document) for point_id, vector in new.items())
        points.update(new)

    add(30, "a")
    add(20, "b")
    gone = list(points)[:10]
    matrix.remove(gone)
    for point_id in gone:
        del points[point_id]
    add(5, "c")  # fills rows freed by the removal
    matrix.remove_document("b")
    points = {point_id: vector for point_id, vector in points.items() if point_id in matrix}
    assert len(matrix) == len(points) == 25
    for _ in range(5):
        query = rng.standard_normal(8).astype(np.float32)
        assert [h[0] for h in matrix.search(query.tolist(), 7)] == _brute_force(points, query, 7)
    assert len(matrix.search(query.tolist(), 100)) == 25
    assert DenseMatrix(8).search(query.tolist(), 5) == []


async def test_embedded_search_follows_every_write_and_a_reopen(tmp_path: Path) -> None:
    """The in-memory copy that embedded searches use agrees with what Qdrant stores, write after write."""
    rng = np.random.default_rng(5)
    path = tmp_path / "vectors"
    points: dict[UUID, np.ndarray] = {}
    documents: dict[UUID, str] = {}

    async def add(store: VectorStore, count: int, document: str) -> None:
        new = {uuid4(): row for row in rng.standard_normal((count, 16))}
        await store.upsert("c", [Point(point_id, row.tolist(), {"document_id": document})
                                 for point_id, row in new.items()])
        points.update({point_id: row / np.linalg.norm(row) for point_id, row in new.items()})
        documents.update(dict.fromkeys(new, document))

    async def agrees(store: VectorStore) -> None:
        for _ in range(3):
            query = rng.standard_normal(16)
            hits = await store.search("c", query.tolist(), 10)
            assert [h[0] for h in hits] == _brute_force(points, query / np.linalg.norm(query), 10)
        # the copy was kept in step, not read again from Qdrant
        assert "c" in store._dense

    store = VectorStore(RetryPolicy(1, 0.0, 0.0), path=path)
    try:
        await store.ensure_collection("c", 16)
        await add(store, 40, "a")
        await agrees(store)  # the first search copies the vectors
        await add(store, 20, "b")
        await agrees(store)
        removed = list(points)[:15]
        await store.delete_points("c", removed)
        for point_id in removed:
            del points[point_id]
        await agrees(store)
        await store.delete_document("c", "b")
        points = {point_id: vector for point_id, vector in points.items() if documents[point_id] != "b"}
        await agrees(store)
    finally:
        await store.close()
    reopened = VectorStore(RetryPolicy(1, 0.0, 0.0), path=path)
    try:
        await reopened.warm()
        await agrees(reopened)
        await reopened.drop_collection("c")
        assert await reopened.search("c", [1.0] * 16, 5) == []
        await reopened.ensure_collection("c", 16)
        points.clear()
        await add(reopened, 3, "d")
        await agrees(reopened)
    finally:
        await reopened.close()


async def test_embedded_collections_commit_through_a_write_ahead_log(tmp_path: Path) -> None:
    """Each point is its own commit in embedded Qdrant; WAL mode makes that one synced append, kept on reopen."""
    path = tmp_path / "vectors"
    store = VectorStore(RetryPolicy(1, 0.0, 0.0), path=path)
    try:
        await store.ensure_collection("c", 4)
        await store.upsert("c", [Point(uuid4(), [1.0, 0.0, 0.0, 0.0], {"document_id": "a"})])
    finally:
        await store.close()
    files = list(path.rglob("storage.sqlite"))
    assert len(files) == 1
    with closing(sqlite3.connect(files[0])) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert conn.execute("SELECT count(*) FROM points").fetchone() == (1,)
    reopened = VectorStore(RetryPolicy(1, 0.0, 0.0), path=path)
    try:
        assert len(await reopened.search("c", [1.0, 0.0, 0.0, 0.0], 5)) == 1
    finally:
        await reopened.close()
