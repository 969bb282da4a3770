"""Schemathesis over the inference OpenAPI, on a real port with the bundled model: no input gives a 5xx."""

from __future__ import annotations

from pathlib import Path

from services.inference.app import create_app
from services.inference.settings import InferenceSettings
from tests.support.fake_openai import ThreadedServer
from tests.support.fuzz import fuzz
from tests.support.procs import wait_healthy


def test_no_generated_request_gets_a_5xx(gguf_path: Path) -> None:
    # A 128-token context bounds every generated answer (about a second here); long prompts get a 400 instead.
    settings = InferenceSettings(MODELS_DIR=gguf_path.parent, MODEL_FILE=gguf_path.name, MODEL_ALIAS="chat-7b",
                                 N_CTX=128, N_PARALLEL=1, N_THREADS=1)
    server = ThreadedServer(lambda: create_app(settings), lifespan="on").start()
    url = f"http://127.0.0.1:{server.port}"
    try:
        wait_healthy(f"{url}/health", 60)
        statuses = fuzz(url, {"GET /health", "GET /v1/models", "POST /v1/chat/completions", "POST /v1/completions"},
                        examples=8, negative=True)
    finally:
        server.stop()
    # generated requests were answered by the model, and broken ones refused
    assert 200 in statuses and 400 in statuses
