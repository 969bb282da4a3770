"""A real phase-1 stack (inference + gateway, bundled model) started once per test session."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from services.stack.runner import Stack
from tests.support.procs import Service, free_port, python_module


@dataclass
class RunningStack:
    stack: Stack
    gateway_url: str
    inference_url: str


@pytest.fixture(scope="session")
def p1_stack(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningStack]:
    data_dir = tmp_path_factory.mktemp("p1-data")
    gateway_port, inference_port = free_port(), free_port()
    env = {
        "API_GATEWAY_PORT": str(gateway_port),
        "INFERENCE_PORT": str(inference_port),
        "DATA_DIR": str(data_dir),
        "MODELS_DIR": str(models_dir),
        "LLM_REQUEST_TIMEOUT": "20",
        "GATEWAY_COOLDOWN_SECONDS": "2",
        "LOG_JSON": "false",
        # The conversation tests outgrow a small context on purpose: 1,024 tokens per slot.
        "N_CTX": "1024",
    }
    stack = Stack("p1", env=env)
    stack.up()
    try:
        yield RunningStack(stack, f"http://127.0.0.1:{gateway_port}", f"http://127.0.0.1:{inference_port}")
    finally:
        stack.down()


@pytest.fixture(scope="session")
def gateway_url(p1_stack: RunningStack) -> str:
    return p1_stack.gateway_url


@pytest.fixture
def own_gateway(p1_stack: RunningStack, tmp_path: Path) -> Iterator[Service]:
    """A gateway process of our own in front of the stack's real inference service: it can be killed, and it
    waits long enough for prompts of a full context on a busy 2-core machine."""
    port = free_port()
    inference = f"{p1_stack.inference_url}/v1"
    env = {"API_GATEWAY_PORT": str(port), "CHAT_API_BASE": inference, "CODE_API_BASE": inference,
           "DATA_DIR": str(tmp_path / "data"), "LOG_JSON": "false", "LLM_REQUEST_TIMEOUT": "240"}
    service = Service("gateway", python_module("services.gateway"), env, f"http://127.0.0.1:{port}/health",
                      tmp_path / "gateway.log")
    yield service.start(60)
    service.stop()
