"""Phase 3's compose file: the MCP server as an overlay on phases 1 and 2, in Docker and natively."""

from __future__ import annotations

import sys
from pathlib import Path

from services.stack.compose import load_project, resolve
from services.stack.rules import HOST_ROOT, check_rules, split_port, validate_schema
from services.stack.runner import ROOT, Stack, compose_files
from tests.support.dockerfiles import target_text

DOCKER = ROOT / "docker"
P2_SERVICES = {"inference-chat", "inference-code", "api-gateway", "embedding", "qdrant", "postgres", "rag"}


def p3_doc(gpu: bool = False, variables: dict[str, str] | None = None) -> dict:
    return resolve(load_project(compose_files("p3", ROOT, gpu)), variables or {})


def test_phase_three_is_an_overlay_with_no_gpu_file() -> None:
    assert compose_files("p3", ROOT) == [DOCKER / "compose.p1.yml", DOCKER / "compose.p2.yml",
                                         DOCKER / "compose.p3.yml"]
    # nothing in p3 needs a GPU: --gpu adds the p1 and p2 overlays only
    assert not (DOCKER / "compose.p3.gpu.yml").exists()
    assert compose_files("p3", ROOT, gpu=True)[-1] == DOCKER / "compose.p3.yml"
    services = p3_doc()["services"]
    assert set(services) == P2_SERVICES | {"mcp-server"}
    # p3 adds a service and changes none of the earlier ones
    p2 = resolve(load_project(compose_files("p2", ROOT)), {})["services"]
    assert {name: services[name] for name in P2_SERVICES} == p2
    assert p3_doc(gpu=True)["services"]["mcp-server"] == services["mcp-server"]


def test_project_is_valid_and_follows_our_rules() -> None:
    for gpu in (False, True):
        files = compose_files("p3", ROOT, gpu)
        validate_schema(resolve(load_project(files), {}))
        assert check_rules(load_project(files).doc) == []


def test_mcp_server_service() -> None:
    mcp = p3_doc()["services"]["mcp-server"]
    assert mcp["build"]["dockerfile"] == "services/Dockerfile" and mcp["build"]["target"] == "mcp_server"
    assert mcp["command"] == ["python", "-m", "services.mcp_server"]
    assert mcp["depends_on"] == {"rag": {"condition": "service_healthy"}}
    assert mcp["healthcheck"]["test"] == ["CMD", "python", "-m", "services.common.probe",
                                          "http://127.0.0.1:8020/health"]
    assert mcp["restart"] == "unless-stopped"
    env = mcp["environment"]
    assert env["RAG_URL"] == "http://rag:8002"
    assert env["MCP_HOST_ROOT"] == "/mnt/host" and env["DATA_DIR"] == "/data"
    assert (env["RBAC_ENABLED"], env["APPROVAL_WORKFLOW_ENABLED"], env["APPROVAL_TIMEOUT"]) == ("true", "true", "300")
    assert env["CHROMIUM_PATH"] == "/usr/bin/chromium"  # the image's own, whatever the host's .env says
    assert env["LOG_FILE"] == "/data/logs/mcp-server.log"
    assert "/:/mnt/host" in mcp["volumes"]
    assert mcp["shm_size"] == "1gb"  # headless Chromium needs more than Docker's 64 MB /dev/shm
    # the container is the host user, so what the tools write on the host keeps its owner
    assert mcp["user"] == "1000:1000"
    assert mcp["build"]["args"] == {"EXTRA": "mcp", "APP_UID": "1000", "APP_GID": "1000"}


def test_port_is_loopback_only_and_volumes_lie_under_data_dir() -> None:
    mcp = load_project(compose_files("p3", ROOT)).doc["services"]["mcp-server"]
    for entry in mcp["ports"]:
        host_ip, published, target = split_port(entry)
        assert host_ip == "127.0.0.1" and published == target == "${MCP_PORT:-8020}"
    data_volumes = [v for v in mcp["volumes"] if v != "/:/mnt/host"]
    assert {v.split(":")[-1] for v in data_volumes} == {"/data/security", "/data/logs"}
    for volume in data_volumes:
        match = HOST_ROOT.match(volume.rsplit(":", 1)[0])
        assert match and match.group("var") == "DATA_DIR", volume


