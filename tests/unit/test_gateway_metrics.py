"""The gateway's own metrics, driven by requests to real fake backends and read from /metrics."""

from __future__ import annotations

import httpx

from services.gateway.metrics import AUTO_SIGNALS
from tests.support.fake_openai import Behaviour, FakeBackend
from tests.support.metrics import documented_names, exposed_names, metric, sample
from tests.unit import test_gateway_app as app_tests
from tests.unit.test_gateway_app import HI, gateway, make_settings

# the same backends and gateway as the app's tests
backends, chat_b, code_b, gw = app_tests.backends, app_tests.chat_b, app_tests.code_b, app_tests.gw

COOLING = "gateway_backend_in_cooldown"


async def page_of(client: httpx.AsyncClient) -> str:
    return (await client.get("/metrics")).text


async def test_requests_are_counted_by_model_route_and_status(gw: httpx.AsyncClient) -> None:
    assert (await gw.post("/v1/chat/completions", json={"model": "chat-7b", "messages": HI})).status_code == 200
    assert (await gw.post("/completions", json={"model": "gpt-3.5-turbo", "prompt": "hi"})).status_code == 200
    assert (await gw.post("/v1/chat/completions", json={"model": "gpt-9", "messages": HI})).status_code == 404
    assert (await gw.post("/v1/chat/completions", content=b"{not json")).status_code == 400
    assert (await gw.post("/v1/embeddings", json={"model": "embedding", "input": "x"})).status_code == 404
    page = await page_of(gw)
    requests = "gateway_requests_total"
    assert sample(page, requests, model="chat-7b", route="chat", status="200") == 1
    assert sample(page, requests, model="gpt-3.5-turbo", route="completion", status="200") == 1
    # a name the gateway does not serve is "unknown", so clients cannot grow the label set
    assert sample(page, requests, model="unknown", route="chat", status="404") == 1
    assert sample(page, requests, model="unknown", route="chat", status="400") == 1
    assert sample(page, requests, model="unknown", route="embeddings", status="404") == 1
    assert "gpt-9" not in page
    assert exposed_names(page) == documented_names("Gateway")


async def test_auto_choices_are_counted_by_kind_and_signal(gw: httpx.AsyncClient) -> None:
    page = await page_of(gw)
    # every signal has its series from the start
    for signal in AUTO_SIGNALS:
        choice = "chat" if signal.startswith("no_") else "code"
        assert sample(page, "gateway_auto_choices_total", choice=choice, reason=signal) == 0
    prompts = ["Fix the bug in this Python function", "What a lovely morning", "see main.rs please"]
    for prompt in prompts:
        body = {"model": "auto", "messages": [{"role": "user", "content": prompt}]}
        assert (await gw.post("/v1/chat/completions", json=body)).status_code == 200
    page = await page_of(gw)
    assert sample(page, "gateway_auto_choices_total", choice="code", reason="keyword") == 1
    assert sample(page, "gateway_auto_choices_total", choice="chat", reason="no_signal") == 1
    assert sample(page, "gateway_auto_choices_total", choice="code", reason="file_name") == 1
    assert sample(page, "gateway_requests_total", model="auto", route="chat", status="200") == 3


async def test_a_failover_counts_the_failed_backend_and_its_cooldown(
    gw: httpx.AsyncClient, chat_b: Behaviour, code_b: Behaviour
) -> None:
    page = await page_of(gw)
    for backend in ("chat-7b", "code-7b"):
        assert sample(page, "gateway_failovers_total", backend=backend) == 0
        assert sample(page, COOLING, backend=backend) == 0
    chat_b.status = 500
    for _ in range(2):
        response = await gw.post("/v1/chat/completions", json={"model": "chat-7b", "messages": HI})
        assert response.headers["x-ai-suite-model"] == "code-7b"
    page = await page_of(gw)
    assert sample(page, "gateway_failovers_total", backend="chat-7b") == 2
    assert sample(page, "gateway_failovers_total", backend="code-7b") == 0
    # one cooldown, entered on the first request's first failure; the second request went to code-7b first
    assert sample(page, "gateway_backend_cooldowns_total", backend="chat-7b") == 1
    assert sample(page, COOLING, backend="chat-7b") == 1 and sample(page, COOLING, backend="code-7b") == 0
    assert sample(page, "gateway_upstream_attempts_total", deployment="chat-7b", outcome="failed") == 2
    assert sample(page, "gateway_upstream_duration_seconds_count", backend="code-7b") == 2


async def test_upstream_latency_is_the_backends_time(
    backends: dict[str, FakeBackend], chat_b: Behaviour, code_b: Behaviour
) -> None:
    chat_b.delay_s = 0.3
    settings = make_settings(backends["chat"].api_base, backends["code"].api_base)
    async with gateway(settings) as client:
        for stream in (False, True):
            body = {"model": "chat-7b", "messages": HI, "stream": stream}
            assert (await client.post("/v1/chat/completions", json=body)).status_code == 200
        page = await page_of(client)
    assert sample(page, "gateway_upstream_duration_seconds_count", backend="chat-7b") == 2
    assert sample(page, "gateway_upstream_duration_seconds_sum", backend="chat-7b") >= 2 * 0.3
    assert sample(page, "gateway_upstream_duration_seconds_bucket", backend="chat-7b", le="0.25") == 0
    assert metric(page, "gateway_unavailable_total") == 0
