"""docker/compose.scale.yml: a second inference-chat on phase 1 or 2, registered with the gateway."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from services.gateway.settings import GatewaySettings
from services.stack.compose import load_project, resolve
from services.stack.rules import check_rules, validate_schema
from services.stack.runner import ROOT, Stack, compose_files

DOCKER = ROOT / "docker"
SCALE = DOCKER / "compose.scale.yml"
PROJECTS = {f"{phase}{'+gpu' if gpu else ''}": [*compose_files(phase, ROOT, gpu), SCALE]
            for phase in ("p1", "p2") for gpu in (False, True)}


@pytest.mark.parametrize("name", PROJECTS)
def test_scale_overlay_matches_compose_spec_and_our_rules(name: str) -> None:
    files = PROJECTS[name]
    validate_schema(resolve(load_project(files), {}))
    assert check_rules(load_project(files).doc) == []


def test_the_replica_mirrors_inference_chat_on_its_own_port() -> None:
    services = resolve(load_project(PROJECTS["p2"]), {})["services"]
    chat, replica = services["inference-chat"], services["inference-chat-2"]
    assert (replica["image"], replica["command"], replica["build"]) == (chat["image"], chat["command"], chat["build"])
    same = ("MODEL_FILE", "MODEL_ALIAS", "N_CTX", "N_PARALLEL", "MAX_QUEUE", "MODELS_DIR", "API_KEY")
    assert {k: replica["environment"][k] for k in same} == {k: chat["environment"][k] for k in same}
    assert replica["environment"]["INFERENCE_PORT"] == "8011" and replica["ports"] == ["127.0.0.1:8011:8011"]
    assert replica["environment"]["LOG_FILE"] == "/data/logs/inference-chat-2.log"
    gateway = services["api-gateway"]
    assert gateway["environment"]["CHAT_API_BASES"] == "http://inference-chat-2:8011/v1"
    assert gateway["depends_on"]["inference-chat-2"] == {"condition": "service_healthy"}
    assert gateway["depends_on"]["inference-chat"] == {"condition": "service_healthy"}


def test_backends_from_env_follow_the_replica() -> None:
    variables = {"CHAT_API_BASES": "http://gpu1:8000/v1|model=qwen", "INFERENCE_CHAT_2_PORT": "9011"}
    gateway = resolve(load_project(PROJECTS["p2"]), variables)["services"]["api-gateway"]["environment"]
    assert gateway["CHAT_API_BASES"] == "http://inference-chat-2:9011/v1,http://gpu1:8000/v1|model=qwen"
    settings = GatewaySettings(_env_file=None, CHAT_API_BASES=gateway["CHAT_API_BASES"])
    assert [(b.api_base, b.backend_model) for b in settings.extra_backends("chat")] == [
        ("http://inference-chat-2:9011/v1", "chat-7b"), ("http://gpu1:8000/v1", "qwen")]


def test_without_the_overlay_the_gateway_passes_backends_from_env_through() -> None:
    gateway = resolve(load_project(compose_files("p1", ROOT)), {"CODE_API_BASES": "http://h:1/v1"})
    env = gateway["services"]["api-gateway"]["environment"]
    assert env["CHAT_API_BASES"] == "" and env["CODE_API_BASES"] == "http://h:1/v1"
    assert "inference-chat-2" not in gateway["services"]


def test_native_runner_reads_the_overlay(tmp_path: Path) -> None:
    env = {"DATA_DIR": str(tmp_path / "d"), "MODELS_DIR": str(tmp_path / "m"), "INFERENCE_CHAT_2_PORT": "18011"}
    stack = Stack.from_file(PROJECTS["p1"], env=env, root=ROOT)
    replica = stack.services["inference-chat-2"]
    assert replica.health_url == "http://127.0.0.1:18011/health" and replica.env["INFERENCE_PORT"] == "18011"
    assert stack.services["api-gateway"].env["CHAT_API_BASES"] == "http://127.0.0.1:18011/v1"
    assert stack.order.index("inference-chat-2") < stack.order.index("api-gateway")


def test_scale_variables_are_documented() -> None:
    example = (ROOT / ".env.example").read_text(encoding="utf-8")
    used = set(re.findall(r"\$\{([A-Z][A-Z0-9_]*)", SCALE.read_text(encoding="utf-8")))
    assert sorted(v for v in used if not re.search(rf"^#?\s*{v}=", example, re.MULTILINE)) == []
