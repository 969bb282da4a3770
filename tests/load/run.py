"""`make load`: a supervised p3 suite, one user for two minutes, then a ramp to 100 users; docs/bench/load.md/json.

    python -m tests.load.run [--out docs/bench] [--profiles baseline,ramp]

Before the first profile, after each, and once more when the run's idle keep-alive connections have closed
("settled"), every service's RSS, PSS and open file descriptors are read from /proc. The "before" figures
follow a warm-up (each scenario once), so model loading and first-use caches are not counted as growth.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from services.common.serve import KEEP_ALIVE_S
from tests.load.profiles import duration, profile
from tests.load.stats import sample_processes
from tests.load.suite import ROOT, Suite, p3_suite, run_locust

RSS_GROWTH_LIMIT = 0.10
SETTLE_S = 5


def run_profile(suite: Suite, name: str, out: Path, **extra: str) -> dict[str, Any]:
    result = out / f"locust-{name}.json"
    started = time.monotonic()
    done = run_locust(suite.load_env(name, result, **extra), timeout=duration(profile(name)) + 240)
    if not result.is_file():
        raise RuntimeError(f"locust ({name}) wrote no results (exit {done.returncode}):\n{done.stderr[-3000:]}")
    stats = json.loads(result.read_text())
    stats["wall_s"] = round(time.monotonic() - started, 1)
    return stats


def growth(before: dict[str, dict], after: dict[str, dict]) -> dict[str, dict[str, float]]:
    out = {}
    for name, first in before.items():
        last = after.get(name)
        if last and first["rss_mib"]:
            out[name] = {"rss": round(last["rss_mib"] / first["rss_mib"] - 1, 4), "fds": last["fds"] - first["fds"]}
            if first.get("pss_mib"):
                out[name]["pss"] = round(last["pss_mib"] / first["pss_mib"] - 1, 4)
    return out


def verdict(report: dict[str, Any]) -> list[str]:
    """What misses the goal: errors other than shedding at 100 users, RSS growth of 10% or more."""
    problems = []
    ramp = report["profiles"].get("ramp")
    if ramp:
        for route, row in ramp["endpoints"].items():
            if row["errors"]:
                problems.append(f"ramp: {route}: {row['errors']} errors {row['error_kinds']}")
    for name, change in report["growth"].items():
        grew = change.get("pss", change["rss"])
        if grew >= RSS_GROWTH_LIMIT:
            problems.append(f"{name}: memory (PSS) grew {grew:.1%} (RSS {change['rss']:.1%})")
    return problems


def render(report: dict[str, Any]) -> str:
    lines = ["# Load test (Locust)", "",
             "Made by `make load` (`python -m tests.load.run`): a native p3 suite started by `ai-suite up p3` on moved",
             "loopback ports in a temporary DATA_DIR, four short documents indexed, a developer MCP key.",
             "Scenarios (tests/load/locustfile.py): short and streamed chat (8 tokens) through the gateway,",
             "`/v1/models`, a conversation (create, chat in it, list its items), RAG `/search` and `/query`, MCP",
             "`list_files`/`read_file` over streamable HTTP. Users wait 0.5-1.5 s between tasks. A 503/429 with",
             "Retry-After is counted as *shed*, the client waits as told (at most 5 s) and tries again; *errors*",
             "are everything else. Latencies are of answers (shed answers are kept apart), streams to `[DONE]`.",
             "", f"Conditions: {report['conditions']}", ""]
    for name, stats in report["profiles"].items():
        lines += [f"## {name}: {report['shapes'][name]}", "",
                  f"{stats['duration_s']} s of load.", "",
                  "| endpoint | requests | RPS | p50 ms | p95 ms | p99 ms | errors | shed |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for route, row in sorted(stats["endpoints"].items()):
            lines.append(f"| `{route}` | {row['requests']} | {row.get('rps', 0)} | {row.get('p50')} | "
                         f"{row.get('p95')} | {row.get('p99')} | {row['errors']} | {row['shed']} |")
        kinds = {k: v for row in stats["endpoints"].values() for k, v in row["error_kinds"].items()}
        if kinds:
            lines += ["", "Errors: " + "; ".join(f"{k} ×{v}" for k, v in kinds.items())]
        lines.append("")
    lines += ["## Processes", "",
              "Memory of each service's process tree: RSS, and PSS (each shared page divided among the processes",
              "that map it; summed RSS counts PostgreSQL's shared buffers once per backend). The goal is judged on",
              "PSS, the tree's real footprint; for a one-process service the two move together. Growth compares",
              f"*before* with *settled*: {KEEP_ALIVE_S + SETTLE_S} s after the last profile, when the clients' idle",
              "keep-alive connections have closed.", "",
              "| service | " + " | ".join(f"RSS / PSS MiB, fds {s}" for s in report["samples"])
              + " | RSS growth | PSS growth |", "|---|" + "---:|" * len(report["samples"]) + "---:|---:|"]
    for name in report["samples"]["before"]:
        cells = [f"{sample.get(name, {}).get('rss_mib')} / {sample.get(name, {}).get('pss_mib')}, "
                 f"{sample.get(name, {}).get('fds')}" for sample in report["samples"].values()]
        change = report["growth"].get(name, {})
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {change.get('rss', 0):.1%} | "
                     f"{change.get('pss', 0):.1%} |")
    problems = report["problems"]
    lines += ["", "## Verdict", "", "Goal: at 100 users no errors other than shedding; memory growth under 10%.",
              "", *(f"- {p}" for p in problems)] if problems else ["", "## Verdict", "",
              "Goal met: at 100 users no errors other than shedding; every service's memory (PSS) grew less than 10%."]
    return "\n".join(lines) + "\n"


def warm_up(suite: Suite, out: Path) -> None:
    run_locust(suite.load_env("short", out / "locust-warmup.json", LOAD_SECONDS="15", LOAD_USERS="2"), timeout=300)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "bench")
    parser.add_argument("--profiles", default="baseline,ramp")
    args = parser.parse_args(argv)
    names = [n for n in args.profiles.split(",") if n]
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="ai-suite-locust-"))
    conditions = (f"{os.cpu_count()} CPUs, load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} at the "
                  f"start, Python {platform.python_version()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    report: dict[str, Any] = {"profiles": {}, "samples": {}, "shapes": {n: profile(n) for n in names},
                              "conditions": conditions}
    with p3_suite() as suite:
        warm_up(suite, work)
        report["samples"]["before"] = sample_processes(suite.pids())
        for name in names:
            report["profiles"][name] = run_profile(suite, name, work)
            report["samples"][f"after {name}"] = sample_processes(suite.pids())
        # the run's idle keep-alive connections close after KEEP_ALIVE_S; what stays after that is growth
        time.sleep(KEEP_ALIVE_S + SETTLE_S)
        report["samples"]["settled"] = sample_processes(suite.pids())
    last = list(report["samples"])[-1]
    report["growth"] = growth(report["samples"]["before"], report["samples"][last])
    report["problems"] = verdict(report)
    (args.out / "load.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    (args.out / "load.md").write_text(render(report))
    print(render(report))  # noqa: T201 - a command-line report
    return 1 if report["problems"] else 0


if __name__ == "__main__":
    sys.exit(main())
