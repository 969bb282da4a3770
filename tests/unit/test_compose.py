"""The compose files: compose-spec schema, our own rules, the GPU overlay and the Dockerfiles they build."""

from __future__ import annotations

import copy
import functools
import importlib.util
import re
import tomllib
from pathlib import Path

import pytest

from services.stack.compose import compose_variables, load_project, read_yaml, resolve
from services.stack.interpolate import interpolate
from services.stack.rules import check_rules, validate_schema
from services.stack.runner import PHASES, compose_files
from tests.support.dockerfiles import lineage
from tests.support.dockerfiles import stages as dockerfile_stages

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
BASES = sorted(p for p in DOCKER.glob("compose.p*.yml") if not p.name.endswith(".gpu.yml"))
# every phase as both runners start it (later phases are overlays on earlier ones), CPU and GPU variants
PHASES_PRESENT = [p for p in PHASES if (DOCKER / f"compose.{p}.yml").exists()]
PROJECTS = [compose_files(p, ROOT, gpu) for gpu in (False, True) for p in PHASES_PRESENT]
IDS = ["+".join(p.name for p in files) for files in PROJECTS]


def test_phase_one_files_exist() -> None:
    assert DOCKER / "compose.p1.yml" in BASES
    assert (DOCKER / "compose.p1.gpu.yml").exists()


@pytest.mark.parametrize("files", PROJECTS, ids=IDS)
def test_project_matches_compose_spec(files: list[Path]) -> None:
    # interpolated with defaults only, as `docker compose config` would with an empty .env
    validate_schema(resolve(load_project(files), {}))


def test_phase_one_file_alone_matches_compose_spec() -> None:
    # p1 stands alone (later phases are overlays on it); `include` would be kept and checked here
    validate_schema(interpolate(read_yaml(DOCKER / "compose.p1.yml"), {}))


@pytest.mark.parametrize("files", PROJECTS, ids=IDS)
def test_project_follows_our_rules(files: list[Path]) -> None:
    assert check_rules(load_project(files).doc) == []


def test_schema_check_can_fail() -> None:
    doc = resolve(load_project([DOCKER / "compose.p1.yml"]), {})
    broken = copy.deepcopy(doc)
    broken["services"]["api-gateway"]["healthchek"] = broken["services"]["api-gateway"].pop("healthcheck")
    with pytest.raises(ValueError, match="healthchek"):
        validate_schema(broken)
    broken = copy.deepcopy(doc)
    broken["services"]["api-gateway"]["depends_on"]["inference-chat"]["condition"] = "service_happy"
    with pytest.raises(ValueError, match="service_happy"):
        validate_schema(broken)


GOOD = {
    "services": {
        "a": {
            "ports": ["127.0.0.1:${A_PORT:-8001}:${A_PORT:-8001}"],
            "volumes": ["${MODELS_DIR:-../models}:/models:ro", "${DATA_DIR:-../data}/logs:/data/logs"],
            "healthcheck": {"test": ["CMD", "true"]},
        },
        "b": {
            "ports": [{"target": 1, "published": "${B_PORT}", "host_ip": "127.0.0.1"}],
            "volumes": [{"type": "bind", "source": "${DATA_DIR}/pg", "target": "/pg"}],
            "depends_on": {"a": {"condition": "service_healthy"}},
            "healthcheck": {"test": ["CMD", "true"]},
        },
    }
}


def test_rules_accept_the_good_document() -> None:
    assert check_rules(GOOD) == []


