"""Translate interpolated compose services into local processes: paths, hostnames, ports, health."""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.stack.compose import NATIVE_KEY, ComposeError
from services.stack.rules import split_port

PROBE_MODULE = "services.common.probe"
ANY_ADDRESS = {"0.0.0.0", "::", "[::]"}  # nosec B104  # recognised in compose, never bound
# Container-only variables: the loopback-published network, and LOG_FILE because natively the
# runner already sends the process's output to ${DATA_DIR}/logs/<service>.log.
CONTAINER_ONLY_ENV = ("TRUST_CONTAINER_NETWORK", "LOG_FILE")
DEFAULT_START_TIMEOUT = 120.0
DURATION = re.compile(r"(\d+(?:\.\d+)?)(us|ms|s|m|h)")
UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
RESTART_ON_FAILURE = re.compile(r"on-failure(:(\d+))?")


@dataclass(frozen=True)
class Port:
    host_ip: str
    port: int


@dataclass(frozen=True)
class NativeService:
    """Everything needed to run one compose service as a local process."""

    name: str
    argv: list[str]
    env: dict[str, str]
    ports: list[Port]
    depends_on: list[str]
    health_url: str | None
    health_argv: list[str] | None
    start_timeout: float
    log_path: Path
    path_map: dict[str, Path] = field(default_factory=dict)
    restart: str = "no"
    watch: HealthWatch = field(default_factory=lambda: HealthWatch())


@dataclass(frozen=True)
class HealthWatch:
    """How the supervisor judges a running service hung: `retries` failed probes `interval` apart, after
    `start_period` (compose's healthcheck; its defaults are 30 s, 3 and 0 s)."""

    interval: float = 30.0
    retries: int = 3
    start_period: float = 0.0
    # how long one healthcheck command may take (compose's `timeout`): a Python check on a busy machine needs seconds
    timeout: float = 30.0

    @property
    def hung_after(self) -> float:
        return self.interval * self.retries


def parse_duration(text: str | int | float | None) -> float:
    """Compose durations ("1m30s", "500ms", "10s") in seconds."""
    if text is None:
        return 0.0
    if isinstance(text, int | float):
        return float(text)
    matches = DURATION.findall(text)
    if not matches or "".join(n + u for n, u in matches) != text.replace(" ", ""):
        raise ComposeError(f"invalid duration {text!r}")
    return sum(float(n) * UNITS[u] for n, u in matches)


def parse_ports(service: Mapping[str, Any]) -> list[Port]:
    """Published ports of an interpolated service (the port is the same inside and out)."""
    ports = []
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            host_ip, published = entry.get("host_ip") or "127.0.0.1", str(entry.get("published") or "")
        else:
            ip, published, target = split_port(str(entry))
            host_ip, published = ip or "127.0.0.1", published or target
        if not published.isdigit():
            raise ComposeError(f"port {entry!r}: published port must be a number (ranges are not supported)")
        ports.append(Port("127.0.0.1" if host_ip in ANY_ADDRESS else host_ip, int(published)))
    return ports


def path_map(service: Mapping[str, Any], top_native: Mapping[str, Any], base_dir: Path) -> dict[str, Path]:
    """Container path -> host path, from bind volumes and `x-native.paths`."""
    mapping: dict[str, Path] = {}
    for container, host in (top_native.get("paths") or {}).items():
        mapping[str(container).rstrip("/")] = (base_dir / str(host)).resolve()
    for entry in service.get("volumes") or []:
        if isinstance(entry, dict):
            source, target = entry.get("source"), entry.get("target")
        else:
            parts = str(entry).split(":")
            source, target = (parts[0], parts[1]) if len(parts) > 1 else (None, parts[0])
        if source and target and (source.startswith((".", "/", "~"))):
            mapping[str(target).rstrip("/")] = (base_dir / Path(source).expanduser()).resolve()
    return mapping


def map_path(value: str, mapping: Mapping[str, Path]) -> str:
    """Replace the longest container-path prefix of `value` with its host path."""
    for container in sorted(mapping, key=len, reverse=True):
        if value == container or value.startswith(container + "/"):
            return str(mapping[container]) + value[len(container):]
    return value


def map_hosts(value: str, service_names: set[str]) -> str:
    """Point compose hostnames (bare, or in URLs) at 127.0.0.1."""
    if value in service_names:
        return "127.0.0.1"
    for name in service_names:
        value = re.sub(rf"(//|@){re.escape(name)}(?=[:/]|$)", r"\g<1>127.0.0.1", value)
    return value


def native_argv(command: list[str]) -> list[str]:
    """Run compose's `python` as this interpreter, so the venv's packages are used."""
    if command and command[0] in ("python", "python3"):
        return [sys.executable, *command[1:]]
    return list(command)