def test_variables_move_ports_roots_and_switches() -> None:
    variables = {"MCP_PORT": "9020", "RAG_PORT": "9002", "MCP_ALLOWED_ROOTS": "/srv/a,/srv/b",
                 "RBAC_ENABLED": "false", "APPROVAL_WORKFLOW_ENABLED": "false", "APPROVAL_TIMEOUT": "60",
                 "MCP_UID": "1234", "MCP_GID": "99", "MCP_ANONYMOUS_ROLE": "", "DATA_DIR": "/var/ai"}
    mcp = p3_doc(variables=variables)["services"]["mcp-server"]
    assert mcp["ports"] == ["127.0.0.1:9020:9020"]
    assert mcp["healthcheck"]["test"][-1] == "http://127.0.0.1:9020/health"
    env = mcp["environment"]
    assert env["MCP_PORT"] == "9020" and env["RAG_URL"] == "http://rag:9002"
    assert env["MCP_ALLOWED_ROOTS"] == "/srv/a,/srv/b"
    assert (env["RBAC_ENABLED"], env["APPROVAL_WORKFLOW_ENABLED"], env["APPROVAL_TIMEOUT"]) == ("false", "false", "60")
    assert env["MCP_ANONYMOUS_ROLE"] == ""  # set but empty: callers without a key are refused
    assert mcp["user"] == "1234:99"
    assert "/var/ai/security:/data/security" in mcp["volumes"]
    # the roots default to the user's home, as the server does natively
    assert p3_doc(variables={"HOME": "/home/dev"})["services"]["mcp-server"]["environment"][
        "MCP_ALLOWED_ROOTS"] == "/home/dev"


def test_native_phase_three(tmp_path: Path) -> None:
    env = {"DATA_DIR": str(tmp_path / "d"), "MODELS_DIR": str(tmp_path / "m"), "MCP_PORT": "18020",
           "RAG_PORT": "18002", "MCP_ALLOWED_ROOTS": str(tmp_path / "work"), "CHROMIUM_PATH": "/opt/chrome"}
    stack = Stack("p3", env=env)
    data = tmp_path / "d"
    assert stack.order[-1] == "mcp-server" and stack.order.index("rag") < stack.order.index("mcp-server")
    mcp = stack.services["mcp-server"]
    assert mcp.argv == [sys.executable, "-m", "services.mcp_server"]
    assert mcp.depends_on == ["rag"] and mcp.health_url == "http://127.0.0.1:18020/health"
    assert [(p.host_ip, p.port) for p in mcp.ports] == [("127.0.0.1", 18020)]
    # no container: /mnt/host is the host's own root, so allowed roots stay host paths
    assert mcp.env["MCP_HOST_ROOT"] == "/" and mcp.env["MCP_ALLOWED_ROOTS"] == str(tmp_path / "work")
    assert mcp.env["DATA_DIR"] == str(data)
    assert mcp.env["RAG_URL"] == "http://127.0.0.1:18002"
    assert mcp.env["CHROMIUM_PATH"] == "/opt/chrome"  # x-native: the host's browser
    assert mcp.env["BIND_HOST"] == "127.0.0.1"
    # pass-through variables without a value are left to the process environment and .env
    assert "RATE_LIMIT_TOOLS" not in mcp.env and "COMMAND_ALLOWLIST" not in mcp.env
    assert "LOG_FILE" not in mcp.env and "TRUST_CONTAINER_NETWORK" not in mcp.env
    assert stack.urls()["MCP endpoint"] == "http://127.0.0.1:18020/mcp"


def test_dockerfile_installs_the_mcp_extra_and_debian_chromium() -> None:
    text = target_text("mcp_server")
    assert "uv sync --frozen --no-editable --extra ${EXTRA}" in text
    assert p3_doc()["services"]["mcp-server"]["build"]["args"]["EXTRA"] == "mcp"
    assert "chromium" in text and "fonts-noto-cjk" in text and " git " in text
    assert "playwright install" not in text.replace("`playwright install` is", "")
    assert "CHROMIUM_PATH=/usr/bin/chromium" in text
