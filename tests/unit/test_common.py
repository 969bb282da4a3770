"""Shared pieces: exposure check, error shape, body limit, API key, health, classifier."""

from __future__ import annotations

import httpx
import pytest
from fastapi import FastAPI
from pydantic import BaseModel

from services.common.app_factory import harden
from services.common.classify import classify, classify_messages
from services.common.errors import ServiceUnavailable
from services.common.health import health_response
from services.common.settings import SuiteSettings, is_loopback


class Echo(BaseModel):
    text: str


def make_app(**overrides) -> FastAPI:
    settings = SuiteSettings(_env_file=None, **overrides)
    app = FastAPI()
    harden(app, settings)

    @app.post("/echo")
    async def echo(body: Echo) -> dict:
        return {"text": body.text}

    @app.get("/down")
    async def down() -> dict:
        raise ServiceUnavailable("backend is down", retry_after=7)

    @app.get("/health")
    async def health():
        return health_response("demo", {"db": "down", "model": "ok"})

    return app


async def call(app: FastAPI, method: str, path: str, **kwargs) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://t") as client:
        return await client.request(method, path, **kwargs)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_loopback_hosts_need_no_key(host: str) -> None:
    assert is_loopback(host)
    SuiteSettings(_env_file=None, BIND_HOST=host).check_exposure()


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.5", "example.com", "::"])
def test_non_loopback_bind_without_key_is_refused(host: str) -> None:
    with pytest.raises(SystemExit, match="API_KEY"):
        SuiteSettings(_env_file=None, BIND_HOST=host).check_exposure()


def test_non_loopback_bind_with_key_is_allowed() -> None:
    SuiteSettings(_env_file=None, BIND_HOST="0.0.0.0", API_KEY="s3cret").check_exposure()


async def test_invalid_json_gets_openai_shaped_400() -> None:
    resp = await call(make_app(), "POST", "/echo", content=b"{not json",
                      headers={"content-type": "application/json"})
    assert resp.status_code == 400
    assert resp.json()["error"]["type"] == "invalid_request_error"
    assert "JSON" in resp.json()["error"]["message"]


async def test_missing_field_names_the_field() -> None:
    resp = await call(make_app(), "POST", "/echo", json={})
    assert resp.status_code == 400
    assert resp.json()["error"]["param"] == "text"


async def test_body_over_limit_gets_413_and_handler_never_runs() -> None:
    resp = await call(make_app(MAX_BODY_BYTES=100), "POST", "/echo", json={"text": "x" * 500})
    assert resp.status_code == 413
    assert resp.json()["error"]["code"] == "payload_too_large"


async def test_chunked_body_over_limit_gets_413() -> None:
    async def chunks():
        for _ in range(10):
            yield b"x" * 50

    resp = await call(make_app(MAX_BODY_BYTES=100), "POST", "/echo", content=chunks())
    assert resp.status_code == 413


async def test_unavailable_carries_retry_after() -> None:
    resp = await call(make_app(), "GET", "/down")
    assert resp.status_code == 503
    assert resp.headers["retry-after"] == "7"


async def test_health_names_each_dependency() -> None:
    resp = await call(make_app(), "GET", "/health")
    assert resp.status_code == 503
    assert resp.json()["dependencies"] == {"db": "down", "model": "ok"}


async def test_api_key_guards_everything_but_health_and_metrics() -> None:
    app = make_app(API_KEY="k1")
    assert (await call(app, "POST", "/echo", json={"text": "a"})).status_code == 401
    ok = await call(app, "POST", "/echo", json={"text": "a"}, headers={"authorization": "Bearer k1"})
    assert ok.status_code == 200
    assert (await call(app, "GET", "/health")).status_code == 503
    assert (await call(app, "GET", "/metrics")).status_code == 200


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("Hello, how are you today?", "chat"),
        ("What is the capital of France?", "chat"),
        ("오늘 날씨 어때?", "chat"),
        ("Write a Python function that reverses a list", "code"),
        ("파이썬으로 파일을 읽는 코드를 작성해줘", "code"),
        ("이 함수의 버그를 찾아줘", "code"),
        ("why does main.rs not build?", "code"),
        ("```\nprint(1)\n```", "code"),
        ("def add(a, b): return a + b", "code"),
    ],
)
def test_classifier(text: str, kind: str) -> None:
    assert classify(text).kind == kind


def test_classifier_does_not_match_keywords_inside_words() -> None:
    assert classify("I love my grandmother's barcode-free apiary").kind == "chat"


def test_classify_messages_uses_last_user_message() -> None:
    messages = [{"role": "user", "content": "write a function"}, {"role": "assistant", "content": "ok"},
                {"role": "user", "content": [{"type": "text", "text": "thanks, tell me a joke"}]}]
    assert classify_messages(messages).kind == "chat"
