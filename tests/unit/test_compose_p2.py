"""Phase 2's compose files: the overlay on phase 1, its services, and what the native runner makes of them."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from services.stack.compose import ComposeError, load_project, resolve
from services.stack.runner import ROOT, Stack, compose_files

DOCKER = ROOT / "docker"
P2_SERVICES = {"inference-chat", "inference-code", "api-gateway", "embedding", "qdrant", "postgres", "rag"}


def p2_doc(gpu: bool = False, variables: dict[str, str] | None = None) -> dict:
    return resolve(load_project(compose_files("p2", ROOT, gpu)), variables or {})


def test_phase_two_is_an_overlay_on_phase_one() -> None:
    assert compose_files("p2", ROOT) == [DOCKER / "compose.p1.yml", DOCKER / "compose.p2.yml"]
    assert compose_files("p2", ROOT, gpu=True) == [
        DOCKER / "compose.p1.yml", DOCKER / "compose.p1.gpu.yml", DOCKER / "compose.p2.yml",
        DOCKER / "compose.p2.gpu.yml",
    ]
    # the phase-1 project is untouched by phase 2
    p1 = resolve(load_project(compose_files("p1", ROOT)), {})
    assert set(p1["services"]) == {"inference-chat", "api-gateway"}
    assert p1["services"]["api-gateway"]["environment"]["CODE_API_BASE"] == "http://inference-chat:8001/v1"


def test_including_and_redefining_a_service_is_refused(tmp_path: Path) -> None:
    # why p2 is an overlay (ADR 0003): compose, and our loader, refuse a service defined twice via include
    (tmp_path / "base.yml").write_text("services:\n  a:\n    image: x\n")
    (tmp_path / "top.yml").write_text("include: [base.yml]\nservices:\n  a:\n    image: y\n")
    with pytest.raises(ComposeError, match="defined both here and in an included file"):
        load_project([tmp_path / "top.yml"])


def test_phase_two_topology() -> None:
    services = p2_doc()["services"]
    assert set(services) == P2_SERVICES
    gateway, code, chat = services["api-gateway"], services["inference-code"], services["inference-chat"]
    assert gateway["environment"]["CHAT_API_BASE"] == "http://inference-chat:8001/v1"
    assert gateway["environment"]["CODE_API_BASE"] == "http://inference-code:8004/v1"
    assert gateway["depends_on"] == {"inference-chat": {"condition": "service_healthy"},
                                     "inference-code": {"condition": "service_healthy"}}
    assert chat["environment"]["MODEL_ALIAS"] == "chat-7b"
    # inference-code is the same image and command as inference-chat, with its own port, model and name
    assert (code["image"], code["command"], code["build"]) == (chat["image"], chat["command"], chat["build"])
    assert code["environment"]["MODEL_ALIAS"] == "code-7b"
    assert code["environment"]["INFERENCE_PORT"] == "8004"
    assert code["ports"] == ["127.0.0.1:8004:8004"]
    assert services["embedding"]["command"] == ["python", "-m", "services.embedding"]
    assert "../models:/models:ro" in services["embedding"]["volumes"]
    assert services["qdrant"]["volumes"] == ["../data/vectors:/qdrant/storage"]
    postgres = services["postgres"]
    assert postgres["image"].startswith("postgres:") and postgres["volumes"] == [
        "../data/postgresql:/var/lib/postgresql/data"]
    assert postgres["healthcheck"]["test"][1] == "pg_isready"
    rag = services["rag"]
    assert rag["command"] == ["python", "-m", "services.rag"]
    assert set(rag["depends_on"]) == {"embedding", "qdrant", "postgres", "api-gateway"}
    assert "../data/documents:/data/documents" in rag["volumes"]
    assert rag["environment"]["QDRANT_URL"] == "http://qdrant:6333"
    assert rag["environment"]["POSTGRES_HOST"] == "postgres"


def test_ports_and_credentials_come_from_variables() -> None:
    variables = {"INFERENCE_CODE_PORT": "9004", "RAG_PORT": "9002", "EMBEDDING_PORT": "9003",
                 "POSTGRES_PORT": "9432", "POSTGRES_PASSWORD": "s3cret", "CODE_MODEL": "coder.gguf"}
    services = p2_doc(variables=variables)["services"]
    assert services["api-gateway"]["environment"]["CODE_API_BASE"] == "http://inference-code:9004/v1"
    assert services["inference-code"]["environment"]["MODEL_FILE"] == "coder.gguf"
    assert services["rag"]["environment"]["EMBEDDING_URL"] == "http://embedding:9003"
    assert services["rag"]["ports"] == ["127.0.0.1:9002:9002"]
    # postgres listens on the published port inside the container too, so rag's POSTGRES_PORT is right
    assert services["postgres"]["environment"]["PGPORT"] == "9432"
    assert services["postgres"]["ports"] == ["127.0.0.1:9432:9432"]
    assert services["rag"]["environment"]["POSTGRES_PORT"] == "9432"
    assert services["rag"]["environment"]["POSTGRES_PASSWORD"] == "s3cret"
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"] == "s3cret"


def test_gpu_overlay_puts_both_models_on_the_gpu() -> None:
    cpu = p2_doc(variables={"CODE_N_GPU_LAYERS": "20", "CHAT_N_GPU_LAYERS": "33"})["services"]
    gpu = p2_doc(gpu=True, variables={"CODE_N_GPU_LAYERS": "20", "CHAT_N_GPU_LAYERS": "33"})["services"]
    assert all("deploy" not in s for s in cpu.values())
    assert gpu["inference-chat"]["environment"]["N_GPU_LAYERS"] == "33"
    assert gpu["inference-code"]["environment"]["N_GPU_LAYERS"] == "20"
    assert cpu["inference-code"]["environment"]["N_GPU_LAYERS"] == "0"
    for name in ("inference-chat", "inference-code"):
        assert gpu[name]["build"]["target"] == "cuda" and gpu[name]["image"].endswith(":cuda")
        assert gpu[name]["deploy"]["resources"]["reservations"]["devices"][0]["driver"] == "nvidia"
    for name in P2_SERVICES - {"inference-chat", "inference-code"}:
        assert gpu[name] == cpu[name]


def test_native_phase_two(tmp_path: Path) -> None:
    env = {"DATA_DIR": str(tmp_path / "d"), "MODELS_DIR": str(tmp_path / "m"), "POSTGRES_PORT": "15432",
           "RAG_PORT": "18002", "INFERENCE_CODE_PORT": "18004"}
    stack = Stack("p2", env=env)
    data = tmp_path / "d"
    # qdrant is embedded in rag natively: not started, and rag does not wait for it
    assert "qdrant" not in stack.services
    assert stack.order.index("postgres") < stack.order.index("rag")
    rag = stack.services["rag"]
    assert set(rag.depends_on) == {"embedding", "postgres", "api-gateway"}
    assert rag.env["QDRANT_URL"] == "" and rag.env["QDRANT_PATH"] == str(data / "vectors")
    assert rag.env["DOCUMENTS_DIR"] == str(data / "documents")
    assert rag.env["POSTGRES_HOST"] == "127.0.0.1" and rag.env["POSTGRES_PORT"] == "15432"
    assert rag.env["GATEWAY_URL"].startswith("http://127.0.0.1:")
    postgres = stack.services["postgres"]
    assert postgres.argv == [sys.executable, "-m", "services.stack.postgres"]
    assert postgres.env["PGDATA"] == str(data / "postgresql") and postgres.env["PGPORT"] == "15432"
    assert postgres.health_url is None
    assert postgres.health_argv == [sys.executable, "-m", "services.stack.postgres", "--check"]
    assert postgres.start_timeout == 60
    code = stack.services["inference-code"]
    assert code.env["MODEL_ALIAS"] == "code-7b" and code.health_url == "http://127.0.0.1:18004/health"
    gateway = stack.services["api-gateway"]
    assert gateway.env["CODE_API_BASE"] == "http://127.0.0.1:18004/v1"
    urls = stack.urls()
    assert urls["postgres"] == "postgresql://127.0.0.1:15432/ai_suite"
    assert urls["RAG API"] == "http://127.0.0.1:18002" and urls["rag"] == "http://127.0.0.1:18002"
