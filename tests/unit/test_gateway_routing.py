"""Gateway pieces without HTTP: names and `auto`, cooldown order, validation, LiteLLM config, exposure."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from services.common.errors import BadRequest, ModelNotFound
from services.gateway.__main__ import main
from services.gateway.litellm_config import build_litellm_config
from services.gateway.litellm_engine import litellm_command, litellm_environment
from services.gateway.routing import CHAT, CODE, Cooldowns, Deployment, Router, resolve
from services.gateway.settings import GatewaySettings
from services.gateway.validation import parse_body


def settings(**env: object) -> GatewaySettings:
    return GatewaySettings(_env_file=None, **env)


def chat(text: str) -> dict:
    return {"model": "auto", "messages": [{"role": "user", "content": text}]}


@pytest.mark.parametrize(
    ("requested", "expected"),
    [("chat-7b", CHAT), ("code-7b", CODE), ("gpt-3.5-turbo", CHAT), ("qwen2.5-14b-instruct", CHAT)],
)
def test_names_and_aliases_resolve(requested: str, expected: str) -> None:
    assert resolve(requested, {}).model == expected


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("Write a python function that reverses a list", CODE),
        ("```\nprint(1)\n```", CODE),
        ("이 함수의 버그를 찾아줘", CODE),
        ("What should I cook for dinner tonight?", CHAT),
        ("오늘 날씨 어때?", CHAT),
    ],
)
def test_auto_classifies_the_last_user_message(prompt: str, expected: str) -> None:
    route = resolve("auto", chat(prompt))
    assert route.model == expected
    assert route.reason.startswith("auto: ")


def test_auto_on_a_completions_prompt() -> None:
    assert resolve("auto", {"model": "auto", "prompt": "def add(a, b):"}).model == CODE
    assert resolve("auto", {"model": "auto", "prompt": ["tell me a story"]}).model == CHAT


def test_unknown_model_names_the_valid_ones() -> None:
    with pytest.raises(ModelNotFound) as caught:
        resolve("gpt-4", chat("hi"))
    assert caught.value.code == "model_not_found"
    for name in ("chat-7b", "code-7b", "auto", "gpt-3.5-turbo", "qwen2.5-14b-instruct"):
        assert name in caught.value.message


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_cooldown_moves_a_failed_backend_last_until_it_expires() -> None:
    clock = Clock()
    deployments = {CHAT: Deployment(CHAT, "http://a/v1", CHAT), CODE: Deployment(CODE, "http://b/v1", CODE)}
    router = Router(deployments, Cooldowns(10, clock))
    assert [(d.name, cooling) for d, cooling in router.plan(CHAT)] == [(CHAT, False), (CODE, False)]
    router.cooldowns.mark_failed("http://a/v1")
    assert [(d.name, cooling) for d, cooling in router.plan(CHAT)] == [(CODE, False), (CHAT, True)]
    router.cooldowns.mark_failed("http://b/v1")
    assert [(d.name, cooling) for d, cooling in router.plan(CHAT)] == [(CHAT, True), (CODE, True)]
    clock.now += 10.5
    assert [(d.name, cooling) for d, cooling in router.plan(CHAT)] == [(CHAT, False), (CODE, False)]


def test_plan_rechecks_cooldown_between_deployments_sharing_a_backend() -> None:
    # In p1 both names live on one server: once it fails for chat, code gets one last-resort try only.
    deployments = {CHAT: Deployment(CHAT, "http://same/v1", CHAT), CODE: Deployment(CODE, "http://same/v1", CODE)}
    router = Router(deployments, Cooldowns(10, Clock()))
    plan = router.plan(CHAT)
    assert next(plan) == (deployments[CHAT], False)
    router.cooldowns.mark_failed("http://same/v1")
    assert next(plan) == (deployments[CODE], True)


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        (b"{not json", None),
        (b"\xff\xfe", None),
        (b"[1, 2]", None),
        (b'{"messages": [{"role": "user", "content": "hi"}]}', "model"),
        (b'{"model": "chat-7b"}', "messages"),
        (b'{"model": "chat-7b", "messages": []}', "messages"),
        (b'{"model": "chat-7b", "messages": ["hi"]}', "messages.0"),
        (b'{"model": "chat-7b", "messages": [{"role": "user", "content": "x"}], "max_tokens": -1}', "max_tokens"),
        (b'{"model": "chat-7b", "messages": [{"role": "user", "content": "x"}], "max_tokens": 0}', "max_tokens"),
        (b'{"model": "chat-7b", "messages": [{"role": "user", "content": "x"}], "max_tokens": 10000000000}',
         "max_tokens"),
        (b'{"model": "chat-7b", "messages": [{"role": "user", "content": "x"}], "max_tokens": "5"}', "max_tokens"),
        (b'{"model": "chat-7b", "messages": [{"role": "user", "content": "x"}], "max_tokens": true}', "max_tokens"),
        (b'{"model": "chat-7b", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}', "stream"),
    ],
)
def test_bad_chat_bodies_are_refused(raw: bytes, param: str | None) -> None:
    with pytest.raises(BadRequest) as caught:
        parse_body(raw, "chat", 4096)
    assert caught.value.param == param


def test_good_bodies_pass_and_completions_need_a_prompt() -> None:
    body = parse_body(b'{"model": "auto", "messages": [{"role": "user", "content": "x"}], "max_tokens": 4096}',
                      "chat", 4096)
    assert body["max_tokens"] == 4096
    assert parse_body(b'{"model": "chat-7b", "prompt": "once"}', "completion", 10)["prompt"] == "once"
    with pytest.raises(BadRequest):
        parse_body(b'{"model": "chat-7b", "prompt": ""}', "completion", 10)


def test_litellm_config_derives_from_settings() -> None:
    config = build_litellm_config(settings(
        CHAT_API_BASE="http://chat:8001/v1/", CODE_API_BASE="http://code:8004/v1", LLM_REQUEST_TIMEOUT=42,
        GATEWAY_MAX_RETRIES=3, GATEWAY_COOLDOWN_SECONDS=7,
    ))
    models = {entry["model_name"]: entry["litellm_params"] for entry in config["model_list"]}
    assert models == {
        "chat-7b": {"model": "openai/chat-7b", "api_base": "http://chat:8001/v1", "api_key": "none",
                    "timeout": 42, "max_retries": 0},
        "code-7b": {"model": "openai/code-7b", "api_base": "http://code:8004/v1", "api_key": "none",
                    "timeout": 42, "max_retries": 0},
    }
    router = config["router_settings"]
    assert router["fallbacks"] == [{"chat-7b": ["code-7b"]}, {"code-7b": ["chat-7b"]},
                                   {"gpt-3.5-turbo": ["code-7b"]}, {"qwen2.5-14b-instruct": ["code-7b"]}]
    assert router["model_group_alias"] == {"gpt-3.5-turbo": "chat-7b", "qwen2.5-14b-instruct": "chat-7b"}
    assert (router["num_retries"], router["timeout"], router["cooldown_time"]) == (3, 42, 7)
    assert config["litellm_settings"]["callbacks"] == ["services.gateway.litellm_hooks.auto_route"]


def test_litellm_config_routes_the_embedding_names_to_the_embedding_service() -> None:
    config = build_litellm_config(settings(EMBEDDING_API_BASE="http://embedding:8003/v1/", EMBEDDING_TIMEOUT=12,
                                           EMBEDDING_MODEL_ALIAS="text-embedding-3-small", API_KEY="k"))
    entries = {e["model_name"]: e["litellm_params"] for e in config["model_list"]}
    assert list(entries) == ["chat-7b", "code-7b", "embedding", "sentence-transformers/all-MiniLM-L6-v2",
                             "all-MiniLM-L6-v2", "text-embedding-3-small"]
    # Every name reaches the service under the one name it always answers to, whatever its aliases are.
    assert entries["embedding"] == entries["text-embedding-3-small"] == {
        "model": "openai/sentence-transformers/all-MiniLM-L6-v2", "api_base": "http://embedding:8003/v1",
        "api_key": "os.environ/API_KEY", "timeout": 12, "max_retries": 0,
    }
    assert "embedding" not in str(config["router_settings"])  # no chat fallback for an embedding request


@pytest.mark.parametrize("base", [None, "", "  "])
def test_litellm_config_has_no_embedding_entry_without_a_service(base: str | None) -> None:
    env = {} if base is None else {"EMBEDDING_API_BASE": base}
    names = [e["model_name"] for e in build_litellm_config(settings(**env))["model_list"]]
    assert names == ["chat-7b", "code-7b"]


def test_litellm_config_refers_to_the_key_without_writing_it(tmp_path: Path, monkeypatch) -> None:
    config = build_litellm_config(settings(API_KEY="s3cret"))
    assert {e["litellm_params"]["api_key"] for e in config["model_list"]} == {"os.environ/API_KEY"}
    monkeypatch.setenv("API_KEY", "s3cret")
    monkeypatch.setenv("CHAT_API_BASE", "http://10.0.0.5:9001/v1")
    target = tmp_path / "sub" / "litellm.yaml"
    assert main(["--write-litellm-config", str(target)]) == 0
    text = target.read_text()
    assert "s3cret" not in text
    assert yaml.safe_load(text)["model_list"][0]["litellm_params"]["api_base"] == "http://10.0.0.5:9001/v1"


def test_litellm_engine_asks_for_a_key_only_off_loopback() -> None:
    local = litellm_environment(settings(), base={})
    assert local["LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY"] == "true"
    assert local["LITELLM_LOCAL_MODEL_COST_MAP"] == "True"
    assert local["LITELLM_OFFLINE_MODE"] == "true"
    keyed = litellm_environment(settings(BIND_HOST="0.0.0.0", API_KEY="k"), base={})
    assert keyed["LITELLM_MASTER_KEY"] == "k"
    assert "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY" not in keyed
    command = litellm_command(settings(API_GATEWAY_PORT=8123), Path("/tmp/c.yaml"))
    assert command[1:] == ["--config", "/tmp/c.yaml", "--host", "127.0.0.1", "--port", "8123", "--num_workers", "1"]


def test_exposed_bind_without_key_refuses_to_start(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="API_KEY"):
        settings(BIND_HOST="0.0.0.0").check_exposure()
    settings(BIND_HOST="0.0.0.0", API_KEY="k").check_exposure()
    env = {"BIND_HOST": "0.0.0.0", "API_GATEWAY_PORT": "1", "PATH": "/usr/bin:/bin"}
    for engine in ("fast", "litellm"):
        done = subprocess.run([sys.executable, "-m", "services.gateway"], cwd=tmp_path, capture_output=True, text=True,
                              env={**env, "GATEWAY_ENGINE": engine}, timeout=60)
        assert done.returncode != 0
        assert "refusing to bind 0.0.0.0" in done.stderr