@pytest.mark.parametrize(
    ("path", "value", "message"),
    [
        (("a", "healthcheck"), None, "a: has no healthcheck"),
        (("a", "healthcheck"), {"test": ["CMD", "true"], "disable": True}, "a: has no healthcheck"),
        (("a", "ports"), ["127.0.0.1:8001:8001"], "must take its published port from a ${VAR}"),
        (("a", "ports"), ["${A_PORT}:${A_PORT}"], "must be published on 127.0.0.1 only"),
        (("a", "ports"), ["0.0.0.0:${A_PORT}:8001"], "must be published on 127.0.0.1 only"),
        (("b", "ports"), [{"target": 1, "published": 5432, "host_ip": "127.0.0.1"}], "from a ${VAR}"),
        (("a", "volumes"), ["/var/lib/thing:/x"], "must lie under ${MODELS_DIR} or ${DATA_DIR}"),
        (("a", "volumes"), ["named-volume:/x"], "must lie under ${MODELS_DIR} or ${DATA_DIR}"),
        (("a", "volumes"), ["${HOME}/x:/x"], "must lie under ${MODELS_DIR} or ${DATA_DIR}"),
        (("a", "volumes"), ["${MODELS_DIR_OLD}/x:/x"], "must lie under ${MODELS_DIR} or ${DATA_DIR}"),
        (("a", "volumes"), ["${MODELS_DIR}:/models"], "must be read-only"),
        (("b", "volumes"), [{"type": "volume", "source": "pgdata", "target": "/pg"}], "must be a bind mount"),
        (("b", "depends_on"), {"a": {"condition": "service_started"}}, "must use condition: service_healthy"),
        (("b", "depends_on"), ["a"], "must use condition: service_healthy"),
        (("b", "depends_on"), {"ghost": {"condition": "service_healthy"}}, "unknown service 'ghost'"),
    ],
)
def test_each_rule_can_fail(path: tuple[str, str], value: object, message: str) -> None:
    doc = copy.deepcopy(GOOD)
    doc["services"][path[0]][path[1]] = value
    problems = check_rules(doc)
    assert any(message in p for p in problems), problems


def test_rules_need_services() -> None:
    assert check_rules({}) == ["the file defines no services"]


def test_phase_one_topology() -> None:
    doc = resolve(load_project([DOCKER / "compose.p1.yml"]), {})
    services = doc["services"]
    assert set(services) == {"inference-chat", "api-gateway"}
    chat, gateway = services["inference-chat"], services["api-gateway"]
    assert chat["environment"]["MODEL_ALIAS"].split(",") == ["chat-7b", "code-7b"]
    assert gateway["environment"]["CHAT_API_BASE"] == "http://inference-chat:8001/v1"
    assert gateway["environment"]["CODE_API_BASE"] == "http://inference-chat:8001/v1"
    assert gateway["depends_on"] == {"inference-chat": {"condition": "service_healthy"}}
    for name, service in services.items():
        assert service["environment"]["BIND_HOST"] == "0.0.0.0"
        assert "../data/logs:/data/logs" in service["volumes"]
        assert service["environment"]["LOG_FILE"] == f"/data/logs/{name}.log"  # docker's logs land there too
    assert "../models:/models:ro" in chat["volumes"]


def test_cpu_variant_has_no_gpu_and_overlay_adds_it() -> None:
    cpu = resolve(load_project([DOCKER / "compose.p1.yml"]), {"CHAT_N_GPU_LAYERS": "33"})
    gpu = resolve(load_project([DOCKER / "compose.p1.yml", DOCKER / "compose.p1.gpu.yml"]),
                  {"CHAT_N_GPU_LAYERS": "33"})
    for service in cpu["services"].values():
        assert "deploy" not in service
    chat_cpu, chat_gpu = cpu["services"]["inference-chat"], gpu["services"]["inference-chat"]
    assert chat_cpu["build"]["target"] == "cpu" and chat_cpu["environment"]["N_GPU_LAYERS"] == "0"
    assert chat_gpu["build"]["target"] == "cuda" and chat_gpu["environment"]["N_GPU_LAYERS"] == "33"
    device = chat_gpu["deploy"]["resources"]["reservations"]["devices"][0]
    assert device["driver"] == "nvidia" and "gpu" in device["capabilities"]
    assert gpu["services"]["api-gateway"] == cpu["services"]["api-gateway"]


def test_ports_and_paths_are_variables() -> None:
    names = compose_variables(DOCKER / "compose.p1.yml", DOCKER / "compose.p1.gpu.yml")
    assert {"INFERENCE_PORT", "API_GATEWAY_PORT", "MODELS_DIR", "DATA_DIR", "CHAT_MODEL",
            "CHAT_N_GPU_LAYERS", "LLM_REQUEST_TIMEOUT"} <= names


