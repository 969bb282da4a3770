"""Static checks for the compose files: the compose-spec schema plus this project's own rules."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import yaml

# One variable expression, optionally with a default: ${PORT} or ${PORT:-8001}.
PORT_VAR = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?::?-[0-9]*)?\}")
# A host path that starts at ${MODELS_DIR...} or ${DATA_DIR...}.
HOST_ROOT = re.compile(r"^\$\{(?P<var>MODELS_DIR|DATA_DIR)(?::?-[^}]*)?\}(?:/.*)?$")
LOOPBACK = "127.0.0.1"
# The mounts outside those roots, each named with its reason; no other service may mount the host.
# (service, host path, container path) -> whether it must be read-only.
HOST_MOUNTS = {
    # the MCP server's view of the host filesystem (docs/mcp.md); its path guard confines every tool to
    # MCP_ALLOWED_ROOTS
    ("mcp-server", "/", "/mnt/host"): False,
    # node-exporter measures the host's file systems, cAdvisor the containers (docs/monitoring.md)
    ("node-exporter", "/", "/host"): True,
    ("cadvisor", "/", "/rootfs"): True,
    ("cadvisor", "/var/run", "/var/run"): True,
    ("cadvisor", "/sys", "/sys"): True,
    ("cadvisor", "/var/lib/docker", "/var/lib/docker"): True,
    ("cadvisor", "/dev/disk", "/dev/disk"): True,
}
# Configuration kept in the repository beside the compose files (docker/monitoring/...), mounted read-only.
REPO_CONFIG = re.compile(r"^\./monitoring/[\w./-]+$")


def validate_schema(doc: Mapping[str, Any]) -> None:
    """Parse an interpolated document with the compose-spec binding; raises ValueError when invalid."""
    from compose_spec import PyCompose  # test-time dependency (local-ai-suite[test])

    PyCompose.from_yaml(yaml.safe_dump(dict(doc), sort_keys=False))


def split_port(entry: str) -> tuple[str | None, str, str]:
    """Split short port syntax into (host_ip, published, target) without expanding variables."""
    entry = entry.split("/", 1)[0]
    parts = re.split(r":(?![^{]*\})", entry)  # colons inside ${...:-x} are not separators
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    if len(parts) == 2:
        return None, parts[0], parts[1]
    return None, "", parts[0]


def _port_problems(name: str, entry: Any) -> list[str]:
    if isinstance(entry, dict):
        host_ip, published = entry.get("host_ip"), str(entry.get("published", ""))
    else:
        host_ip, published, _ = split_port(str(entry))
    problems = []
    if host_ip != LOOPBACK:
        problems.append(f"{name}: port {entry!r} must be published on {LOOPBACK} only")
    if not PORT_VAR.fullmatch(published):
        problems.append(f"{name}: port {entry!r} must take its published port from a ${{VAR}} in .env")
    return problems


def _volume_problems(name: str, entry: Any) -> list[str]:
    if isinstance(entry, dict):
        if entry.get("type") not in (None, "bind"):
            return [f"{name}: volume {entry!r} must be a bind mount under MODELS_DIR or DATA_DIR"]
        source, read_only, target = str(entry.get("source", "")), bool(entry.get("read_only")), entry.get("target")
    else:
        parts = re.split(r":(?![^{]*\})", str(entry))
        source = parts[0] if len(parts) > 1 else ""
        target = parts[1] if len(parts) > 1 else parts[0]
        read_only = len(parts) > 2 and "ro" in parts[2].split(",")
    host_mount = HOST_MOUNTS.get((name, source.rstrip("/") or "/", str(target).rstrip("/")))
    if host_mount is not None:
        return [f"{name}: host mount {entry!r} must be read-only (:ro)"] if host_mount and not read_only else []
    if REPO_CONFIG.match(source):
        return [] if read_only else [f"{name}: configuration mount {entry!r} must be read-only (:ro)"]
    match = HOST_ROOT.match(source)
    if not match:
        return [f"{name}: volume {entry!r} must lie under ${{MODELS_DIR}} or ${{DATA_DIR}}"]
    if match.group("var") == "MODELS_DIR" and not read_only:
        return [f"{name}: models volume {target!r} must be read-only (:ro)"]
    return []


def check_rules(doc: Mapping[str, Any]) -> list[str]:
    """Return every violation of our rules in an include-resolved, uninterpolated document."""
    services: Mapping[str, Any] = doc.get("services") or {}
    problems: list[str] = []
    if not services:
        problems.append("the file defines no services")
    for name, service in services.items():
        health = service.get("healthcheck") or {}
        if not health.get("test") or health.get("disable"):
            problems.append(f"{name}: has no healthcheck")
        for entry in service.get("ports") or []:
            problems += _port_problems(name, entry)
        for entry in service.get("volumes") or []:
            problems += _volume_problems(name, entry)
        deps = service.get("depends_on") or {}
        for dep in deps if isinstance(deps, list) else []:
            problems.append(f"{name}: depends_on {dep!r} must use condition: service_healthy")
        for dep, spec in (deps.items() if isinstance(deps, dict) else []):
            if dep not in services:
                problems.append(f"{name}: depends_on unknown service {dep!r}")
            if (spec or {}).get("condition") != "service_healthy":
                problems.append(f"{name}: depends_on {dep!r} must use condition: service_healthy")
    return problems
