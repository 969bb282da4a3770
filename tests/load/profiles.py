"""Load shapes: stages of (until_second, users, spawn_rate); `stages_at` is what LoadTestShape.tick returns."""

from __future__ import annotations

import os

Stage = tuple[float, int, float]


def _short() -> list[Stage]:
    """A few users for a few seconds: the run `make load-check` compares with its baseline."""
    seconds = float(os.environ.get("LOAD_SECONDS", "20"))
    users = int(os.environ.get("LOAD_USERS", "4"))
    return [(seconds, users, float(users))]


def _soak() -> list[Stage]:
    minutes = float(os.environ.get("SOAK_MINUTES", "30"))
    users = int(os.environ.get("SOAK_USERS", "8"))
    return [(minutes * 60, users, 1.0)]


PROFILES: dict[str, list[Stage]] = {
    # the original's first profile: one user for two minutes
    "baseline": [(120, 1, 1.0)],
    # then a ramp to 100 users in steps of 20 every 50 s, held for the last 50 s (300 s in all)
    "ramp": [(50, 20, 1.0), (100, 40, 1.0), (150, 60, 1.0), (200, 80, 1.0), (250, 100, 1.0), (300, 100, 1.0)],
}


def profile(name: str) -> list[Stage]:
    if name == "short":
        return _short()
    if name == "soak":
        return _soak()
    return PROFILES[name]


def stages_at(stages: list[Stage], run_time: float) -> tuple[int, float] | None:
    """Users and spawn rate at `run_time`; None once the last stage is over (Locust then stops)."""
    for until, users, rate in stages:
        if run_time < until:
            return users, rate
    return None


def duration(stages: list[Stage]) -> float:
    return stages[-1][0]