def _documented(env_example: Path) -> set[str]:
    pattern = re.compile(r"^#?\s*([A-Z][A-Z0-9_]*)=", re.MULTILINE)
    return set(pattern.findall(env_example.read_text(encoding="utf-8")))


def test_env_example_documents_every_compose_variable() -> None:
    example = ROOT / ".env.example"
    if not example.exists():
        pytest.skip(".env.example is not written yet")
    used: set[str] = set()
    for files in PROJECTS:
        used |= compose_variables(*files)
    assert sorted(used - _documented(example)) == []


@functools.cache
def _extras() -> frozenset[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return frozenset(project["optional-dependencies"])


@pytest.mark.parametrize("files", PROJECTS, ids=IDS)
def test_build_targets_exist_and_run_unprivileged(files: list[Path]) -> None:
    doc = load_project(files)
    for name, service in doc.services.items():
        build = service.get("build")
        if not build:
            continue
        dockerfile = (doc.service_dirs[name] / build["context"] / build["dockerfile"]).resolve()
        stages = dockerfile_stages(dockerfile)
        target = build.get("target") or list(stages)[-1]
        assert target in stages, f"{name}: target {target!r} not in {dockerfile}"
        users = [line.split()[1] for line in lineage(stages, target) if line.startswith("USER ")]
        assert users and users[-1] not in ("root", "0"), f"{name}: {target} runs as root"
        module = service["command"][-1]
        assert importlib.util.find_spec(module) is not None, f"{name}: command module {module} is missing"
        # the shared Dockerfile's build arguments: a locked extra, and the module the command runs
        args = build.get("args") or {}
        if "EXTRA" in args:
            assert args["EXTRA"] in _extras(), f"{name}: no extra {args['EXTRA']!r} in pyproject.toml"
        if "SERVICE" in args:
            assert module == f"services.{args['SERVICE']}", f"{name}: SERVICE {args['SERVICE']} but runs {module}"


def test_inference_dockerfile_builds_llama_cpp_with_cuda() -> None:
    stages = dockerfile_stages(ROOT / "services" / "inference" / "Dockerfile")
    assert {"cuda", "cpu"} <= set(stages)
    build_lines = "\n".join(line for lines in stages.values() for line in lines)
    assert re.search(r"FROM nvidia/cuda:\S+-devel", build_lines)
    assert "FROM nvidia/cuda:${CUDA_VERSION}-runtime" in "\n".join(stages["cuda"])
    assert re.search(r'CMAKE_ARGS="-DGGML_CUDA=on[^"]*"\s*\\\n\s*/opt/uv/bin/uv sync --frozen [^\n]*--extra inference',
                     build_lines)
    assert stages["cpu"][0].startswith("FROM python:3.11-slim")


def test_every_image_installs_from_the_lock() -> None:
    dockerfiles = sorted((ROOT / "services").rglob("Dockerfile"))
    # inference (llama.cpp's CPU and CUDA builds); the shared one for gateway, embedding, rag, mcp_server, alerts, web
    assert [path.relative_to(ROOT).as_posix() for path in dockerfiles] == [
        "services/Dockerfile", "services/inference/Dockerfile"]
    for dockerfile in dockerfiles:
        text = dockerfile.read_text(encoding="utf-8")
        assert "pip install --require-hashes --no-deps -r /tmp/uv.txt" in text, dockerfile
        assert "COPY pyproject.toml uv.lock README.md ./" in text, dockerfile
        installs = re.findall(r"^(?:RUN|\s+).*\b(?:pip|uv) (?:install|sync)\b.*$", text, re.MULTILINE)
        assert installs, dockerfile
        for line in installs:
            assert "--require-hashes" in line or "sync --frozen" in line, (dockerfile, line)


def test_dockerignore_keeps_weights_and_data_out() -> None:
    ignored = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert {"models/", "data/", ".venv/", ".env"} <= set(ignored)


def test_healthcheck_probe_module_exists() -> None:
    assert importlib.util.find_spec("services.common.probe") is not None
