"""`ai-suite up p1` for real: the bundled model behind the gateway, on free ports, then a clean `down`."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import psutil
import pytest

from services.stack.runner import Stack
from tests.support.procs import free_port

pytestmark = pytest.mark.integration


def post_json(url: str, body: dict) -> dict:
    request = urllib.request.Request(url, data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def test_phase_one_up_status_chat_down(tmp_path: Path, models_dir: Path) -> None:
    env = {"INFERENCE_PORT": str(free_port()), "API_GATEWAY_PORT": str(free_port()),
           "DATA_DIR": str(tmp_path / "data"), "MODELS_DIR": str(models_dir)}
    stack = Stack("p1", env=env)
    pids: list[int] = []
    try:
        assert stack.up() == ["inference-chat", "api-gateway"]
        rows = {row.name: row for row in stack.status()}
        assert {(r.state, r.health) for r in rows.values()} == {("running", "healthy")}
        assert rows["api-gateway"].ports == [int(env["API_GATEWAY_PORT"])]
        for row in rows.values():
            assert row.pid is not None
            proc = psutil.Process(row.pid)
            pids += [row.pid, *(c.pid for c in proc.children(recursive=True))]

        base = stack.urls()["OpenAI base URL"]
        assert base == f"http://127.0.0.1:{env['API_GATEWAY_PORT']}/v1"
        answer = post_json(f"{base}/chat/completions", {
            "model": "chat-7b", "max_tokens": 8, "messages": [{"role": "user", "content": "Say hello."}],
        })
        assert answer["choices"][0]["message"]["content"].strip()
        assert answer["usage"]["completion_tokens"] > 0

        assert stack.up() == []  # already running: left alone
        for name in ("inference-chat", "api-gateway"):
            assert (tmp_path / "data" / "logs" / f"{name}.log").stat().st_size > 0
    finally:
        stopped = stack.down()
    assert stopped == ["api-gateway", "inference-chat"]
    for pid in pids:
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert [row.state for row in stack.status()] == ["stopped", "stopped"]
