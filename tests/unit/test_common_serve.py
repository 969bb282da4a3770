"""Serving: an idle keep-alive connection outlives the Retry-After the suite sends, so a client that waits as told
and comes back on the same connection gets an answer, not a reset."""

from __future__ import annotations

import http.client
import time
from pathlib import Path

from services.common.serve import KEEP_ALIVE_S
from tests.support.procs import Service, free_port, python_module

IDLE_S = 6  # past uvicorn's default 5 s, and past the 5 s Retry-After of RAG's gateway_unavailable


def test_a_connection_idle_past_a_retry_after_still_answers(tmp_path: Path) -> None:
    assert KEEP_ALIVE_S > 30  # the longest Retry-After the suite sends
    port = free_port()
    env = {"WEB_PORT": str(port), "DATA_DIR": str(tmp_path), "LOG_JSON": "false", "WEB_GATEWAY_URL": "http://127.0.0.1:9"}
    web = Service("web", python_module("services.web"), env, f"http://127.0.0.1:{port}/health",
                  tmp_path / "web.log").start(60)
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("GET", "/health")
        first = connection.getresponse()
        first.read()
        assert first.status == 200
        time.sleep(IDLE_S)
        connection.request("GET", "/health")  # the same connection, as a pooled client reuses it
        again = connection.getresponse()
        again.read()
        assert again.status == 200
        connection.close()
    finally:
        web.stop()
