"""Locust's statistics as plain JSON, and the RSS and open files of the suite's processes."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import psutil

SHED = "[shed]"
PERCENTILES = {"p50": 0.50, "p95": 0.95, "p99": 0.99}


def write_results(environment: Any, path: str, **meta: Any) -> None:
    """Per endpoint: requests, RPS, p50/p95/p99 (ms), errors (not shedding) and shed answers (503/429)."""
    stats = environment.stats
    endpoints: dict[str, dict[str, Any]] = {}
    duration = max((stats.total.last_request_timestamp or 0) - stats.total.start_time, 1e-9)
    for entry in stats.entries.values():
        route = entry.name.removesuffix(f" {SHED}")
        row = endpoints.setdefault(route, {"requests": 0, "ok": 0, "rps": 0.0, "p50": None, "p95": None,
                                           "p99": None, "errors": 0, "shed": 0, "error_kinds": {}})
        if entry.name.endswith(SHED):
            row["shed"] += entry.num_requests
            continue
        row["requests"] += entry.num_requests
        row["ok"] += entry.num_requests - entry.num_failures
        row["rps"] = round(entry.num_requests / duration, 3)
        if entry.num_requests:
            for key, fraction in PERCENTILES.items():
                row[key] = entry.get_response_time_percentile(fraction)
    for error in stats.errors.values():
        if error.name.endswith(SHED) or str(error.error).startswith(SHED):
            continue
        row = endpoints.setdefault(error.name, {"requests": 0, "ok": 0, "errors": 0, "shed": 0, "error_kinds": {}})
        row["errors"] += error.occurrences
        row["error_kinds"][str(error.error)[:200]] = error.occurrences
    Path(path).write_text(json.dumps({**meta, "duration_s": round(duration, 1), "endpoints": endpoints},
                                     indent=2, sort_keys=True))


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def sample_processes(pids: dict[str, int]) -> dict[str, dict[str, float | int]]:
    """RSS and PSS (MiB) and open file descriptors of each service's process tree, read from /proc via psutil.

    RSS summed over a tree counts a shared page once per process that maps it (PostgreSQL's shared buffers once
    per backend); PSS divides each shared page among its sharers, so the tree's PSS is its real footprint.
    """
    out: dict[str, dict[str, float | int]] = {}
    for name, pid in sorted(pids.items()):
        rss = pss = fds = 0
        for proc in _tree(pid):
            try:
                memory = proc.memory_full_info()
                rss += memory.rss
                pss += memory.pss
                fds += proc.num_fds()
            except psutil.Error:
                continue
        out[name] = {"rss_mib": round(rss / 2**20, 1), "pss_mib": round(pss / 2**20, 1), "fds": fds, "pid": pid,
                     "at": round(time.time(), 1)}
    return out
