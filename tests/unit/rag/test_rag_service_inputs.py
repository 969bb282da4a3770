"""Bad input gets a clear 4xx and changes nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.support.rag import sql_rows


async def collections(client) -> list[str]:
    return [c["name"] for c in (await client.get("/collections")).json()["collections"]]


@pytest.mark.parametrize("query", ["", "   \n\t"])
async def test_empty_query_is_400(rag, query: str) -> None:
    client, _ = rag
    for route in ("/search", "/query"):
        response = await client.post(route, json={"query": query, "collection": "docs"})
        assert response.status_code == 400, response.text
        assert response.json()["error"]["param"] == "query"


async def test_a_nul_in_the_query_is_400_and_logs_nothing(rag, database_url: str) -> None:
    client, _ = rag
    before = sql_rows(database_url, "SELECT count(*) FROM search_logs")
    for route in ("/search", "/query"):
        response = await client.post(route, json={"query": "weather\x00", "collection": "docs"})
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "invalid_query"
    assert sql_rows(database_url, "SELECT count(*) FROM search_logs") == before


async def test_query_of_100k_characters_is_413(rag) -> None:
    client, _ = rag
    for route in ("/search", "/query"):
        response = await client.post(route, json={"query": "가" * 100_000, "collection": "docs"})
        assert response.status_code == 413
        assert "limit is 4000" in response.json()["error"]["message"]


async def test_unknown_collection_is_404(rag) -> None:
    client, _ = rag
    for route in ("/search", "/query"):
        response = await client.post(route, json={"query": "anything", "collection": "missing"})
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "collection_not_found"
    assert (await client.delete("/collections/missing/documents/abc")).status_code == 404


async def test_paths_outside_documents_dir_are_400_and_change_nothing(rag, tmp_path: Path, database_url) -> None:
    client, _ = rag
    docs = tmp_path / "documents"
    outside = tmp_path / "secret.txt"
    outside.write_text("the launch code is 0000", encoding="utf-8")
    sibling = tmp_path / "documents2"
    sibling.mkdir()
    (sibling / "note.txt").write_text("a sibling folder that shares the prefix", encoding="utf-8")
    os.symlink(outside, docs / "link-to-secret.txt")
    os.symlink(tmp_path, docs / "link-to-parent")
    for path in ["../secret.txt", str(outside), "/etc/passwd", "link-to-secret.txt", "link-to-parent/secret.txt",
                 str(sibling / "note.txt"), "coffee.txt/../../secret.txt"]:
        response = await client.post("/index", json={"collection": "docs", "paths": ["coffee.txt", path]})
        assert response.status_code == 400, (path, response.text)
        assert response.json()["error"]["code"] == "path_outside_root"
    assert await collections(client) == []
    assert sql_rows(database_url, "SELECT count(*) FROM documents") == [(0,)]


async def test_symlinks_escaping_a_walked_folder_are_skipped_with_a_reason(rag, tmp_path: Path) -> None:
    client, _ = rag
    outside = tmp_path / "secret.txt"
    outside.write_text("the launch code is 0000", encoding="utf-8")
    os.symlink(outside, tmp_path / "documents" / "escape.txt")
    response = await client.post("/index", json={"collection": "docs"})
    assert response.status_code == 200
    body = response.json()
    assert {"path": "escape.txt", "reason": "symlink points outside DOCUMENTS_DIR"} in body["skipped"]
    assert all("secret" not in d["path"] for d in body["documents"])


async def test_binary_file_is_skipped_with_its_reason(rag, tmp_path: Path) -> None:
    client, _ = rag
    (tmp_path / "documents" / "blob.bin").write_bytes(bytes(range(256)) * 64)
    alone = await client.post("/index", json={"collection": "docs", "paths": ["blob.bin"]})
    assert alone.status_code == 400
    assert alone.json()["error"]["code"] == "no_readable_files"
    assert "blob.bin" in alone.json()["error"]["message"]
    assert await collections(client) == []
    mixed = await client.post("/index", json={"collection": "docs", "paths": ["blob.bin", "coffee.txt"]})
    assert mixed.status_code == 200
    skipped = mixed.json()["skipped"]
    assert [s["path"] for s in skipped] == ["blob.bin"] and skipped[0]["reason"]


async def test_zero_byte_upload_alone_is_400(rag) -> None:
    client, _ = rag
    response = await client.post("/index", data={"collection": "docs"},
                                 files=[("files", ("empty.md", b"", "text/markdown"))])
    assert response.status_code == 400
    assert "empty file (0 bytes)" in response.json()["error"]["message"]
    assert await collections(client) == []


@pytest.mark.parametrize("body", [
    {"collection": "../etc", "paths": ["coffee.txt"]},
    {"collection": "", "paths": ["coffee.txt"]},
    {"collection": "docs", "paths": [""]},
    {"collection": "docs", "paths": "coffee.txt"},
    {"collection": "docs", "unknown": 1},
])
async def test_malformed_index_requests_are_400(rag, body: dict) -> None:
    client, _ = rag
    response = await client.post("/index", json=body)
    assert response.status_code == 400, response.text
    assert await collections(client) == []


async def test_missing_path_is_404_and_bad_json_400(rag) -> None:
    client, _ = rag
    response = await client.post("/index", json={"collection": "docs", "paths": ["nope.md"]})
    assert response.status_code == 404
    response = await client.post("/index", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 400


async def test_upload_names_cannot_climb_out_of_the_upload_folder(rag, tmp_path: Path) -> None:
    client, _ = rag
    files = [("files", ("../../escape.md", b"The escape hatch is on deck three.", "text/markdown"))]
    response = await client.post("/index", data={"collection": "docs"}, files=files)
    assert response.status_code == 200, response.text
    assert [d["path"] for d in response.json()["documents"]] == ["uploads/docs/escape.md"]
    assert not (tmp_path / "escape.md").exists()
    assert (tmp_path / "documents" / "uploads" / "docs" / "escape.md").exists()
