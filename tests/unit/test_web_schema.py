"""Schemathesis over the chat app's web service, on a real port in front of a recording upstream: no 5xx.

The service publishes no /openapi.json (it serves the app's pages at every other path), so the schema is the one
FastAPI builds from its routes.
"""

from __future__ import annotations

from pathlib import Path

from services.web.app import create_app
from tests.support.fake_openai import ThreadedServer
from tests.support.fuzz import fuzz
from tests.support.web import Recorder, upstream_app, web_settings

ROOT = Path(__file__).resolve().parents[2]
OPERATIONS = {"GET /health", "GET /v1/{path}", "POST /v1/{path}", "DELETE /v1/{path}", "GET /rag/{path}",
              "POST /rag/{path}", "GET /mcp/approvals", "POST /mcp/approvals/{request_id}/{decision}",
              "GET /api/alerts", "GET /api/charts", "GET /c/{conversation_id}", "GET /{relative}"}


def test_no_generated_request_gets_a_5xx() -> None:
    recorder = Recorder()
    upstream = ThreadedServer(lambda: upstream_app(recorder)).start()
    # no Prometheus at this address: the charts answer that none is there, which is not an error
    settings = web_settings(ROOT / "desktop-app", f"http://127.0.0.1:{upstream.port}",
                            WEB_PROMETHEUS_URL="http://127.0.0.1:9")
    app = create_app(settings)
    web = ThreadedServer(lambda: app, lifespan="on").start()
    try:
        statuses = fuzz(f"http://127.0.0.1:{web.port}", OPERATIONS, examples=10, schema=app.openapi(),
                        negative=True)
    finally:
        web.stop()
        upstream.stop()
    # proxied calls reached the upstream, and refused ones (unknown files, RAG routes the app lacks) were 4xx
    assert recorder.requests and 200 in statuses and 404 in statuses and 400 in statuses
