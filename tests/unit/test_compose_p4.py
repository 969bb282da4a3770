"""Phase 4's compose file: the chat app as an overlay on phases 1 to 3, in Docker and natively."""

from __future__ import annotations

import sys
from pathlib import Path

from services.stack.compose import load_project, resolve
from services.stack.rules import HOST_ROOT, check_rules, split_port, validate_schema
from services.stack.runner import APP_URL, PHASES, ROOT, Stack, compose_files
from tests.support.dockerfiles import target_text

DOCKER = ROOT / "docker"


def p4_doc(gpu: bool = False, variables: dict[str, str] | None = None) -> dict:
    return resolve(load_project(compose_files("p4", ROOT, gpu)), variables or {})


def test_phase_four_is_an_overlay_with_no_gpu_file() -> None:
    assert PHASES[-1] == "p4"
    assert compose_files("p4", ROOT) == [DOCKER / f"compose.p{n}.yml" for n in (1, 2, 3, 4)]
    assert not (DOCKER / "compose.p4.gpu.yml").exists()
    assert compose_files("p4", ROOT, gpu=True)[-1] == DOCKER / "compose.p4.yml"
    services = p4_doc()["services"]
    p3 = resolve(load_project(compose_files("p3", ROOT)), {})["services"]
    assert set(services) == set(p3) | {"desktop-web"}
    # p4 adds a service and changes none of the earlier ones
    assert {name: services[name] for name in p3} == p3
    assert p4_doc(gpu=True)["services"]["desktop-web"] == services["desktop-web"]


def test_project_is_valid_and_follows_our_rules() -> None:
    for gpu in (False, True):
        files = compose_files("p4", ROOT, gpu)
        validate_schema(resolve(load_project(files), {}))
        assert check_rules(load_project(files).doc) == []


def test_desktop_web_service() -> None:
    web = p4_doc()["services"]["desktop-web"]
    assert web["build"]["dockerfile"] == "services/Dockerfile" and web["build"]["target"] == "web"
    assert web["command"] == ["python", "-m", "services.web"]
    assert web["depends_on"] == {"api-gateway": {"condition": "service_healthy"}}
    assert web["healthcheck"]["test"] == ["CMD", "python", "-m", "services.common.probe",
                                          "http://127.0.0.1:3000/health"]
    assert web["restart"] == "unless-stopped"
    env = web["environment"]
    assert env["WEB_GATEWAY_URL"] == "http://api-gateway:8000"
    assert env["WEB_RAG_URL"] == "http://rag:8002" and env["WEB_MCP_URL"] == "http://mcp-server:8020"
    assert env["WEB_ALERTS_URL"] == "http://alerts:9095"
    assert env["BIND_HOST"] == "0.0.0.0" and env["TRUST_CONTAINER_NETWORK"] == "true"
    assert env["LOG_FILE"] == "/data/logs/desktop-web.log"
    # the image's own copy of the app (services/Dockerfile's web target), so no WEB_STATIC_DIR from the host
    assert "WEB_STATIC_DIR" not in env


def test_port_is_loopback_only_and_volumes_lie_under_data_dir() -> None:
    web = load_project(compose_files("p4", ROOT)).doc["services"]["desktop-web"]
    for entry in web["ports"]:
        host_ip, published, target = split_port(entry)
        assert host_ip == "127.0.0.1" and published == target == "${WEB_PORT:-3000}"
    for volume in web["volumes"]:
        match = HOST_ROOT.match(volume.rsplit(":", 1)[0])
        assert match and match.group("var") == "DATA_DIR", volume


def test_variables_move_ports_and_urls() -> None:
    variables = {"WEB_PORT": "13000", "API_GATEWAY_PORT": "18000", "RAG_PORT": "18002", "MCP_PORT": "18020",
                 "ALERTS_PORT": "19095"}
    web = p4_doc(variables=variables)["services"]["desktop-web"]
    assert web["ports"] == ["127.0.0.1:13000:13000"]
    assert web["healthcheck"]["test"][-1] == "http://127.0.0.1:13000/health"
    env = web["environment"]
    assert env["WEB_PORT"] == "13000" and env["WEB_GATEWAY_URL"] == "http://api-gateway:18000"
    assert env["WEB_RAG_URL"] == "http://rag:18002" and env["WEB_MCP_URL"] == "http://mcp-server:18020"
    assert env["WEB_ALERTS_URL"] == "http://alerts:19095"
    # the MCP server takes decisions from the app's pages only, wherever WEB_PORT puts them
    assert p4_doc(variables=variables)["services"]["mcp-server"]["environment"]["MCP_APPROVAL_ORIGINS"] == \
        "http://127.0.0.1:13000,http://localhost:13000"
    assert p4_doc(variables={"WEB_ALERTS_URL": "http://a:1"})["services"]["desktop-web"]["environment"][
        "WEB_ALERTS_URL"] == "http://a:1"


def test_native_phase_four(tmp_path: Path) -> None:
    env = {"DATA_DIR": str(tmp_path / "d"), "MODELS_DIR": str(tmp_path / "m"), "WEB_PORT": "13000",
           "API_GATEWAY_PORT": "18000", "MCP_PORT": "18020", "RAG_PORT": "18002"}
    stack = Stack("p4", env=env)
    web = stack.services["desktop-web"]
    assert web.argv == [sys.executable, "-m", "services.web"]
    assert web.depends_on == ["api-gateway"] and web.health_url == "http://127.0.0.1:13000/health"
    assert stack.order.index("api-gateway") < stack.order.index("desktop-web")
    assert [(p.host_ip, p.port) for p in web.ports] == [("127.0.0.1", 13000)]
    assert web.env["WEB_GATEWAY_URL"] == "http://127.0.0.1:18000"
    assert web.env["WEB_RAG_URL"] == "http://127.0.0.1:18002"
    assert web.env["WEB_MCP_URL"] == "http://127.0.0.1:18020"
    assert web.env["WEB_ALERTS_URL"] == "http://127.0.0.1:9095"  # x-native: the receiver on loopback
    assert web.env["BIND_HOST"] == "127.0.0.1"
    assert "LOG_FILE" not in web.env and "TRUST_CONTAINER_NETWORK" not in web.env
    # the app's URL is the first one `ai-suite up` prints
    urls = stack.urls()
    assert next(iter(urls)) == APP_URL and urls[APP_URL] == "http://127.0.0.1:13000"


def test_dockerfile_serves_the_apps_files() -> None:
    text = target_text("web")
    assert "uv sync --frozen --no-editable --extra ${EXTRA}" in text
    assert p4_doc()["services"]["desktop-web"]["build"]["args"]["EXTRA"] == "service"
    assert "COPY desktop-app /srv/desktop-app" in text and "WEB_STATIC_DIR=/srv/desktop-app" in text
    assert "USER app" in text


def test_makefile_starts_phase_four() -> None:
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert "PHASE ?= p4" in text
    assert "P4_FILES := $(P3_FILES) -f docker/compose.p4.yml" in text
    assert "up-p4: mcp-dirs" in text and "$(COMPOSE) $(P4_GPU) up -d --build" in text
    assert "up-p4-cpu: mcp-dirs" in text and "$(COMPOSE) $(P4_FILES) up -d --build" in text


def test_the_app_reaches_the_image_build_context() -> None:
    # services/Dockerfile's web target copies desktop-app/; an ignored folder would fail the build
    lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    ignored = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert not any(entry.strip("/*") == "desktop-app" for entry in ignored)
    # the app's own test and development files stay out
    assert "desktop-app/node_modules/" in ignored or "node_modules/" in ignored
