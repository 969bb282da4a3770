"""The chat app's web service: static files without symlinks, security headers, and streaming proxies."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from services.web.app import create_app
from services.web.headers import CSP
from tests.support.asgi import in_process
from tests.support.fake_openai import ThreadedServer, free_port
from tests.support.web import Recorder, upstream_app, wait_for, web_settings

INDEX = b"<!doctype html><title>app</title>"


@pytest.fixture
def static_dir(tmp_path: Path) -> Path:
    root = tmp_path / "app"
    (root / "css").mkdir(parents=True)
    (root / "index.html").write_bytes(INDEX)
    (root / "app.js").write_text("export const x = 1;\n")
    (root / "css" / "app.css").write_text("body { color: red; }\n")
    (root / ".env").write_text("SECRET=1\n")
    outside = tmp_path / "secret.txt"
    outside.write_text("not for the browser")
    (root / "link.txt").symlink_to(outside)
    (root / "linked").symlink_to(tmp_path, target_is_directory=True)
    return root


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def upstream(recorder: Recorder) -> Iterator[str]:
    server = ThreadedServer(lambda: upstream_app(recorder)).start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()


@pytest.fixture
async def web(static_dir: Path, upstream: str) -> AsyncIterator[httpx.AsyncClient]:
    async with in_process(create_app(web_settings(static_dir, upstream)), "http://127.0.0.1:3000") as client:
        yield client


@pytest.fixture
def web_on_port(static_dir: Path, upstream: str) -> Iterator[str]:
    server = ThreadedServer(lambda: create_app(web_settings(static_dir, upstream)), lifespan="on").start()
    try:
        yield f"http://127.0.0.1:{server.port}"
    finally:
        server.stop()


def assert_security_headers(response: httpx.Response) -> None:
    assert response.headers["content-security-policy"] == CSP
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert not [k for k in response.headers if k.lower().startswith("access-control-")]


@pytest.mark.parametrize("path", ["/", "/c/conv_abc123", "/approvals", "/settings", "/status"])
async def test_app_pages_serve_the_index(web: httpx.AsyncClient, path: str) -> None:
    response = await web.get(path)
    assert response.status_code == 200
    assert response.content == INDEX
    assert response.headers["content-type"].startswith("text/html")
    assert_security_headers(response)


async def test_files_have_their_media_types(web: httpx.AsyncClient) -> None:
    script = await web.get("/app.js")
    assert script.status_code == 200 and script.text == "export const x = 1;\n"
    assert script.headers["content-type"].startswith("text/javascript")
    style = await web.get("/css/app.css")
    assert style.headers["content-type"].startswith("text/css")
    assert_security_headers(style)


@pytest.mark.parametrize("path", ["/link.txt", "/linked/secret.txt", "/linked/app/index.html", "/.env",
                                  "/css", "/css/", "/missing.js", "/%2e%2e/secret.txt", "/css/..%2fapp.js",
                                  "/..%2fsecret.txt"])
async def test_no_symlink_hidden_file_directory_or_parent_is_served(web: httpx.AsyncClient, path: str) -> None:
    response = await web.get(path)
    assert response.status_code == 404
    assert b"not for the browser" not in response.content
    assert_security_headers(response)


async def test_health_and_metrics(web: httpx.AsyncClient, static_dir: Path) -> None:
    assert (await web.get("/health")).status_code == 200
    assert "http_requests" in (await web.get("/metrics")).text
    (static_dir / "index.html").unlink()
    health = await web.get("/health")
    assert health.status_code == 503 and "index.html" in health.text


async def test_v1_is_forwarded_with_authorization_and_without_hop_headers(web: httpx.AsyncClient,
                                                                          recorder: Recorder) -> None:
    body = json.dumps({"model": "auto", "messages": [{"role": "user", "content": "안녕"}]})
    response = await web.post("/v1/chat/completions?x=1", content=body,
                              headers={"authorization": "Bearer k1", "content-type": "application/json",
                                       "connection": "x-private", "x-private": "hop",
                                       "cookie": "session=1"})
    assert response.status_code == 201
    seen = recorder.requests[-1]
    assert seen["path"] == "/v1/chat/completions" and seen["query"] == "x=1"
    assert seen["body"].encode("latin-1").decode() == body
    assert seen["headers"]["authorization"] == "Bearer k1"
    assert "x-private" not in seen["headers"] and "cookie" not in seen["headers"]
    # the upstream's own headers come back, except hop-by-hop ones, cookies and CORS/CSP, which are replaced
    assert response.headers["x-ai-suite-model"] == "chat-7b"
    assert "x-secret" not in response.headers and "set-cookie" not in response.headers
    assert_security_headers(response)


async def test_methods_and_queries_pass_through(web: httpx.AsyncClient, recorder: Recorder) -> None:
    assert (await web.delete("/v1/conversations/conv_1")).status_code == 200
    assert recorder.requests[-1]["method"] == "DELETE"
    await web.get("/v1/conversations", params={"query": "파일 읽기"})
    assert recorder.requests[-1]["query"] == httpx.QueryParams({"query": "파일 읽기"}).__str__()


async def test_proxied_paths_cannot_smuggle_a_query_a_parent_or_a_control_character(
        web: httpx.AsyncClient, recorder: Recorder) -> None:
    # an encoded "?" stays part of the path: the upstream sees no query the client did not send as one
    assert (await web.get("/v1/models%3Fkey=1")).status_code == 200
    assert recorder.requests[-1]["path"] == "/v1/models?key=1" and recorder.requests[-1]["query"] == ""
    # a control character is passed on encoded, not turned into a server error
    assert (await web.get("/v1/models%1F")).status_code == 200
    assert recorder.requests[-1]["path"] == "/v1/models\x1f"
    count = len(recorder.requests)
    for path in ("/v1/..%2Fmetrics", "/v1/conversations/%2E%2E/%2E%2E/metrics", "/v1/%2E/models",
                 "/mcp/approvals/apr_1%2F..%2F..%2Fusers/approve", "/mcp/approvals/%2E%2E/approve"):
        response = await web.request("POST" if path.startswith("/mcp") else "GET", path)
        assert response.status_code in (404, 405), (path, response.text)
    assert len(recorder.requests) == count


async def test_gateway_down_is_503_with_retry_after(static_dir: Path) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    async with in_process(create_app(web_settings(static_dir, dead)), "http://127.0.0.1:3000") as web:
        response = await web.post("/v1/chat/completions", json={"model": "auto", "messages": []})
        assert response.status_code == 503
        assert int(response.headers["retry-after"]) > 0
        error = response.json()["error"]
        assert error["type"] == "service_unavailable" and "gateway" in error["message"]
        assert error["code"] == "gateway_unavailable"
        assert_security_headers(response)
        rag = await web.get("/rag/collections")
        assert rag.status_code == 503 and "RAG" in rag.json()["error"]["message"]
        mcp = await web.get("/mcp/approvals")
        assert mcp.status_code == 503 and "Retry-After" in mcp.headers


async def test_an_answer_streams_through_before_it_is_finished(web_on_port: str, recorder: Recorder) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        async with client.stream("GET", f"{web_on_port}/v1/slow-stream") as response:
            assert response.headers["content-type"].startswith("text/event-stream")
            assert_security_headers(response)
            chunks = response.aiter_raw()
            first = await asyncio.wait_for(anext(chunks), 20)
            assert first.startswith(b'data: {"n": 1}')
            assert not recorder.closed.is_set()
            recorder.release.set()
            rest = b"".join([chunk async for chunk in chunks])
    assert (first + rest).endswith(b"data: [DONE]\n\n")


async def test_a_client_that_leaves_closes_the_upstream_stream(web_on_port: str, recorder: Recorder) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        async with client.stream("GET", f"{web_on_port}/v1/slow-stream") as response:
            await asyncio.wait_for(anext(response.aiter_raw()), 20)
    # the upstream generator is closed although the test never released it
    assert await wait_for(recorder.closed, 20)


async def test_an_upload_reaches_rag_while_it_is_still_being_sent(web_on_port: str, recorder: Recorder) -> None:
    first, second = b"x" * 65536, b"y" * 1000

    async def body() -> AsyncIterator[bytes]:
        yield first
        # the rest is sent only once the upstream has the first part: a buffering proxy would wait forever
        assert await wait_for(recorder.first_chunk, 20), "the upstream got nothing before the upload ended"
        yield second

    headers = {"content-type": "multipart/form-data; boundary=b", "content-length": str(len(first) + len(second))}
    async with httpx.AsyncClient(timeout=30) as client:
        response = await client.post(f"{web_on_port}/rag/index", content=body(), headers=headers)
    assert response.status_code == 200 and response.json() == {"received": len(first) + len(second)}
    assert recorder.requests[-1]["content_type"] == headers["content-type"]


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("GET", "/rag/collections", True),
    ("GET", "/rag/collections/docs/documents", True),
    ("POST", "/rag/query", True),
    ("POST", "/rag/search", True),
    ("GET", "/rag/health", False),
    ("POST", "/rag/collections", False),
    ("GET", "/rag/collections/docs/other", False),
    ("GET", "/rag/collections/docs/documents/../../x", False),
    ("GET", "/rag/collections/%2E%2E/documents", False),
    ("DELETE", "/rag/collections/docs", False),
])
async def test_only_the_apps_rag_routes_are_proxied(web: httpx.AsyncClient, recorder: Recorder, method: str,
                                                    path: str, allowed: bool) -> None:
    response = await web.request(method, path, json={} if method == "POST" else None)
    if allowed:
        assert response.status_code in (200, 201)
        assert recorder.requests[-1]["path"] == path.removeprefix("/rag")
    else:
        assert response.status_code in (404, 405)
        assert not recorder.requests


async def test_approvals_go_to_the_mcp_api_with_origin_and_key(web: httpx.AsyncClient, recorder: Recorder) -> None:
    headers = {"authorization": "Bearer mcp-key", "origin": "http://127.0.0.1:3000"}
    await web.get("/mcp/approvals", headers=headers)
    listed = recorder.requests[-1]
    assert listed["path"] == "/api/approvals" and listed["query"] == "everyone=true"
    assert listed["headers"]["authorization"] == "Bearer mcp-key"
    response = await web.post("/mcp/approvals/apr_1/reject", json={"reason": "no"}, headers=headers)
    assert response.status_code == 201
    decided = recorder.requests[-1]
    assert decided["path"] == "/api/approvals/apr_1/reject"
    assert decided["headers"]["origin"] == "http://127.0.0.1:3000"
    assert json.loads(decided["body"]) == {"reason": "no"}
    assert (await web.post("/mcp/approvals/apr_1/delete", json={})).status_code == 404


async def test_alerts_without_a_receiver_are_unavailable(web: httpx.AsyncClient) -> None:
    body = (await web.get("/api/alerts")).json()
    assert body["available"] is False and body["alerts"] == []


async def test_alerts_come_from_the_receiver(static_dir: Path, tmp_path: Path) -> None:
    from services.alerts.app import create_app as alerts_app
    from services.alerts.settings import AlertsSettings

    receiver = ThreadedServer(lambda: alerts_app(AlertsSettings(_env_file=None, DATA_DIR=tmp_path / "data")),
                              lifespan="on").start()
    url = f"http://127.0.0.1:{receiver.port}"
    try:
        firing = {"status": "firing", "alerts": [{
            "status": "firing", "fingerprint": "f1", "startsAt": "2026-12-07T10:00:00Z",
            "labels": {"alertname": "BackendDown", "severity": "critical", "service": "inference-chat"},
            "annotations": {"summary": "inference-chat is down"}}]}
        async with httpx.AsyncClient() as client:
            assert (await client.post(f"{url}/webhook", json=firing)).status_code == 200
        settings = web_settings(static_dir, f"http://127.0.0.1:{free_port()}", WEB_ALERTS_URL=url)
        async with in_process(create_app(settings), "http://127.0.0.1:3000") as web:
            body = (await web.get("/api/alerts")).json()
    finally:
        receiver.stop()
    assert body == {"available": True, "alerts": [{"name": "BackendDown", "severity": "critical",
                                                   "service": "inference-chat", "summary": "inference-chat is down",
                                                   "since": "2026-12-07T10:00:00Z"}]}


async def test_static_files_are_opened_without_following_a_swapped_in_symlink(static_dir: Path,
                                                                              web: httpx.AsyncClient) -> None:
    os.replace(static_dir / "link.txt", static_dir / "app.js")
    assert (await web.get("/app.js")).status_code == 404
