"""Schemathesis over the gateway's OpenAPI, on a real port in front of a fake model: no input gives a 5xx."""

from __future__ import annotations

from pathlib import Path

from tests.support.fake_openai import FakeBackend
from tests.support.fuzz import fuzz
from tests.support.gateway import gateway_on_port, gateway_settings

OPERATIONS = {"POST /v1/chat/completions", "POST /v1/completions", "POST /v1/embeddings", "GET /v1/models",
              "GET /v1/status", "GET /health", "GET /health/readiness", "GET /v1/conversations",
              "POST /v1/conversations", "GET /v1/conversations/{conversation_id}",
              "POST /v1/conversations/{conversation_id}", "DELETE /v1/conversations/{conversation_id}",
              "GET /v1/conversations/{conversation_id}/items", "POST /v1/conversations/{conversation_id}/items",
              "GET /v1/conversations/{conversation_id}/items/{item_id}",
              "DELETE /v1/conversations/{conversation_id}/items/{item_id}"}
# the same handlers under the spelling without /v1; fuzzing one of the two is enough
UNPREFIXED = {name.replace(" /v1/", " /", 1) for name in OPERATIONS if " /v1/" in name and "status" not in name}


def test_no_generated_request_gets_a_5xx(tmp_path: Path) -> None:
    backend = FakeBackend("chat").start()
    try:
        with gateway_on_port(gateway_settings(backend.api_base, backend.api_base, tmp_path)) as url:
            statuses = fuzz(url, OPERATIONS | UNPREFIXED, examples=10, skip=UNPREFIXED, negative=True)
    finally:
        backend.stop()
    # the documented bodies reach the backend, and the broken ones get the client's error
    assert 200 in statuses and 400 in statuses and 404 in statuses
    assert len(backend.behaviour.seen) >= 10
