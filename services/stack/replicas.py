"""Replicas of an inference service for the native runner (`ai-suite up p2 --replicas inference-chat=2`).

A replica is a copy of the service on the next port no other service of the stack uses, registered with the
gateway through CHAT_API_BASES / CODE_API_BASES wherever the gateway's CHAT_API_BASE / CODE_API_BASE points at
the original, so the gateway spreads requests over all of them.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Collection, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from services.stack.native import parse_ports

REGISTERED = ("CHAT_API_BASE", "CODE_API_BASE")  # each one's extra backends go in the same name plus S
MAX_REPLICAS = 16
_SPEC = re.compile(r"([a-z0-9][a-z0-9_-]*)=([0-9]+)")
_RECORDED = re.compile(r"(.+)-([0-9]+)")  # replica_name's shape


class ReplicaError(ValueError):
    """A --replicas value that cannot be applied; the message says why."""


def parse_replicas(specs: Iterable[str]) -> dict[str, int]:
    """`SERVICE=N` values -> {service: N}."""
    counts: dict[str, int] = {}
    for spec in specs:
        match = _SPEC.fullmatch(spec.strip())
        if not match:
            raise ReplicaError(f"--replicas {spec!r}: write SERVICE=N, e.g. inference-chat=2")
        count = int(match.group(2))
        if not 1 <= count <= MAX_REPLICAS:
            raise ReplicaError(f"--replicas {spec!r}: N must be 1 to {MAX_REPLICAS}")
        counts[match.group(1)] = count
    return counts


def replica_name(service: str, index: int) -> str:
    return f"{service}-{index}"


def recorded_replicas(names: Iterable[str], services: Collection[str]) -> dict[str, int]:
    """{service: N} for the replicas among `names` (those a start recorded), so that a later `status`, `stop`
    or `down` knows the same services that `up --replicas` started."""
    counts: dict[str, int] = {}
    for name in names:
        match = _RECORDED.fullmatch(name)
        if match and name not in services and match.group(1) in services:
            index = min(int(match.group(2)), MAX_REPLICAS)
            counts[match.group(1)] = max(counts.get(match.group(1), 1), index)
    return counts


def _swap_port(value: Any, old: int, new: int) -> Any:
    pattern = re.compile(rf"(?<![0-9]){old}(?![0-9])")
    if isinstance(value, str):
        return pattern.sub(str(new), value)
    if isinstance(value, int) and not isinstance(value, bool) and value == old:
        return new
    if isinstance(value, list):
        return [_swap_port(v, old, new) for v in value]
    if isinstance(value, dict):
        return {k: _swap_port(v, old, new) for k, v in value.items()}
    return value


def add_replicas(doc: dict[str, Any], counts: Mapping[str, int]) -> list[str]:
    """Add the replicas to an interpolated compose document in place; returns their names."""
    services: dict[str, Any] = doc.get("services") or {}
    used = {p.port for s in services.values() for p in parse_ports(s)}
    added = []
    for name, count in counts.items():
        if name not in services:
            raise ReplicaError(f"--replicas: no service {name!r} in this phase ({', '.join(sorted(services))})")
        ports = parse_ports(services[name])
        if count > 1 and not ports:
            raise ReplicaError(f"--replicas: {name} publishes no port, so a replica cannot be reached")
        port = ports[0].port if ports else 0
        candidate = port
        for index in range(2, count + 1):
            candidate += 1
            while candidate in used:
                candidate += 1
            if candidate > 65535:
                raise ReplicaError(f"--replicas: no free port above {port} for {name}")
            used.add(candidate)
            replica = replica_name(name, index)
            service = _swap_port(copy.deepcopy(services[name]), port, candidate)
            env = service.get("environment") or {}
            for key, value in env.items():  # the replica's own log file
                if isinstance(value, str) and value.endswith(f"/{name}.log"):
                    env[key] = value[: -len(f"{name}.log")] + f"{replica}.log"
            service.pop("container_name", None)
            services[replica] = service
            _register(services, name, replica, candidate)
            added.append(replica)
    return added


def _register(services: dict[str, Any], original: str, replica: str, port: int) -> None:
    """Append the replica to every CHAT_API_BASES / CODE_API_BASES whose single base names the original."""
    for service in services.values():
        env = service.get("environment")
        if not isinstance(env, dict):
            continue
        for key in REGISTERED:
            base = env.get(key)
            if not isinstance(base, str) or urlsplit(base).hostname != original:
                continue
            parts = urlsplit(base)
            url = urlunsplit((parts.scheme, f"{replica}:{port}", parts.path, "", ""))
            current = str(env.get(f"{key}S") or "").strip()
            env[f"{key}S"] = f"{current},{url}" if current else url
