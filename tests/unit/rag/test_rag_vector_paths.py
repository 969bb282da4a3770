"""The two vector search paths agree: embedded mode's in-memory copy and Qdrant's own `query_points`.

Server mode searches with `query_points`. Here that same code runs against qdrant-client's local engine
(`dense_copy=False`), and against a Qdrant server when QDRANT_TEST_URL names one (a container, say).
"""

from __future__ import annotations

import importlib.metadata
import os
import sqlite3
from pathlib import Path
from uuid import UUID, uuid5

import numpy as np
import pytest
from qdrant_client import AsyncQdrantClient
from qdrant_client.http import models as qm

from services.rag.clients.outage import RetryPolicy
from services.rag.clients.qdrant import Point, VectorStore, qdrant_name, write_ahead_log

DIM = 384
POINTS = 600
QUERIES = 25
TOP = 10
NAMESPACE = UUID("0d6f1c3e-4c7a-4f42-9a36-7f0f5c8f2b11")


def _corpus() -> tuple[list[Point], np.ndarray]:
    rng = np.random.default_rng(11)
    vectors = rng.normal(size=(POINTS, DIM)).astype(np.float32)
    # documents of several chunks each, with lengths far from 1: both paths must rank by cosine
    points = [Point(uuid5(NAMESPACE, str(i)), (vectors[i] * (1 + i % 7)).tolist(), {"document_id": f"d{i // 5}"})
              for i in range(POINTS)]
    queries = rng.normal(size=(QUERIES, DIM)).astype(np.float32)
    return points, queries


async def _rankings(store: VectorStore, points: list[Point], queries: np.ndarray) -> list[list[tuple[UUID, float]]]:
    try:
        await store.ensure_collection("congruence", DIM)
        for start in range(0, len(points), 100):
            await store.upsert("congruence", points[start:start + 100])
        # search once (the in-memory copy loads), then delete and upsert again: the copy must follow every write
        await store.search("congruence", queries[0].tolist(), TOP)
        await store.delete_document("congruence", "d3")
        await store.upsert("congruence", points[:3])
        return [await store.search("congruence", query.tolist(), TOP) for query in queries]
    finally:
        await store.close()


def _assert_same(reference: list[list[tuple[UUID, float]]], other: list[list[tuple[UUID, float]]]) -> None:
    for expected, got in zip(reference, other, strict=True):
        assert [point for point, _ in got] == [point for point, _ in expected]
        assert [score for _, score in got] == pytest.approx([score for _, score in expected], abs=1e-4)


async def test_the_in_memory_copy_ranks_like_query_points_on_the_local_engine(tmp_path: Path) -> None:
    points, queries = _corpus()
    policy = RetryPolicy(1, 0.0, 0.0)
    in_memory = await _rankings(VectorStore(policy, path=tmp_path / "a"), points, queries)
    engine = await _rankings(VectorStore(policy, path=tmp_path / "b", dense_copy=False), points, queries)
    assert all(len(ranking) == TOP for ranking in in_memory)
    removed = {p.id for p in points if p.payload["document_id"] == "d3"}
    assert not removed & {point for ranking in in_memory for point, _ in ranking}
    _assert_same(engine, in_memory)


@pytest.mark.skipif(not os.environ.get("QDRANT_TEST_URL"), reason="QDRANT_TEST_URL names no Qdrant server")
async def test_the_in_memory_copy_ranks_like_a_qdrant_server(tmp_path: Path) -> None:
    points, queries = _corpus()
    policy = RetryPolicy(1, 0.0, 0.0)
    server = VectorStore(policy, url=os.environ["QDRANT_TEST_URL"])
    try:
        await server.drop_collection("congruence")
    finally:
        await server.close()
    remote = await _rankings(VectorStore(policy, url=os.environ["QDRANT_TEST_URL"]), points, queries)
    in_memory = await _rankings(VectorStore(policy, path=tmp_path / "a"), points, queries)
    _assert_same(remote, in_memory)


async def test_the_wal_switch_finds_the_qdrant_client_internals_it_relies_on(tmp_path: Path) -> None:
    """`write_ahead_log` reaches into qdrant-client's private attributes; an upgrade that moves them fails here."""
    client = AsyncQdrantClient(path=str(tmp_path / "vectors"))
    moved = f"qdrant-client {importlib.metadata.version('qdrant-client')} moved an internal that write_ahead_log uses"
    try:
        params = qm.VectorParams(size=4, distance=qm.Distance.DOT)
        await client.create_collection(qdrant_name("c"), vectors_config=params)
        local = getattr(client, "_client", None)
        collections = getattr(local, "collections", None)
        assert isinstance(collections, dict), f"{moved}: AsyncQdrantClient._client.collections"
        collection = collections[qdrant_name("c")]
        connection = getattr(getattr(collection, "storage", None), "storage", None)
        assert isinstance(connection, sqlite3.Connection), f"{moved}: <collection>.storage.storage"
        write_ahead_log(client)
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        assert connection.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL
    finally:
        await client.close()
