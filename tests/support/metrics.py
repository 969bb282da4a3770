"""Reading a value out of a /metrics page (Prometheus text format)."""

from __future__ import annotations


def metric(text: str, name: str) -> float:
    """The value of the unlabelled sample `name`; fails the test when the page does not have it."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def sample(text: str, name: str, **labels: str) -> float:
    """The value of the sample `name` with exactly these labels; fails the test when the page does not have it."""
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for found in family.samples:
            if found.name == name and found.labels == labels:
                return float(found.value)
    raise AssertionError(f"{name}{labels} not in /metrics")


def exposed_names(text: str) -> set[str]:
    """The metric names on a /metrics page as docs and queries write them (counters with `_total`), request and
    process metrics left out."""
    from prometheus_client.parser import text_string_to_metric_families

    return {family.name + ("_total" if family.type == "counter" else "")
            for family in text_string_to_metric_families(text)
            if not family.name.startswith(("http_request", "process_")) and not family.name.endswith("_created")}


def documented_names(section: str) -> set[str]:
    """The metric names in the first column of the table under `### {section}` in docs/monitoring.md."""
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "monitoring.md").read_text(encoding="utf-8")
    body = text.split(f"\n### {section}\n", 1)[1].split("\n#", 1)[0]
    cells = [line.split("|")[1] for line in body.splitlines() if line.startswith("| `")]
    return {name for cell in cells for name in re.findall(r"`([a-z_:]+)(?:\{[^`]*\})?`", cell)}
