"""Mapping compose services onto local processes: paths, hosts, ports, health and order."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from services.stack.compose import ComposeError
from services.stack.native import (
    DEFAULT_START_TIMEOUT,
    NativeService,
    map_hosts,
    map_path,
    native_services,
    parse_duration,
    parse_ports,
    start_order,
)


def build(services: dict, top: dict | None = None, base: Path = Path("/repo/docker")) -> dict[str, NativeService]:
    doc = {"services": services, **({"x-native": top} if top else {})}
    return native_services(doc, {}, base, Path("/data/logs"))


def svc(**extra: object) -> dict:
    return {"image": "x", "command": ["python", "-m", "services.x"], **extra}


def test_paths_hosts_and_bind_are_mapped(tmp_path: Path) -> None:
    services = build({
        "inference-chat": svc(
            environment={"MODELS_DIR": "/models", "MODEL_FILE": "/models/m.gguf", "DATA_DIR": "/data",
                         "LOG": "/data/logs/x.log", "BIND_HOST": "0.0.0.0", "TRUST_CONTAINER_NETWORK": "true",
                         "LOG_FILE": "/data/logs/inference-chat.log",
                         "FLAG": True, "UNSET": None, "OTHER": "/modelsX"},
            volumes=["../models:/models:ro", f"{tmp_path}/logs:/data/logs"],
            ports=["127.0.0.1:8001:8001"],
        ),
        "api-gateway": svc(environment={"CHAT_API_BASE": "http://inference-chat:8001/v1",
                                        "PG": "postgres://u:p@inference-chat:5432/db", "HOST": "inference-chat",
                                        "UNRELATED": "http://inference-chat-2:1/"}),
    }, top={"paths": {"/data": str(tmp_path)}})
    env = services["inference-chat"].env
    assert env["MODELS_DIR"] == "/repo/models"
    assert env["MODEL_FILE"] == "/repo/models/m.gguf"
    assert env["DATA_DIR"] == str(tmp_path)
    assert env["LOG"] == f"{tmp_path}/logs/x.log"  # the longest prefix wins
    assert env["OTHER"] == "/modelsX"  # a prefix must end at a path boundary
    assert env["BIND_HOST"] == "127.0.0.1"
    assert env["FLAG"] == "true"
    assert "TRUST_CONTAINER_NETWORK" not in env and "UNSET" not in env
    assert "LOG_FILE" not in env  # natively the runner captures output into that file already
    gateway = services["api-gateway"].env
    assert gateway["CHAT_API_BASE"] == "http://127.0.0.1:8001/v1"
    assert gateway["PG"] == "postgres://u:p@127.0.0.1:5432/db"
    assert gateway["HOST"] == "127.0.0.1"
    assert gateway["UNRELATED"] == "http://inference-chat-2:1/"


def test_python_becomes_this_interpreter() -> None:
    assert build({"a": svc()})["a"].argv == [sys.executable, "-m", "services.x"]
    other = build({"a": svc(command=["/bin/echo", "hi"])})["a"]
    assert other.argv == ["/bin/echo", "hi"]


def test_native_overrides() -> None:
    a = build({"a": svc(**{"x-native": {"command": ["python", "-m", "embedded"], "environment": {"E": "1"},
                                        "start_timeout": 5, "health_url": "http://a:9/ready"}})})["a"]
    assert a.argv == [sys.executable, "-m", "embedded"]
    assert a.env == {"E": "1"}
    assert a.start_timeout == 5
    assert a.health_url == "http://127.0.0.1:9/ready"


def test_disabled_service_is_skipped_and_not_waited_for() -> None:
    services = build({"db": svc(**{"x-native": {"disabled": True}}),
                      "app": svc(depends_on={"db": {"condition": "service_healthy"}})})
    assert list(services) == ["app"]
    assert services["app"].depends_on == []


def test_health_from_probe_or_command() -> None:
    probe = ["CMD", "python", "-m", "services.common.probe", "http://127.0.0.1:8001/health"]
    a = build({"a": svc(healthcheck={"test": probe})})["a"]
    assert (a.health_url, a.health_argv) == ("http://127.0.0.1:8001/health", None)
    b = build({"b": svc(healthcheck={"test": ["CMD", "python", "/models/check.py"]},
                        volumes=["/srv/m:/models"])})["b"]
    assert (b.health_url, b.health_argv) == (None, [sys.executable, "/srv/m/check.py"])
    with pytest.raises(ComposeError, match="CMD"):
        build({"c": svc(healthcheck={"test": ["CMD-SHELL", "curl -f http://x"]})})
    assert build({"d": svc()})["d"].health_url is None


def test_shell_form_command_is_refused() -> None:
    with pytest.raises(ComposeError, match="exec form"):
        build({"a": svc(command="python -m x")})
    with pytest.raises(ComposeError, match="no command"):
        build({"a": {"image": "x"}})


def test_start_timeout_from_healthcheck() -> None:
    health = {"test": ["CMD", "true"], "start_period": "1m30s", "interval": "500ms", "retries": 4}
    assert build({"a": svc(healthcheck=health)})["a"].start_timeout == 92.0
    assert build({"a": svc(healthcheck={"test": ["CMD", "true"]})})["a"].start_timeout == DEFAULT_START_TIMEOUT


def test_a_command_healthcheck_keeps_its_compose_timeout() -> None:
    health = {"test": ["CMD", "true"], "timeout": "5s"}
    assert build({"a": svc(healthcheck=health)})["a"].watch.timeout == 5.0
    assert build({"a": svc(healthcheck={"test": ["CMD", "true"]})})["a"].watch.timeout == 30.0


@pytest.mark.parametrize(("text", "seconds"), [("10s", 10), ("1m30s", 90), ("250ms", 0.25), ("1h", 3600), (7, 7)])
def test_parse_duration(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_parse_duration_rejects_junk() -> None:
    with pytest.raises(ComposeError):
        parse_duration("ten seconds")


def test_parse_ports() -> None:
    ports = parse_ports({"ports": ["127.0.0.1:8001:8001", "9000:9000/tcp", "0.0.0.0:7000:7000",
                                   {"target": 5, "published": "5432", "host_ip": "127.0.0.1"}]})
    assert [(p.host_ip, p.port) for p in ports] == [("127.0.0.1", 8001), ("127.0.0.1", 9000),
                                                     ("127.0.0.1", 7000), ("127.0.0.1", 5432)]
    with pytest.raises(ComposeError, match="number"):
        parse_ports({"ports": ["127.0.0.1:8000-8002:8000-8002"]})


def test_start_order_is_topological() -> None:
    dep = {"condition": "service_healthy"}
    services = build({"rag": svc(depends_on={"gateway": dep, "embedding": dep}),
                      "gateway": svc(depends_on={"chat": dep}), "embedding": svc(), "chat": svc()})
    order = start_order(services)
    assert sorted(order) == ["chat", "embedding", "gateway", "rag"]
    for name, spec in services.items():
        assert all(order.index(d) < order.index(name) for d in spec.depends_on)


def test_start_order_rejects_cycles_and_unknown_services() -> None:
    dep = {"condition": "service_healthy"}
    with pytest.raises(ComposeError, match="cycle: a -> b -> a"):
        start_order(build({"a": svc(depends_on={"b": dep}), "b": svc(depends_on={"a": dep})}))
    with pytest.raises(ComposeError, match="unknown service 'ghost'"):
        start_order(build({"a": svc(depends_on={"ghost": dep})}))


def test_map_helpers() -> None:
    assert map_path("/models", {"/models": Path("/m")}) == "/m"
    assert map_path("relative/models", {"/models": Path("/m")}) == "relative/models"
    assert map_hosts("ws://qdrant/x", {"qdrant"}) == "ws://127.0.0.1/x"


def test_native_healthcheck_replaces_the_containers(tmp_path: Path) -> None:
    services = build({
        "db": svc(healthcheck={"test": ["CMD", "pg_isready", "-p", "5432"]},
                  volumes=[f"{tmp_path}/pg:/var/lib/postgresql/data"],
                  **{"x-native": {"healthcheck": {"test": ["CMD", "python", "-m", "db", "--check",
                                                          "/var/lib/postgresql/data"]}}}),
        "plain": svc(healthcheck={"test": ["CMD", "pg_isready"]}),
    })
    assert services["db"].health_argv == [sys.executable, "-m", "db", "--check", f"{tmp_path}/pg"]
    assert services["plain"].health_argv == ["pg_isready"]
    with pytest.raises(ComposeError, match="CMD"):
        build({"db": svc(**{"x-native": {"healthcheck": {"test": "pg_isready"}}})})
