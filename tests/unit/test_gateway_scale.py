"""Several backends per model: least-busy choice, queue depth, failover between them, per-backend keys."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from asgi_lifespan import LifespanManager
from pydantic import ValidationError

from services.gateway.app import create_app
from services.gateway.litellm_config import build_litellm_config
from services.gateway.routing import CHAT, CODE, Cooldowns, Deployment, Router
from services.gateway.settings import GatewaySettings, parse_backend_list
from tests.support.fake_openai import FakeBackend
from tests.support.gateway import gateway_client, gateway_settings
from tests.support.procs import free_port

HI = {"model": CHAT, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture
def pair() -> Iterator[tuple[FakeBackend, FakeBackend]]:
    a, b = FakeBackend("a").start(), FakeBackend("b").start()
    yield a, b
    a.stop()
    b.stop()


def answered_by(response: httpx.Response) -> str:
    assert response.status_code == 200, response.text
    return response.json()["choices"][0]["message"]["content"].split(":", 1)[0]


def test_backend_list_parses_urls_models_and_key_names() -> None:
    backends = parse_backend_list(
        " http://gpu1:8000/v1/ | model=Qwen/Qwen2.5-7B-Instruct | key_env=GPU1_KEY ,,http://127.0.0.1:8011/v1",
        "chat-7b")
    assert [(b.api_base, b.backend_model, b.key_env) for b in backends] == [
        ("http://gpu1:8000/v1", "Qwen/Qwen2.5-7B-Instruct", "GPU1_KEY"), ("http://127.0.0.1:8011/v1", "chat-7b", None)]


@pytest.mark.parametrize("bad", ["gpu1:8000", "ftp://x/v1", "http://x/v1|mdl=a", "http://x/v1|key_env=1BAD",
                                 "http://x/v1|model="])
def test_malformed_backend_list_is_refused_at_startup(bad: str) -> None:
    with pytest.raises(ValidationError):
        GatewaySettings(_env_file=None, CHAT_API_BASES=bad)


def test_plan_puts_the_least_busy_healthy_backend_first() -> None:
    chat = [Deployment(CHAT, f"http://c{i}/v1", CHAT) for i in range(3)]
    code = Deployment(CODE, "http://k/v1", CODE)
    router = Router({CHAT: chat[0], CODE: code}, Cooldowns(10), {CHAT: chat[1:]})
    assert [d.api_base for d, _ in router.plan(CHAT)] == ["http://c0/v1", "http://c1/v1", "http://c2/v1", "http://k/v1"]
    router.load.acquire("http://c0/v1")
    router.load.queue_depth["http://c1/v1"] = 2
    assert [d.api_base for d, _ in router.plan(CHAT)] == ["http://c2/v1", "http://c0/v1", "http://c1/v1", "http://k/v1"]
    router.cooldowns.mark_failed("http://c2/v1")
    plan = [(d.api_base, cooling) for d, cooling in router.plan(CHAT)]
    assert plan == [("http://c0/v1", False), ("http://c1/v1", False), ("http://k/v1", False), ("http://c2/v1", True)]
    router.load.release("http://c0/v1")
    assert router.load.of("http://c0/v1") == 0


async def test_concurrent_slow_requests_spread_over_two_backends(pair: tuple[FakeBackend, FakeBackend],
                                                                 tmp_path) -> None:
    a, b = pair
    a.behaviour.delay_s = b.behaviour.delay_s = 1.0
    settings = gateway_settings(a.api_base, a.api_base, tmp_path, CHAT_API_BASES=b.api_base,
                                GATEWAY_BACKEND_POLL_SECONDS=0)
    async with gateway_client(settings) as client:
        responses = await asyncio.gather(*(client.post("/v1/chat/completions", json=HI) for _ in range(6)))
    names = [answered_by(r) for r in responses]
    assert {r.headers["x-ai-suite-model"] for r in responses} == {CHAT}
    assert names.count("a") >= 2 and names.count("b") >= 2, names
    assert len(a.behaviour.seen) + len(b.behaviour.seen) == 6


async def test_streams_count_as_busy_until_they_end(pair: tuple[FakeBackend, FakeBackend], tmp_path) -> None:
    a, b = pair
    a.behaviour.chunk_delay_s = b.behaviour.chunk_delay_s = 0.3
    settings = gateway_settings(a.api_base, a.api_base, tmp_path, CHAT_API_BASES=b.api_base,
                                GATEWAY_BACKEND_POLL_SECONDS=0)
    async with gateway_client(settings) as client:
        responses = await asyncio.gather(
            *(client.post("/v1/chat/completions", json={**HI, "stream": True}) for _ in range(4)))
    assert all(r.status_code == 200 and "[DONE]" in r.text for r in responses)
    assert len(a.behaviour.seen) == len(b.behaviour.seen) == 2


async def test_reported_queue_depth_steers_requests_away(pair: tuple[FakeBackend, FakeBackend], tmp_path) -> None:
    a, b = pair
    a.behaviour.queue_depth = 5
    b.behaviour.queue_depth = 0
    settings = gateway_settings(a.api_base, a.api_base, tmp_path, CHAT_API_BASES=b.api_base,
                                GATEWAY_BACKEND_POLL_SECONDS=0.05)
    app = create_app(settings)
    async with LifespanManager(app) as manager:
        router = app.state.gateway.router
        for _ in range(200):
            if router.load.queue_depth.get(a.api_base) == 5:
                break
            await asyncio.sleep(0.05)
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway", timeout=30) as client:
            names = [answered_by(await client.post("/v1/chat/completions", json=HI)) for _ in range(3)]
    assert names == ["b", "b", "b"]


async def test_a_down_backend_fails_over_to_the_models_other_backend(pair: tuple[FakeBackend, FakeBackend],
                                                                     tmp_path) -> None:
    a, b = pair
    code = FakeBackend("code").start()
    try:
        a.behaviour.status = 500
        down = f"http://127.0.0.1:{free_port()}/v1"
        settings = gateway_settings(a.api_base, code.api_base, tmp_path, CHAT_API_BASES=f"{down},{b.api_base}",
                                    GATEWAY_COOLDOWN_SECONDS=60, GATEWAY_BACKEND_POLL_SECONDS=0)
        async with gateway_client(settings) as client:
            first = await client.post("/v1/chat/completions", json=HI)
            assert answered_by(first) == "b"
            assert first.headers["x-ai-suite-model"] == CHAT  # another chat backend, not the code fallback
            tried_a = len(a.behaviour.seen)
            # Both failed backends now cool down and are skipped while a healthy one is left.
            assert [answered_by(await client.post("/v1/chat/completions", json=HI)) for _ in range(3)] == ["b"] * 3
            assert len(a.behaviour.seen) == tried_a
            b.behaviour.status = 503
            last = await client.post("/v1/chat/completions", json=HI)
            assert answered_by(last) == "code"
            readiness = (await client.get("/health/readiness")).json()
        assert code.behaviour.seen
        assert set(readiness["backends"][CHAT]) == {a.api_base, down, b.api_base}
        assert readiness["backends"][CHAT][b.api_base] == "ok"
        assert readiness["dependencies"][CHAT] == "ok"  # a model is ready while any of its backends is
    finally:
        code.stop()


async def test_each_backend_gets_its_own_key(pair: tuple[FakeBackend, FakeBackend], tmp_path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = pair
    monkeypatch.setenv("REMOTE_GPU_KEY", "remote-secret")
    a.behaviour.status = 503
    settings = gateway_settings(a.api_base, a.api_base, tmp_path, BACKEND_API_KEY="local-secret",
                                CHAT_API_BASES=f"{b.api_base}|model=remote-model|key_env=REMOTE_GPU_KEY",
                                GATEWAY_BACKEND_POLL_SECONDS=0)
    async with gateway_client(settings) as client:
        response = await client.post("/v1/chat/completions", json=HI)
    assert response.json()["choices"][0]["message"]["content"] == "b:remote-model"
    assert a.behaviour.seen_headers[0]["authorization"] == "Bearer local-secret"
    assert b.behaviour.seen_headers[0]["authorization"] == "Bearer remote-secret"


def test_litellm_config_puts_extra_backends_in_the_models_group(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = GatewaySettings(_env_file=None, CHAT_API_BASE="http://a/v1",
                               CHAT_API_BASES="http://gpu1:8000/v1|model=qwen|key_env=GPU1_KEY")
    config = build_litellm_config(settings)
    chat = [e["litellm_params"] for e in config["model_list"] if e["model_name"] == CHAT]
    assert [(p["api_base"], p["model"], p["api_key"]) for p in chat] == [
        ("http://a/v1", "openai/chat-7b", "none"), ("http://gpu1:8000/v1", "openai/qwen", "os.environ/GPU1_KEY")]
    assert config["router_settings"]["routing_strategy"] == "least-busy"


def test_a_backend_key_may_come_from_the_env_file(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".env").write_text("GPU9_KEY=from-file\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("GPU9_KEY", raising=False)
    settings = GatewaySettings(_env_file=None, CHAT_API_BASES="http://gpu9:8000/v1|key_env=GPU9_KEY")
    assert settings.extra_backends("chat")[0].api_key == "from-file"
    monkeypatch.setenv("GPU9_KEY", "from-environment")
    assert settings.extra_backends("chat")[0].api_key == "from-environment"


async def test_in_flight_counts_return_to_zero(pair: tuple[FakeBackend, FakeBackend], tmp_path) -> None:
    a, b = pair
    b.behaviour.break_after = 1  # a stream that breaks after its first chunk
    a.behaviour.delay_s = 0.2
    settings = gateway_settings(a.api_base, a.api_base, tmp_path, CHAT_API_BASES=b.api_base,
                                GATEWAY_BACKEND_POLL_SECONDS=0)
    app = create_app(settings)
    async with LifespanManager(app) as manager:
        load = app.state.gateway.router.load
        transport = httpx.ASGITransport(app=manager.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway", timeout=30) as client:
            bodies = [HI, {**HI, "stream": True}, {**HI, "stream": True}, {**HI, "model": "nope"}]
            responses = await asyncio.gather(*(client.post("/v1/chat/completions", json=body) for body in bodies))
            assert [r.status_code for r in responses] == [200, 200, 200, 404]
            assert "upstream_stream_broken" in "".join(r.text for r in responses[1:3])
            assert load.in_flight == {}
