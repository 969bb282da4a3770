"""`GET /v1/status`: the gateway's live view of its model backends."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager
from fastapi import FastAPI
from fastapi.responses import JSONResponse

from services.gateway import status
from services.gateway.app import create_app
from tests.support.fake_openai import FakeBackend, ThreadedServer
from tests.support.procs import free_port
from tests.unit.test_gateway_app import gateway, make_settings

HI = [{"role": "user", "content": "hi"}]


class HealthOnly:
    """A backend whose /health answers what the test sets."""

    def __init__(self) -> None:
        self.status = 200
        self.body: dict[str, Any] = {"status": "ok"}
        self.server = ThreadedServer(self.app)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.get("/health")
        async def health() -> JSONResponse:
            return JSONResponse(self.body, status_code=self.status)

        return app

    @property
    def api_base(self) -> str:
        return f"http://127.0.0.1:{self.server.port}/v1"


@pytest.fixture
def health_backend() -> Iterator[HealthOnly]:
    backend = HealthOnly()
    backend.server.start()
    yield backend
    backend.server.stop()


def by_model(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {model: backend for backend in body["backends"] for model in backend["models"]}


async def test_healthy_backend_reports_queue_slots_and_speed(health_backend: HealthOnly) -> None:
    health_backend.body = {"status": "ok", "waiting": 2, "running": 1, "queue_depth": 2,
                           "slots": {"total": 4, "running": 1}, "last_tokens_per_second": 88.5}
    dead = f"http://127.0.0.1:{free_port()}/v1"
    async with gateway(make_settings(health_backend.api_base, dead)) as gw:
        response = await gw.get("/v1/status")
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "status" and abs(body["checked_at"] - time.time()) < 120
    chat = by_model(body)["chat-7b"]
    assert chat == {"name": health_backend.api_base.removesuffix("/v1").removeprefix("http://"),
                    "models": ["chat-7b"], "state": "healthy", "queue_depth": 2, "running": 1, "slots": 4,
                    "last_tokens_per_second": 88.5, "cooldown_remaining_s": None, "error": None}


async def test_a_backend_that_is_down_says_why(health_backend: HealthOnly) -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    async with gateway(make_settings(health_backend.api_base, dead)) as gw:
        code = by_model((await gw.get("/v1/status")).json())["code-7b"]
    assert code["state"] == "down"
    assert "connection refused" in code["error"]
    assert code["queue_depth"] is None and code["last_tokens_per_second"] is None


async def test_loading_and_failed_models(health_backend: HealthOnly) -> None:
    health_backend.status, health_backend.body = 503, {"status": "loading", "dependencies": {"model": "loading"}}
    async with gateway(make_settings(health_backend.api_base, health_backend.api_base)) as gw:
        body = (await gw.get("/v1/status")).json()
        # one process behind both names (phase 1) is one backend
        assert len(body["backends"]) == 1 and body["backends"][0]["models"] == ["chat-7b", "code-7b"]
        assert body["backends"][0]["state"] == "loading"
        health_backend.body = {"status": "unavailable", "dependencies": {"model": "failed: bad file"}}
        deadline = time.monotonic() + 30
        while (backend := (await gw.get("/v1/status")).json()["backends"][0])["state"] == "loading":
            assert time.monotonic() < deadline, "the status never caught up with /health"
            await asyncio.sleep(0.2)
    assert backend["state"] == "down" and "failed: bad file" in backend["error"]


async def test_the_view_follows_health_changes(health_backend: HealthOnly) -> None:
    async with gateway(make_settings(health_backend.api_base, health_backend.api_base)) as gw:
        first = (await gw.get("/v1/status")).json()
        assert first["backends"][0]["state"] == "healthy"
        health_backend.server.stop()
        deadline = time.monotonic() + 30
        while (now := (await gw.get("/v1/status")).json())["backends"][0]["state"] == "healthy":
            assert time.monotonic() < deadline, "a stopped backend still shows healthy"
            await asyncio.sleep(0.2)
        assert now["backends"][0]["state"] == "down" and now["checked_at"] > first["checked_at"]
        health_backend.server.start()
        while (await gw.get("/v1/status")).json()["backends"][0]["state"] != "healthy":
            assert time.monotonic() < deadline + 30, "a restarted backend never showed healthy again"
            await asyncio.sleep(0.2)


async def test_cooling_down_after_a_failover() -> None:
    chat, code = FakeBackend("chat").start(), FakeBackend("code").start()
    try:
        chat.behaviour.status = 500
        settings = make_settings(chat.api_base, code.api_base, GATEWAY_MAX_RETRIES=0)
        async with gateway(settings) as gw:
            before = by_model((await gw.get("/v1/status")).json())
            assert before["chat-7b"]["state"] == "healthy"
            answer = await gw.post("/v1/chat/completions", json={"model": "chat-7b", "messages": HI})
            assert answer.status_code == 200 and answer.headers["x-ai-suite-model"] == "code-7b"
            after = by_model((await gw.get("/v1/status")).json())
    finally:
        chat.stop()
        code.stop()
    assert after["chat-7b"]["state"] == "cooling_down"
    assert 0 < after["chat-7b"]["cooldown_remaining_s"] <= 30
    assert after["code-7b"]["state"] == "healthy" and after["code-7b"]["cooldown_remaining_s"] is None


async def test_status_needs_the_key_off_loopback(health_backend: HealthOnly) -> None:
    settings = make_settings(health_backend.api_base, health_backend.api_base, API_KEY="k")
    async with gateway(settings) as gw:
        assert (await gw.get("/v1/status")).status_code == 401
        assert (await gw.get("/v1/status", headers={"authorization": "Bearer k"})).status_code == 200


async def test_after_an_idle_spell_the_first_read_is_fresh(health_backend: HealthOnly,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(status, "STATUS_IDLE_SECONDS", 0.0)  # the poller stops after each read
    app = create_app(make_settings(health_backend.api_base, health_backend.api_base))
    async with LifespanManager(app) as manager:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=manager.app), base_url="http://gw") as gw:
            assert (await gw.get("/v1/status")).json()["backends"][0]["state"] == "healthy"
            board = app.state.gateway.status
            board.checked_at -= 60  # as if the last poll were a minute old
            health_backend.server.stop()
            body = (await gw.get("/v1/status")).json()
    assert body["backends"][0]["state"] == "down"
    assert time.time() - body["checked_at"] < 30
