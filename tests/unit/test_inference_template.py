"""Chat templates render in Jinja's immutable sandbox, on the service's own code path."""

from __future__ import annotations

from pathlib import Path

import pytest
from jinja2.sandbox import ImmutableSandboxedEnvironment

from services.inference.engine import ModelEngine, sandboxed_formatter
from tests.unit.test_inference_api import HELLO, make_settings, metric, running, wait_ready

ESCAPES = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ cycler.__init__.__globals__.os.system('touch MARKER') }}",
    "{% for m in messages %}{{ m.content }}{% endfor %}{{ messages.append({'role': 'system'}) }}",
]


@pytest.mark.parametrize("template", ESCAPES)
async def test_malicious_template_is_blocked_and_nothing_runs(
    gguf_path: Path, tmp_path: Path, template: str
) -> None:
    marker = tmp_path / "pwned"
    template_file = tmp_path / "template.jinja"
    template_file.write_text(template.replace("MARKER", str(marker)), encoding="utf-8")
    async with running(make_settings(gguf_path, CHAT_TEMPLATE_FILE=template_file)) as client:
        await wait_ready(client)
        response = await client.post("/v1/chat/completions", json={"messages": HELLO, "max_tokens": 4})
        metrics = (await client.get("/metrics")).text
    assert response.status_code == 500
    error = response.json()["error"]
    assert error["code"] == "chat_template_error"
    assert "unsafe" in error["message"]
    assert "<class" not in response.text  # the subclass list never reached the client
    assert not marker.exists()
    assert metric(metrics, "gen_ai_server_prompt_tokens_total") == 0


async def test_gguf_template_renders_the_conversation(gguf_path: Path) -> None:
    engine = ModelEngine.load(make_settings(gguf_path))
    try:
        tokens, stops = engine.chat_prompt([{"role": "system", "content": "Be brief."},
                                            {"role": "user", "content": "Hi there"}])
        prompt = engine.llm.detokenize(tokens, special=True).decode()
    finally:
        engine.close()
    assert prompt == "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi there<|im_end|>\n" \
                     "<|im_start|>assistant\n"
    assert stops == ("<|im_end|>",)


def test_formatter_environment_is_the_immutable_sandbox() -> None:
    formatter = sandboxed_formatter("{{ messages[0].content }}", "<s>", "</s>")
    assert isinstance(formatter._environment.environment, ImmutableSandboxedEnvironment)
    assert formatter(messages=[{"role": "user", "content": "ok"}]).prompt == "ok"


async def test_template_raise_exception_is_a_client_error(gguf_path: Path, tmp_path: Path) -> None:
    template_file = tmp_path / "strict.jinja"
    template_file.write_text("{% if messages[0].role != 'user' %}{{ raise_exception('first message must be "
                             "from the user') }}{% endif %}{{ messages[0].content }}", encoding="utf-8")
    async with running(make_settings(gguf_path, CHAT_TEMPLATE_FILE=template_file)) as client:
        await wait_ready(client)
        response = await client.post("/v1/chat/completions",
                                     json={"messages": [{"role": "assistant", "content": "hi"}], "max_tokens": 2})
    assert response.status_code == 400
    assert "first message must be from the user" in response.json()["error"]["message"]


async def test_no_template_means_a_clear_error(gguf_path: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty.jinja"
    empty.write_text("", encoding="utf-8")
    async with running(make_settings(gguf_path, CHAT_TEMPLATE_FILE=empty)) as client:
        await wait_ready(client)
        chat = await client.post("/v1/chat/completions", json={"messages": HELLO, "max_tokens": 2})
        text = await client.post("/v1/completions", json={"prompt": "Hi", "max_tokens": 2})
    assert chat.json()["error"]["code"] == "chat_template_error"
    assert text.status_code == 200
