"""The inference service in process with the real bundled model: health, models, completions, errors."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from asgi_lifespan import LifespanManager

from services.common.models import ModelMissing
from services.inference.app import create_app
from services.inference.engine import ModelEngine, split_at_stop
from services.inference.settings import InferenceSettings
from tests.support.asgi import in_process, wait_ready
from tests.support.metrics import metric

ROOT = Path(__file__).resolve().parents[2]
HELLO = [{"role": "user", "content": "Say hello in one short sentence."}]


def make_settings(gguf_path: Path, **env: object) -> InferenceSettings:
    """The bundled model with 1024-token slots (small KV caches keep the tests light), unless `env` says else."""
    env = {"N_CTX": 1024, **env}
    return InferenceSettings(MODELS_DIR=gguf_path.parent, MODEL_FILE=gguf_path.name, MODEL_ALIAS="chat-7b,code-7b",
                             **env)


@asynccontextmanager
async def running(settings: InferenceSettings, **kwargs: object) -> AsyncIterator[httpx.AsyncClient]:
    async with in_process(create_app(settings, **kwargs), "http://inference", timeout=120) as client:  # type: ignore[arg-type]
        yield client


@pytest.fixture
async def client(gguf_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with running(make_settings(gguf_path)) as client:
        await wait_ready(client)
        yield client


async def warm_prompt_cache(client: httpx.AsyncClient, path: str, request: dict) -> None:
    """Run a prompt once so later runs take the same (cached-prefix) path.

    llama.cpp re-evaluates only the last prompt token on a cache hit, and that batch shape can tip a
    greedy choice the other way than a full evaluation does; comparisons must not mix the two.
    """
    response = await client.post(path, json={**request, "stream": False})
    assert response.status_code == 200, response.text


def sse_payloads(body: str) -> list[str]:
    events = [block for block in body.split("\n\n") if block]
    assert all(block.startswith("data: ") for block in events), body
    return [block[len("data: "):] for block in events]


async def test_health_is_503_while_loading_then_names_the_model(gguf_path: Path) -> None:
    gate = threading.Event()

    def gated_load(settings: InferenceSettings) -> ModelEngine:
        gate.wait(60)
        return ModelEngine.load(settings)

    async with running(make_settings(gguf_path), loader=gated_load) as client:
        try:
            loading = await client.get("/health")
            assert loading.status_code == 503
            assert loading.headers["Retry-After"]
            assert loading.json()["status"] == "loading"
            assert loading.json()["dependencies"] == {"model": "loading"}
            early = await client.post("/v1/chat/completions", json={"messages": HELLO, "max_tokens": 2})
            assert early.status_code == 503
            assert early.json()["error"]["code"] == "model_loading"
        finally:
            gate.set()
        ready = (await wait_ready(client)).json()
    assert ready["status"] == "ok"
    assert ready["model"] == gguf_path.name
    assert ready["aliases"] == ["chat-7b", "code-7b"]
    assert ready["n_ctx"] == 1024


async def test_missing_model_fails_start_with_fetch_hint(tmp_path: Path) -> None:
    app = create_app(InferenceSettings(MODELS_DIR=tmp_path, MODEL_FILE="absent.gguf"))
    with pytest.raises(ModelMissing) as caught:
        async with LifespanManager(app):
            pass
    message = str(caught.value)
    assert "absent.gguf" in message and str(tmp_path) in message and "ai-suite models fetch" in message


def test_module_entry_point_exits_with_fetch_hint(tmp_path: Path) -> None:
    env = {"MODELS_DIR": str(tmp_path), "MODEL_FILE": "absent.gguf", "INFERENCE_PORT": "0", "PATH": "/usr/bin:/bin"}
    result = subprocess.run([sys.executable, "-m", "services.inference"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "absent.gguf" in result.stderr and "ai-suite models fetch" in result.stderr
    assert "Traceback" not in result.stderr


async def test_models_lists_every_alias(client: httpx.AsyncClient) -> None:
    body = (await client.get("/v1/models")).json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["chat-7b", "code-7b"]
    assert all(m["object"] == "model" for m in body["data"])


async def test_chat_completion_returns_real_tokens_and_usage(client: httpx.AsyncClient) -> None:
    request = {"model": "anything", "messages": HELLO, "max_tokens": 12, "temperature": 0}
    first = await client.post("/v1/chat/completions", json=request)
    assert first.status_code == 200, first.text
    body = first.json()
    assert body["object"] == "chat.completion" and body["model"] == "anything"
    choice = body["choices"][0]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"].strip()
    assert choice["finish_reason"] in ("stop", "length")
    usage = body["usage"]
    assert usage["prompt_tokens"] > len("Say hello in one short sentence.".split())  # template tokens included
    assert 1 <= usage["completion_tokens"] <= 12
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    metrics = (await client.get("/metrics")).text
    assert metric(metrics, "gen_ai_server_generation_tokens_total") == usage["completion_tokens"]
    assert metric(metrics, "gen_ai_server_prompt_tokens_total") == usage["prompt_tokens"]
    decoded = 1 if usage["completion_tokens"] > 1 else 0  # a time per token needs a token after the first
    assert metric(metrics, "gen_ai_server_time_per_output_token_seconds_count") == decoded
    assert metric(metrics, "gen_ai_server_requests_waiting") == 0


async def test_chat_stream_sends_role_deltas_usage_and_done(client: httpx.AsyncClient) -> None:
    request = {"messages": HELLO, "max_tokens": 8, "temperature": 0, "stream": True,
               "stream_options": {"include_usage": True}}
    await warm_prompt_cache(client, "/v1/chat/completions", request)
    response = await client.post("/v1/chat/completions", json=request)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    payloads = sse_payloads(response.text)
    assert payloads[-1] == "[DONE]"
    chunks = [json.loads(p) for p in payloads[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks if c["choices"])
    assert text.strip()
    assert chunks[-2]["choices"][0]["finish_reason"] in ("stop", "length")
    assert chunks[-1]["choices"] == [] and 1 <= chunks[-1]["usage"]["completion_tokens"] <= 8

    plain = (await client.post("/v1/chat/completions", json={**request, "stream": False})).json()
    assert plain["choices"][0]["message"]["content"] == text


async def test_completion_and_stop_sequence(client: httpx.AsyncClient) -> None:
    request = {"prompt": "The three primary colors are", "max_tokens": 12, "temperature": 0}
    await warm_prompt_cache(client, "/v1/completions", request)
    full = (await client.post("/v1/completions", json=request)).json()
    assert full["object"] == "text_completion"
    text = full["choices"][0]["text"]
    words = text.split()
    assert len(words) >= 3, text
    stop = words[2]
    cut = (await client.post("/v1/completions", json={**request, "stop": [stop]})).json()
    assert cut["choices"][0]["text"] == text[: text.index(stop)]
    assert cut["choices"][0]["finish_reason"] == "stop"

    streamed = await client.post("/v1/completions", json={**request, "stream": True})
    payloads = sse_payloads(streamed.text)
    assert payloads[-1] == "[DONE]"
    assert "".join(json.loads(p)["choices"][0]["text"] for p in payloads[:-1]) == text


@pytest.mark.parametrize(
    ("body", "param", "fragment"),
    [
        ({"messages": []}, "messages", "at least 1"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, "messages.0.role", "system"),
        ({"messages": HELLO, "max_tokens": -5}, "max_tokens", "greater than or equal to 1"),
        ({"messages": HELLO, "max_tokens": 0}, "max_tokens", "greater than or equal to 1"),
        ({"messages": HELLO, "max_tokens": 10**9}, "max_tokens", "context window of 1024"),
        ({"messages": HELLO, "temperature": 3}, "temperature", "less than or equal to 2"),
        ({"messages": HELLO, "top_p": 1.5}, "top_p", "less than or equal to 1"),
        ({"messages": HELLO, "stop": [""]}, "stop", "must not be empty"),
        ({"messages": HELLO, "n": 2}, "n", "less than or equal to 1"),
        ({"messages": "hello"}, "messages", "valid list"),
    ],
)
async def test_bad_chat_input_is_a_400_in_openai_shape(
    client: httpx.AsyncClient, body: dict, param: str, fragment: str
) -> None:
    response = await client.post("/v1/chat/completions", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert fragment in error["message"]
    assert metric((await client.get("/metrics")).text, "gen_ai_server_generation_tokens_total") == 0


async def test_invalid_json_and_oversized_prompt_are_400(client: httpx.AsyncClient) -> None:
    broken = await client.post("/v1/chat/completions", content=b'{"messages": [',
                               headers={"content-type": "application/json"})
    assert broken.status_code == 400
    assert broken.json()["error"]["message"] == "request body is not valid JSON"
    huge = await client.post("/v1/completions", json={"prompt": "word " * 3000, "max_tokens": 4})
    assert huge.status_code == 400
    assert huge.json()["error"]["code"] == "context_length_exceeded"


async def test_a_prompt_of_no_tokens_is_a_400_not_a_hang(client: httpx.AsyncClient) -> None:
    # the bundled model adds no BOS token, so an empty prompt tokenizes to nothing at all
    for stream in (False, True):
        response = await asyncio.wait_for(client.post("/v1/completions", json={"prompt": "", "stream": stream}), 30)
        assert response.status_code == 400, response.text
        assert response.json()["error"] == {"message": "the prompt is empty: it must hold at least one token",
                                            "type": "invalid_request_error", "code": "empty_prompt",
                                            "param": "prompt"}
    assert (await client.post("/v1/completions", json={"prompt": "x", "max_tokens": 1})).status_code == 200


def test_split_at_stop_holds_back_partial_matches() -> None:
    assert split_at_stop("hello wor", ("world",)) == ("hello ", "wor", False)
    assert split_at_stop("hello world!", ("world",)) == ("hello ", "", True)
    assert split_at_stop("abc", ()) == ("abc", "", False)
    assert split_at_stop("x</s", ("</s>", "##")) == ("x", "</s", False)


async def test_unloadable_model_reports_failure_in_health(tmp_path: Path) -> None:
    (tmp_path / "broken.gguf").write_bytes(b"GGUF" + b"\0" * 64)
    async with running(InferenceSettings(MODELS_DIR=tmp_path, MODEL_FILE="broken.gguf")) as client:
        deadline = time.monotonic() + 60
        while (health := (await client.get("/health")).json())["dependencies"]["model"] == "loading":
            assert time.monotonic() < deadline
            await asyncio.sleep(0.02)
        chat = await client.post("/v1/chat/completions", json={"messages": HELLO})
    assert health["status"] == "unavailable"
    assert health["dependencies"]["model"].startswith("failed: ")
    assert chat.status_code == 503 and chat.json()["error"]["code"] == "model_load_failed"
