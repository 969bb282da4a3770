"""Monitoring on the real native p3 stack with --monitoring: targets, every query, ServiceDown, request ids.

One stack for the module, supervised as `ai-suite up` leaves it. The SIGSTOP test stops inference-code, whose
health nothing else checks; a test overlay lengthens its healthcheck (retries 30), so the supervisor does not
kill it while the test waits for the alert and its resolution (docs/adr/0009-monitoring.md).
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import httpx2
import pytest
import yaml
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client

from services.stack.monitoring import scrape_targets
from services.stack.runner import ROOT, Stack, compose_files
from services.stack.supervisor import Supervisor
from tests.support.monitoring import (
    compose_only,
    dashboard_expressions,
    rule_expressions,
    selectors,
    status_page_expressions,
)
from tests.support.procs import free_port

pytestmark = pytest.mark.integration

PORTS = ("API_GATEWAY_PORT", "INFERENCE_PORT", "INFERENCE_CODE_PORT", "EMBEDDING_PORT", "RAG_PORT", "POSTGRES_PORT",
         "MCP_PORT", "PROMETHEUS_PORT", "ALERTMANAGER_PORT", "NODE_EXPORTER_PORT", "ALERTS_PORT")
HUNG = "inference-code"


@dataclass
class Live:
    stack: Stack
    env: dict[str, str]
    data: Path
    work: Path

    def url(self, variable: str) -> str:
        return f"http://127.0.0.1:{self.env[variable]}"

    def query(self, promql: str) -> list[dict[str, Any]]:
        answer = httpx.get(f"{self.url('PROMETHEUS_PORT')}/api/v1/query", params={"query": promql}, timeout=10,
                           trust_env=False).json()
        assert answer["status"] == "success", (promql, answer)
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result


def until(check: Callable[[], Any], seconds: float, what: str, every: float = 1.0) -> Any:
    """Poll `check` until it returns something truthy; fail with `what` after the deadline."""
    deadline = time.monotonic() + seconds
    while True:
        found = check()
        if found:
            return found
        assert time.monotonic() < deadline, f"not within {seconds:g} s: {what}"
        time.sleep(every)


@pytest.fixture(scope="module")
def live(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    data, work = tmp_path_factory.mktemp("mon-data"), tmp_path_factory.mktemp("mon-work")
    (data / "documents").mkdir()
    (data / "documents" / "phobos.md").write_text("# Phobos\nPhobos is the larger moon of Mars.\n")
    (data / "documents" / "blob.bin").write_bytes(bytes(range(256)) * 16)
    (work / "notes.txt").write_text("monitored\n")
    env = {**{name: str(free_port()) for name in PORTS}, "DATA_DIR": str(data), "MODELS_DIR": str(models_dir),
           "N_THREADS": "1", "EMBEDDING_THREADS": "1", "MCP_ALLOWED_ROOTS": str(work), "RAG_LLM_TIMEOUT": "60"}
    overlay = tmp_path_factory.mktemp("overlay") / "compose.hang-window.yml"
    overlay.write_text(yaml.safe_dump({"services": {HUNG: {"healthcheck": {"retries": 30}}}}))
    stack = Stack.from_file([*compose_files("p3", ROOT, monitoring=True), overlay], env=env, root=ROOT)
    stack.up()
    stop = threading.Event()
    supervising = threading.Thread(target=Supervisor(stack).run, args=(stop,), daemon=True)
    supervising.start()
    try:
        yield Live(stack, env, data, work)
    finally:
        stop.set()
        supervising.join(10)
        stack.down()


def ai_suite(live: Live, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "services.stack", *args], env={**os.environ, **live.env},
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


async def tool_call(live: Live, tool: str, args: dict[str, Any]) -> None:
    key = (live.data / "security" / "owner.key").read_text().strip()
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=60) as http:
        async with streamable_http_client(f"{live.url('MCP_PORT')}/mcp", http_client=http) as (read, write):
            async with ClientSession(read, write) as client:
                await client.initialize()
                result = await client.call_tool(tool, args)
                assert not result.is_error, result.content


def chat(live: Live, request_id: str, model: str = "chat-7b") -> None:
    response = httpx.post(f"{live.url('API_GATEWAY_PORT')}/v1/chat/completions", timeout=60, trust_env=False,
                          headers={"X-Request-ID": request_id},
                          json={"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2})
    assert response.status_code == 200, response.text
    assert response.headers["x-request-id"] == request_id


def rag(live: Live, path: str, body: dict[str, Any], request_id: str | None = None, status: int = 200) -> Any:
    headers = {"X-Request-ID": request_id} if request_id else {}
    response = httpx.post(f"{live.url('RAG_PORT')}{path}", json=body, headers=headers, timeout=120, trust_env=False)
    assert response.status_code == status, response.text
    return response.json()


@pytest.fixture(scope="module")
def traffic(live: Live) -> dict[str, str]:
    """Requests of every kind, twice: a labelled series is born on its first request, and rate() needs a rise."""
    ids = {}
    for round_ in range(2):
        ids["chat"] = f"live-chat-{round_}"
        chat(live, ids["chat"])
        chat(live, f"live-code-{round_}", "code-7b")
        rag(live, "/index", {"collection": "moons"})  # blob.bin is counted as an indexing failure
        rag(live, "/search", {"query": "larger moon of Mars", "collection": "moons"})
        rag(live, "/search", {"query": "zzyzx qwxv plmbrt", "collection": "moons"})  # matches nothing
        ids["rag"] = f"live-rag-{round_}"
        # a new question each round: a repeated one would take its vector from RAG's query cache, not embedding
        question = ("Which moon of Mars is larger?", "Of the two moons of Mars, which one is bigger?")[round_]
        rag(live, "/query", {"query": question, "collection": "moons"}, ids["rag"])
        httpx.post(f"{live.url('API_GATEWAY_PORT')}/v1/embeddings", json={"model": "embedding", "input": ["x"]},
                   timeout=30, trust_env=False).raise_for_status()
        asyncio.run(tool_call(live, "read_file", {"path": str(live.work / "notes.txt")}))
        if round_ == 0:
            scraped_after(live, time.time())  # the new series are in Prometheus before the second round
    return ids


def scraped_after(live: Live, moment: float) -> None:
    """Wait until every target has been scraped since `moment`."""

    def fresh() -> bool:
        found = live.query("min(timestamp(up))")
        return bool(found) and float(found[0]["value"][1]) > moment

    until(fresh, 30, "a scrape of every target")


def test_every_service_target_is_up(live: Live) -> None:
    expected = {target.job for target in scrape_targets(live.stack.doc, native=True)}
    assert expected == {"inference-chat", "inference-code", "api-gateway", "embedding", "rag", "mcp-server",
                        "alerts", "prometheus", "alertmanager", "node-exporter"}

    def all_up() -> bool:
        answer = httpx.get(f"{live.url('PROMETHEUS_PORT')}/api/v1/targets", timeout=10, trust_env=False).json()
        health = {t["labels"]["job"]: t["health"] for t in answer["data"]["activeTargets"]}
        return set(health) == expected and set(health.values()) == {"up"}

    until(all_up, 60, "every target up")


def test_every_dashboard_status_page_and_rule_query_returns_data(live: Live, traffic: dict[str, str]) -> None:
    dashboards = [(where, expr) for where, expr in dashboard_expressions() if not compose_only(expr)]
    assert len(dashboards) > 25
    dashboards += status_page_expressions()
    # a dashboard query must return data as written; rate() needs two scrapes after the traffic
    for where, expr in dashboards:
        until(lambda expr=expr: live.query(expr), 60, f"{where}: {expr}")
    # an alert's condition is empty while all is well, so each selector in it must find series, and each label
    # it filters on must exist on them
    for name, expr in rule_expressions():
        live.query(expr)  # evaluates without error
        for selector in selectors(expr):
            if compose_only(selector.metric):
                continue
            assert live.query(f"count({selector.metric})"), f"{name}: no {selector.metric}"
            for label, _, _ in selector.matchers:
                assert live.query(f"count({selector.with_label(label)})"), f"{name}: {selector.metric} has no {label}"


def test_a_request_id_is_in_the_log_of_every_service_it_passed(live: Live, traffic: dict[str, str]) -> None:
    def logged(service: str, request_id: str) -> bool:
        path = live.data / "logs" / f"{service}.log"
        return any(json.loads(line).get("request_id") == request_id
                   for line in path.read_text().splitlines() if line.startswith("{"))

    for request_id, services in ((traffic["chat"], ("api-gateway", "inference-chat")),
                                 (traffic["rag"], ("rag", "embedding", "api-gateway", "inference-chat"))):
        for service in services:
            until(lambda s=service, r=request_id: logged(s, r), 10, f"{request_id} in {service}.log")
        assert not logged("inference-code", request_id)
    found = ai_suite(live, "logs", "embedding", "--grep", traffic["rag"])
    assert traffic["rag"] in found and '"path": "/embed"' in found


def test_status_shows_figures_from_prometheus_and_no_alert(live: Live, traffic: dict[str, str]) -> None:
    out = ai_suite(live, "status")
    assert "Prometheus, last 5 minutes" in out and "alerts: none active" in out
    row = next(line for line in out.splitlines() if line.startswith("│ rag "))
    assert re.search(r"│ \d+(\.\d)? m?s +│ 0\.0% +│", row), row  # its p95 and its share of 5xx
    # decode speed from gen_ai_server_time_per_output_token_seconds, beside the p95
    chat = next(line for line in out.splitlines() if "inference-chat" in line)
    assert re.search(r"│ [1-9]\d*\.\d +│ \d+(\.\d)? m?s +│", chat), chat


def test_a_hung_service_raises_service_down_then_resolves(live: Live) -> None:
    pid = live.stack.status()[[row.name for row in live.stack.status()].index(HUNG)].pid
    assert pid is not None

    def service_down(state: str = "active") -> list[dict[str, Any]]:
        alerts = httpx.get(f"{live.url('ALERTMANAGER_PORT')}/api/v2/alerts", timeout=10, trust_env=False).json()
        return [a for a in alerts if a["labels"].get("alertname") == "ServiceDown" and a["labels"].get("job") == HUNG
                and a["status"]["state"] == state]

    def received() -> list[dict[str, Any]]:
        answer = httpx.get(f"{live.url('ALERTS_PORT')}/alerts", timeout=10, trust_env=False).json()
        return [a for a in answer["active"] if a["name"] == "ServiceDown" and a["labels"]["job"] == HUNG]

    stopped = time.monotonic()
    os.kill(pid, signal.SIGSTOP)
    try:
        until(service_down, 90, "ServiceDown in Alertmanager")
        assert time.monotonic() - stopped < 90
        until(received, 90 - (time.monotonic() - stopped), "ServiceDown at the alert receiver")
        assert f"ServiceDown {HUNG}" in ai_suite(live, "status")
    finally:
        os.kill(pid, signal.SIGCONT)
    assert live.stack.status()[[row.name for row in live.stack.status()].index(HUNG)].pid == pid  # not restarted
    until(lambda: not service_down() and not received(), 120, "ServiceDown resolved after SIGCONT")
    resolved = httpx.get(f"{live.url('ALERTS_PORT')}/alerts", timeout=10, trust_env=False).json()["resolved"]
    assert any(a["name"] == "ServiceDown" and a["labels"]["job"] == HUNG for a in resolved)
