"""`make load-check`'s comparison catches a 50 ms slowdown of one route, and passes the same route without it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.load.check import compare, measure, summarise
from tests.support.procs import Service, free_port, python_module

pytestmark = pytest.mark.integration

ROUTE = "GET /v1/models"
# a few seconds of two quick users on one cheap route
SHORT = {"LOAD_SCENARIOS": "models", "LOAD_SECONDS": "4", "LOAD_USERS": "2", "LOAD_WAIT_S": "0.02,0.05"}


def gateway(work: Path, delay_ms: int) -> Service:
    port = free_port()
    env = {"API_GATEWAY_PORT": str(port), "DATA_DIR": str(work), "LOG_JSON": "false",
           "CHAT_API_BASE": f"http://127.0.0.1:{free_port()}/v1", "CODE_API_BASE": f"http://127.0.0.1:{free_port()}/v1",
           "DEBUG_ROUTE_DELAY_MS": str(delay_ms)}
    return Service(f"gateway-{delay_ms}", python_module("services.gateway"), env,
                   f"http://127.0.0.1:{port}/health/liveliness", work / f"gateway-{delay_ms}.log")


@pytest.fixture
def gateways(tmp_path: Path) -> Iterator[dict[int, str]]:
    started = {delay: gateway(tmp_path, delay).start() for delay in (0, 50)}
    try:
        yield {delay: service.health_url.removesuffix("/health/liveliness") for delay, service in started.items()}
    finally:
        for service in started.values():
            service.stop()


def run(url: str) -> dict:
    return measure({**os.environ, **SHORT, "LOAD_GATEWAY_URL": url, "LOAD_RAG_URL": "", "LOAD_MCP_URL": ""})


def test_load_check_flags_an_injected_slowdown_and_passes_without_it(gateways: dict[int, str]) -> None:
    baseline = summarise([run(gateways[0]), run(gateways[0])])
    assert baseline["routes"][ROUTE]["p50"] < 50, baseline  # the route itself is fast: the delay is what shows

    assert compare(baseline, run(gateways[0])) == []
    slowed = compare(baseline, run(gateways[50]))
    assert len(slowed) == 1 and slowed[0].startswith(f"{ROUTE}: p50"), slowed
