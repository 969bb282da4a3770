"""Reading a value out of a /metrics page (Prometheus text format)."""

from __future__ import annotations


def metric(text: str, name: str) -> float:
    """The value of the unlabelled sample `name`; fails the test when the page does not have it."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")
