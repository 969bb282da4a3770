"""`make load-check`: the short profile against a fresh p3 suite, compared with a stored baseline.

    python -m tests.load.check                 run, compare with tests/load/baseline.json, exit 1 on a regression
    python -m tests.load.check --save --repeat 3   measure the baseline (median of the runs) and its spread

A route regresses when its p50 exceeds the baseline's p50 by more than the margin: the baseline's measured
run-to-run spread of that route's p50, doubled, but at least MIN_MARGIN, plus ABS_SLACK_MS. It also regresses
when it has errors that are not load shedding, or no answered requests at all.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from tests.load.suite import ROOT, Suite, p3_suite, run_locust

BASELINE = ROOT / "tests" / "load" / "baseline.json"
MIN_MARGIN = 0.25
ABS_SLACK_MS = 5.0
SHORT = {"LOAD_SECONDS": "20", "LOAD_USERS": "4", "LOAD_SCENARIOS": "models,search,chat,mcp"}


def measure(env: dict[str, str], timeout: float = 300) -> dict[str, Any]:
    """One short run (LOAD_PROFILE=short) with `env`; its per-endpoint results."""
    with tempfile.TemporaryDirectory() as tmp:
        result = Path(tmp) / "result.json"
        done = run_locust({**env, "LOAD_PROFILE": "short", "LOAD_RESULT_FILE": str(result)}, timeout=timeout)
        if not result.is_file():
            raise RuntimeError(f"locust wrote no results (exit {done.returncode}):\n{done.stderr[-3000:]}")
        return json.loads(result.read_text())


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The median p50/p95 of each route over `runs`, and the spread of its p50 ((max - min) / median)."""
    routes: dict[str, Any] = {}
    for route in runs[0]["endpoints"]:
        p50s = [run["endpoints"][route]["p50"] for run in runs if run["endpoints"].get(route, {}).get("p50")]
        p95s = [run["endpoints"][route]["p95"] for run in runs if run["endpoints"].get(route, {}).get("p95")]
        if not p50s:
            continue
        middle = statistics.median(p50s)
        routes[route] = {"p50": middle, "p95": statistics.median(p95s) if p95s else None, "runs_p50": p50s,
                         "spread": round((max(p50s) - min(p50s)) / middle, 3) if middle else 0.0}
    return {"runs": len(runs), "routes": routes}


def margin(baseline_route: dict[str, Any]) -> float:
    return max(MIN_MARGIN, 2 * baseline_route.get("spread", 0.0))


def compare(baseline: dict[str, Any], run: dict[str, Any]) -> list[str]:
    """Regressions of `run` against `baseline`, one line each; empty when it holds."""
    problems = []
    for route, base in baseline["routes"].items():
        now = run["endpoints"].get(route)
        if not now or not now.get("ok"):
            problems.append(f"{route}: no answered requests")
            continue
        if now["errors"]:
            problems.append(f"{route}: {now['errors']} errors {now['error_kinds']}")
        limit = base["p50"] * (1 + margin(base)) + ABS_SLACK_MS
        if now["p50"] > limit:
            problems.append(f"{route}: p50 {now['p50']} ms > {limit:.0f} ms (baseline {base['p50']} ms, "
                            f"margin {margin(base):.0%} + {ABS_SLACK_MS:.0f} ms)")
    return problems


def measure_suite(suite: Suite, repeat: int) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        env = suite.load_env("short", Path(tmp) / "unused.json", **SHORT)
    return [measure(env) for _ in range(repeat)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, default=BASELINE)
    parser.add_argument("--save", action="store_true", help="store the runs as the new baseline")
    parser.add_argument("--repeat", type=int, default=1, help="short runs to make (their median is compared)")
    args = parser.parse_args(argv)
    if not args.save and not args.baseline.is_file():
        print(f"no baseline at {args.baseline}: make one on this machine with `make load-baseline`")  # noqa: T201
        return 2
    with p3_suite() as suite:
        measure_suite(suite, 1)  # warm-up: model load, first-use caches
        runs = measure_suite(suite, args.repeat)
    summary = summarise(runs)
    if args.save:
        args.baseline.write_text(json.dumps({**summary, "profile": SHORT}, indent=2, sort_keys=True) + "\n")
        for route, row in summary["routes"].items():
            print(f"{route}: p50 {row['p50']} ms, p50 over {len(row['runs_p50'])} runs {row['runs_p50']}, "  # noqa: T201 - a command-line report
                  f"spread {row['spread']:.0%}")
        return 0
    baseline = json.loads(args.baseline.read_text())
    median_run = {"endpoints": {route: {**runs[0]["endpoints"].get(route, {}), "p50": row["p50"]}
                                for route, row in summary["routes"].items()}}
    problems = compare(baseline, median_run)
    for route, row in summary["routes"].items():
        base = baseline["routes"].get(route, {})
        print(f"{route}: p50 {row['p50']} ms (baseline {base.get('p50')} ms)")  # noqa: T201 - a command-line report
    for problem in problems:
        print(f"REGRESSION {problem}")  # noqa: T201 - a command-line report
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
