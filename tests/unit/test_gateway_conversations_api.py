"""The conversations API in process: the official openai client, the bad-input matrix, listing and text search."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.support.fake_openai import Behaviour, FakeBackend
from tests.support.gateway import gateway_client, gateway_on_port, gateway_settings

HI = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def backend() -> Iterator[FakeBackend]:
    started = FakeBackend("chat").start()
    yield started
    started.stop()


@pytest.fixture
def model(backend: FakeBackend) -> Behaviour:
    backend.behaviour.__init__(name="chat")  # fresh behaviour for every test
    return backend.behaviour


@pytest.fixture
async def gw(backend: FakeBackend, model: Behaviour, tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with gateway_client(gateway_settings(backend.api_base, backend.api_base, tmp_path)) as client:
        yield client


def db_counts(data_dir: Path) -> tuple[int, int, int]:
    """Rows in conversations, items and the full-text index, read straight from the file."""
    with sqlite3.connect(data_dir / "conversations" / "conversations.db") as conn:
        return tuple(conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]  # type: ignore[return-value]
                     for table in ("conversations", "items", "items_fts"))


def test_the_official_openai_client_works_unmodified(backend: FakeBackend, model: Behaviour, tmp_path: Path) -> None:
    with gateway_on_port(gateway_settings(backend.api_base, backend.api_base, tmp_path)) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="local", max_retries=0)
        conversation = client.conversations.create(
            metadata={"topic": "demo"},
            items=[{"type": "message", "role": "system", "content": "Answer briefly."},
                   {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "first question"}]}],
        )
        assert conversation.id.startswith("conv_") and conversation.object == "conversation"
        assert conversation.metadata == {"topic": "demo"} and conversation.created_at > 0

        added = client.conversations.items.create(
            conversation.id, items=[{"type": "message", "role": "assistant", "content": "first answer"}])
        assert [item.role for item in added.data] == ["assistant"]
        assert added.data[0].id.startswith("msg_") and added.data[0].status == "completed"
        assert added.data[0].content[0].type == "output_text"

        answer = client.chat.completions.create(model="chat-7b", messages=[{"role": "user", "content": "second"}],
                                                extra_body={"conversation": conversation.id})
        assert answer.choices[0].message.content == "chat:chat-7b"
        assert model.seen[-1]["messages"] == [
            {"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "first question"},
            {"role": "assistant", "content": "first answer"}, {"role": "user", "content": "second"}]
        assert "conversation" not in model.seen[-1]

        newest_first = client.conversations.items.list(conversation.id, limit=2)
        assert [item.role for item in newest_first.data] == ["assistant", "user"]
        assert newest_first.has_more is True
        every = list(client.conversations.items.list(conversation.id, order="asc", limit=2))  # pages via `after`
        assert [(i.role, i.content[0].text) for i in every] == [
            ("system", "Answer briefly."), ("user", "first question"), ("assistant", "first answer"),
            ("user", "second"), ("assistant", "chat:chat-7b")]
        assert every[-1].model_extra == {"created_at": every[-1].model_extra["created_at"], "model": "chat-7b",
                                         "route_reason": "requested"}
        assert client.conversations.items.retrieve(every[1].id, conversation_id=conversation.id).id == every[1].id

        renamed = client.conversations.update(conversation.id, metadata={"title": "Renamed"})
        assert renamed.metadata == {"title": "Renamed"}
        assert client.conversations.retrieve(conversation.id).model_extra["title"] == "Renamed"

        client.conversations.items.delete(every[0].id, conversation_id=conversation.id)
        assert len(list(client.conversations.items.list(conversation.id))) == 4

        deleted = client.conversations.delete(conversation.id)
        assert (deleted.id, deleted.deleted, deleted.object) == (conversation.id, True, "conversation.deleted")
        with pytest.raises(openai.NotFoundError):
            client.conversations.retrieve(conversation.id)
        with pytest.raises(openai.NotFoundError):
            client.conversations.items.list(conversation.id)
    assert db_counts(tmp_path) == (0, 0, 0)


async def test_list_is_newest_first_with_titles_and_pages(gw: httpx.AsyncClient) -> None:
    ids = []
    for text in ("How do I read a file in Python?", "오늘 날씨 어때?", "A third one"):
        created = await gw.post("/v1/conversations", json={"items": [{"role": "user", "content": text}]})
        ids.append(created.json()["id"])
    await gw.post(f"/v1/conversations/{ids[0]}/items", json={"items": [{"role": "user", "content": "more"}]})
    await gw.post(f"/v1/conversations/{ids[2]}", json={"metadata": {"title": "Renamed third"}})

    listed = (await gw.get("/v1/conversations")).json()
    assert [c["id"] for c in listed["data"]] == [ids[0], ids[2], ids[1]]  # renaming does not reorder
    titles = [c["title"] for c in listed["data"]]
    assert titles == ["How do I read a file in Python?", "Renamed third", "오늘 날씨 어때?"]
    assert listed["has_more"] is False and listed["first_id"] == ids[0] and listed["last_id"] == ids[1]

    first = (await gw.get("/v1/conversations", params={"limit": 2})).json()
    rest = (await gw.get("/v1/conversations", params={"limit": 2, "after": first["last_id"]})).json()
    assert first["has_more"] is True and rest["has_more"] is False
    assert [c["id"] for c in first["data"] + rest["data"]] == [ids[0], ids[2], ids[1]]
    oldest = (await gw.get("/v1/conversations", params={"order": "asc", "limit": 1})).json()
    assert oldest["data"][0]["id"] == ids[1]
    item = (await gw.get(f"/v1/conversations/{ids[1]}/items")).json()["data"][0]
    await gw.delete(f"/v1/conversations/{ids[1]}/items/{item['id']}")
    assert (await gw.get("/v1/conversations")).json()["first_id"] == ids[1]  # deleting an item is a change too


async def test_text_search_finds_korean_inside_inflected_forms(gw: httpx.AsyncClient) -> None:
    texts = {"file": "파일을 읽는 방법을 알려 주세요", "weather": "오늘 서울 날씨가 정말 좋네요",
             "python": "Reading FILES with Python's open()"}
    ids = {}
    for key, text in texts.items():
        created = await gw.post("/v1/conversations", json={"items": [{"role": "user", "content": text}]})
        ids[key] = created.json()["id"]

    async def found(query: str) -> list[str]:
        body = (await gw.get("/v1/conversations", params={"query": query})).json()
        assert body["engines"] == ["text"]
        return [next(k for k, v in ids.items() if v == c["id"]) for c in body["data"]]

    assert await found("파일") == ["file"]  # two syllables: below the trigram length
    assert await found("파일이") == ["file"]  # the particle comes off the query word
    assert await found("날씨를") == ["weather"]
    assert await found("읽는 방법") == ["file"]
    assert await found("files python") == ["python"]  # every word, any case
    assert await found("file") == ["python"]
    assert await found("파일 날씨") == []
    # control characters are not search syntax: FTS5 would read a NUL as the end of its query string
    assert await found("\x00파일을\x00 읽는\x1f") == ["file"]
    assert await found("00\x00") == []
    hit = (await gw.get("/v1/conversations", params={"query": "서울"})).json()["data"][0]
    assert hit["match"]["snippet"] == texts["weather"] and hit["match"]["item_id"].startswith("msg_")


async def test_deleting_removes_items_and_search_entries(gw: httpx.AsyncClient, tmp_path: Path) -> None:
    keep = (await gw.post("/v1/conversations", json={"items": [{"role": "user", "content": "keep this apple"}]}))
    gone = (await gw.post("/v1/conversations", json={"items": [{"role": "user", "content": "delete this apple"}]}))
    assert len((await gw.get("/v1/conversations", params={"query": "apple"})).json()["data"]) == 2
    assert (await gw.delete(f"/v1/conversations/{gone.json()['id']}")).json()["deleted"] is True
    hits = (await gw.get("/v1/conversations", params={"query": "apple"})).json()["data"]
    assert [h["id"] for h in hits] == [keep.json()["id"]]
    assert db_counts(tmp_path) == (1, 1, 1)
    assert (await gw.delete(f"/v1/conversations/{gone.json()['id']}")).status_code == 404


BAD_REQUESTS = [
    ("POST", "/v1/conversations", {"items": [{"role": "wizard", "content": "x"}]}, 400, "invalid_role"),
    ("POST", "/v1/conversations", {"items": [{"role": "user", "content": "x"}] * 21}, 413, "too_many_items"),
    ("POST", "/v1/conversations", {"items": [{"type": "function_call", "name": "f"}]}, 400, "invalid_request"),
    ("POST", "/v1/conversations", {"items": [{"role": "user", "content": [{"type": "input_image"}]}]}, 400,
     "unsupported_content"),
    ("POST", "/v1/conversations", {"items": [{"role": "user", "content": 7}]}, 400, "invalid_request"),
    ("POST", "/v1/conversations", {"items": "not a list"}, 400, "invalid_request"),
    ("POST", "/v1/conversations", {"metadata": {"k": 1}}, 400, "invalid_request"),
    ("POST", "/v1/conversations", {"metadata": {f"k{n}": "v" for n in range(17)}}, 400, "invalid_request"),
    ("POST", "/v1/conversations", b"{not json", 400, "invalid_json"),
    ("POST", "/v1/conversations", [1, 2], 400, "invalid_request"),
    ("GET", "/v1/conversations/conv_unknown", None, 404, "conversation_not_found"),
    ("GET", "/v1/conversations/not-an-id", None, 404, "conversation_not_found"),
    ("POST", "/v1/conversations/conv_unknown", {"metadata": {}}, 404, "conversation_not_found"),
    ("DELETE", "/v1/conversations/conv_unknown", None, 404, "conversation_not_found"),
    ("GET", "/v1/conversations/conv_unknown/items", None, 404, "conversation_not_found"),
    ("POST", "/v1/conversations/conv_unknown/items", {"items": [{"role": "user", "content": "x"}]}, 404,
     "conversation_not_found"),
    ("POST", "/v1/conversations/{id}", {"title": "no metadata"}, 400, "invalid_request"),
    ("POST", "/v1/conversations/{id}", {"metadata": {"title": "x" * 513}}, 400, "invalid_request"),
    ("POST", "/v1/conversations/{id}/items", {"items": [{"role": "tool", "content": "x"}]}, 400, "invalid_role"),
    ("POST", "/v1/conversations/{id}/items", {"items": [{"role": "user", "content": "ok"},
                                                         {"role": "robot", "content": "x"}]}, 400, "invalid_role"),
    ("POST", "/v1/conversations/{id}/items", {"items": [{"role": "user", "content": "x"}] * 21}, 413,
     "too_many_items"),
    ("POST", "/v1/conversations/{id}/items", {"items": []}, 400, "invalid_request"),
    ("GET", "/v1/conversations/{id}/items?limit=0", None, 400, "invalid_request"),
    ("GET", "/v1/conversations/{id}/items?limit=101", None, 400, "invalid_request"),
    ("GET", "/v1/conversations/{id}/items?order=sideways", None, 400, "invalid_request"),
    ("GET", "/v1/conversations/{id}/items?after=msg_unknown", None, 400, "invalid_request"),
    ("GET", "/v1/conversations/{id}/items/msg_unknown", None, 404, "item_not_found"),
    ("DELETE", "/v1/conversations/{id}/items/msg_unknown", None, 404, "item_not_found"),
    ("GET", "/v1/conversations?after=conv_unknown", None, 400, "invalid_request"),
    ("POST", "/v1/chat/completions", {"model": "chat-7b", "conversation": "conv_unknown", "messages": HI}, 404,
     "conversation_not_found"),
    ("POST", "/v1/chat/completions", {"model": "chat-7b", "conversation": "{id}",
                                      "messages": [{"role": "wizard", "content": "x"}]}, 400, "invalid_role"),
    ("POST", "/v1/chat/completions", {"model": "chat-7b", "conversation": "{id}", "messages": HI * 21}, 413,
     "too_many_items"),
    ("POST", "/v1/chat/completions", {"model": "nope", "conversation": "{id}", "messages": HI}, 404,
     "model_not_found"),
]


@pytest.mark.parametrize(("method", "path", "body", "status", "code"), BAD_REQUESTS)
async def test_bad_input_gets_an_openai_error_and_changes_nothing(
    gw: httpx.AsyncClient, model: Behaviour, tmp_path: Path, method: str, path: str, body: object, status: int,
    code: str
) -> None:
    created = await gw.post("/v1/conversations", json={"metadata": {"title": "before"},
                                                        "items": [{"role": "user", "content": "kept"}]})
    conversation_id = created.json()["id"]
    before = (db_counts(tmp_path), (await gw.get(f"/v1/conversations/{conversation_id}")).json())
    path = path.replace("{id}", conversation_id)
    if isinstance(body, dict) and body.get("conversation") == "{id}":
        body = {**body, "conversation": conversation_id}
    content = body if isinstance(body, bytes) else None
    response = await gw.request(method, path, content=content, json=None if content is not None else body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["message"] and error["type"] == "invalid_request_error"
    assert (db_counts(tmp_path), (await gw.get(f"/v1/conversations/{conversation_id}")).json()) == before
    assert model.seen == []


async def test_the_api_key_guards_conversations(backend: FakeBackend, tmp_path: Path) -> None:
    settings = gateway_settings(backend.api_base, backend.api_base, tmp_path, API_KEY="k1")
    async with gateway_client(settings) as client:
        assert (await client.post("/v1/conversations", json={})).status_code == 401
        assert (await client.get("/v1/conversations")).status_code == 401
        assert (await client.get("/conversations")).status_code == 401
        created = await client.post("/v1/conversations", json={}, headers={"authorization": "Bearer k1"})
        assert created.status_code == 200
        refused = await client.get(f"/v1/conversations/{created.json()['id']}/items")
        assert refused.status_code == 401 and refused.json()["error"]["code"] == "invalid_api_key"


async def test_without_a_store_only_conversations_fail(backend: FakeBackend, model: Behaviour, tmp_path: Path) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the store's folder should be")
    settings = gateway_settings(backend.api_base, backend.api_base, tmp_path,
                                CONVERSATIONS_DB=str(blocked / "conversations.db"))
    async with gateway_client(settings) as client:
        plain = await client.post("/v1/chat/completions", json={"model": "chat-7b", "messages": HI})
        assert plain.status_code == 200  # the fast path never touches the store
        refused = await client.post("/v1/conversations", json={})
        assert refused.status_code == 503 and refused.json()["error"]["code"] == "conversation_store_unavailable"
        in_conversation = await client.post("/v1/chat/completions", json={
            "model": "chat-7b", "messages": HI, "conversation": "conv_abc"})
        assert in_conversation.status_code == 503
        readiness = (await client.get("/health/readiness")).json()
        assert readiness["dependencies"]["conversations"].startswith("unavailable: cannot open")
    assert len(model.seen) == 1
