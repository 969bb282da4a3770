"""Postgres and the vectors agree after a write that failed half way: no vector without its chunk."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.common.errors import ServiceUnavailable
from services.rag.state import RagState


async def counts(client: httpx.AsyncClient, collection: str = "docs") -> dict[str, int]:
    rows = (await client.get("/collections")).json()["collections"]
    row = next(r for r in rows if r["name"] == collection)
    return {"documents": row["documents"], "chunks": row["chunks"], "vectors": row["vectors"]}


async def settled(client: httpx.AsyncClient, deadline_s: float = 20) -> dict[str, int]:
    deadline = time.monotonic() + deadline_s
    now = await counts(client)
    while now["vectors"] != now["chunks"] and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        now = await counts(client)
    return now


async def test_a_document_whose_postgres_write_fails_leaves_no_orphan_vectors(
        rag: tuple[httpx.AsyncClient, FastAPI], corpus: dict, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    client, app = rag
    assert (await client.post("/index", json={"collection": "docs"})).status_code == 200
    before = await counts(client)
    assert before["vectors"] == before["chunks"] > 0
    state: RagState = app.state.rag
    (tmp_path / "documents" / "late.md").write_text("# Late\n" + "A note that arrives late. " * 40 + "\n")
    real = state.pg.save_document

    async def refuse(*args: Any, **kwargs: Any) -> None:
        raise ServiceUnavailable("postgres is unavailable: the server closed the connection")

    monkeypatch.setattr(state.pg, "save_document", refuse)
    failed = await client.post("/index", json={"collection": "docs", "paths": ["late.md"]})
    assert failed.status_code == 503 and failed.headers["retry-after"]
    monkeypatch.setattr(state.pg, "save_document", real)
    after = await settled(client)
    assert after == before  # the late document's vectors went with its failed write

    # an edited document whose write fails keeps its old chunks, each with its vector
    edited = next(iter(corpus["documents"]))
    (tmp_path / "documents" / edited).write_text("# Edited\n" + "Entirely new words here. " * 40 + "\n")
    monkeypatch.setattr(state.pg, "save_document", refuse)
    assert (await client.post("/index", json={"collection": "docs", "paths": [edited]})).status_code == 503
    monkeypatch.setattr(state.pg, "save_document", real)
    assert await settled(client) == before
    assert (await client.post("/index", json={"collection": "docs"})).status_code == 200
    final = await counts(client)
    assert final["documents"] == before["documents"] + 1 and final["vectors"] == final["chunks"]