def _command(service: Mapping[str, Any], name: str) -> list[str]:
    native = service.get(NATIVE_KEY) or {}
    command = native.get("command") or service.get("command")
    if isinstance(command, str):
        raise ComposeError(f"{name}: use the exec form (a list) for command; the runner uses no shell")
    if not command:
        raise ComposeError(f"{name}: no command; the native runner cannot run an image's default entrypoint")
    return [str(part) for part in command]


def _health(service: Mapping[str, Any], name: str, mapping: Mapping[str, Path],
            names: set[str]) -> tuple[str | None, list[str] | None]:
    native = service.get(NATIVE_KEY) or {}
    if native.get("health_url"):
        return map_hosts(str(native["health_url"]), names), None
    # x-native.healthcheck replaces the container's (e.g. pg_isready is not on the host's PATH)
    test = (native.get("healthcheck") or service.get("healthcheck") or {}).get("test")
    if not test or test == ["NONE"]:
        return None, None
    if isinstance(test, str) or test[0] != "CMD":
        raise ComposeError(f"{name}: healthcheck must use the [\"CMD\", ...] form; the runner uses no shell")
    args = [str(a) for a in test[1:]]
    if PROBE_MODULE in args and args.index(PROBE_MODULE) + 1 < len(args):
        return map_hosts(args[args.index(PROBE_MODULE) + 1], names), None
    return None, native_argv([map_path(a, mapping) for a in args])


def _start_timeout(service: Mapping[str, Any]) -> float:
    native = service.get(NATIVE_KEY) or {}
    if native.get("start_timeout") is not None:
        return float(native["start_timeout"])
    health = service.get("healthcheck") or {}
    if "start_period" not in health:
        return DEFAULT_START_TIMEOUT
    retries = int(health.get("retries", 3))
    return parse_duration(health.get("start_period")) + retries * parse_duration(health.get("interval", "30s"))


def _restart(service: Mapping[str, Any], name: str) -> str:
    policy = str(service.get("restart") or "no")
    if policy not in ("no", "always", "unless-stopped") and not RESTART_ON_FAILURE.fullmatch(policy):
        raise ComposeError(f"{name}: unknown restart policy {policy!r}")
    return policy


def _watch(service: Mapping[str, Any]) -> HealthWatch:
    health = service.get("healthcheck") or {}
    return HealthWatch(parse_duration(health.get("interval", "30s")) or 30.0, int(health.get("retries", 3)),
                       parse_duration(health.get("start_period", "0s")),
                       parse_duration(health.get("timeout", "30s")) or 30.0)


def _environment(service: Mapping[str, Any], mapping: Mapping[str, Path], names: set[str]) -> dict[str, str]:
    native = service.get(NATIVE_KEY) or {}
    merged = {**(service.get("environment") or {}), **(native.get("environment") or {})}
    env = {}
    for key, value in merged.items():
        if value is None or key in CONTAINER_ONLY_ENV:
            continue
        text = "true" if value is True else "false" if value is False else str(value)
        if key == "BIND_HOST" and text in ANY_ADDRESS:
            text = "127.0.0.1"
        env[key] = map_hosts(map_path(text, mapping), names)
    return env


def native_services(doc: Mapping[str, Any], service_dirs: Mapping[str, Path], base_dir: Path,
                    log_dir: Path) -> dict[str, NativeService]:
    """Build the process specs of every service in an interpolated document."""
    services: Mapping[str, Any] = doc.get("services") or {}
    names = set(services)
    top_native = doc.get(NATIVE_KEY) or {}
    # a service that is embedded natively (x-native.disabled) is neither started nor waited for
    enabled = {n for n, s in services.items() if not (s.get(NATIVE_KEY) or {}).get("disabled")}
    out = {}
    for name, service in services.items():
        if name not in enabled:
            continue
        mapping = path_map(service, top_native, service_dirs.get(name, base_dir))
        health_url, health_argv = _health(service, name, mapping, names)
        out[name] = NativeService(
            name=name,
            argv=native_argv([map_path(map_hosts(a, names), mapping) for a in _command(service, name)]),
            env=_environment(service, mapping, names),
            ports=parse_ports(service),
            depends_on=[dep for dep in service.get("depends_on") or {} if dep in enabled or dep not in names],
            health_url=health_url,
            health_argv=health_argv,
            start_timeout=_start_timeout(service),
            log_path=log_dir / f"{name}.log",
            path_map=mapping,
            restart=_restart(service, name),
            watch=_watch(service),
        )
    return out


def start_order(services: Mapping[str, NativeService]) -> list[str]:
    """Topological order of depends_on (dependencies first); raises on cycles or unknown services."""
    order: list[str] = []
    state: dict[str, str] = {}

    def visit(name: str, chain: tuple[str, ...]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            raise ComposeError(f"depends_on cycle: {' -> '.join((*chain, name))}")
        if name not in services:
            raise ComposeError(f"{chain[-1] if chain else '?'} depends on unknown service {name!r}")
        state[name] = "visiting"
        for dep in services[name].depends_on:
            visit(dep, (*chain, name))
        state[name] = "done"
        order.append(name)

    for name in services:
        visit(name, ())
    return order
