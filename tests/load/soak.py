"""`make soak`: mixed load on a supervised p3 suite for SOAK_MINUTES (default 30); fails on a leak.

Every SOAK_SAMPLE_S seconds (default 60) it reads each service's RSS and open file descriptors (its whole
process tree, from /proc), and Locust's running p50 of all routes. The leak rule, per service, over the samples
of the last two thirds of the run (the first third is warm-up): the least-squares line through them
rises by more than RSS_LEAK_MIB (32 MiB) *and* more than RSS_LEAK_FRACTION (5%) of its mean RSS across that
window, or by more than FD_LEAK (16) file descriptors. Latency drift: the median p50 of the last third more than
LATENCY_DRIFT (2x) that of the middle third. The report goes to docs/bench/soak.md and soak.json
(SOAK_OUT to put it elsewhere).
"""

from __future__ import annotations

import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.load.stats import sample_processes
from tests.load.suite import ROOT, p3_suite

RSS_LEAK_MIB = 32.0
RSS_LEAK_FRACTION = 0.05
FD_LEAK = 16
LATENCY_DRIFT = 2.0


def slope(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (x, y) points (0 for fewer than two distinct x)."""
    if len(points) < 2:
        return 0.0
    mean_x = statistics.fmean(x for x, _ in points)
    mean_y = statistics.fmean(y for _, y in points)
    spread = sum((x - mean_x) ** 2 for x, _ in points)
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / spread if spread else 0.0


def leaks(samples: list[dict[str, Any]], run_s: float) -> tuple[dict[str, dict[str, float]], list[str]]:
    """Per service: the fitted RSS and fd growth over the last two thirds; and the services that leak."""
    window = [s for s in samples if s["t"] >= run_s / 3]
    span = (window[-1]["t"] - window[0]["t"]) if len(window) > 1 else 0.0
    fits: dict[str, dict[str, float]] = {}
    problems = []
    for name in samples[0]["services"]:
        rss = [(s["t"], s["services"][name]["rss_mib"]) for s in window if name in s["services"]]
        fds = [(s["t"], s["services"][name]["fds"]) for s in window if name in s["services"]]
        if not rss:
            continue
        mean = statistics.fmean(y for _, y in rss)
        fit = {"rss_growth_mib": round(slope(rss) * span, 1), "rss_mean_mib": round(mean, 1),
               "fd_growth": round(slope(fds) * span, 1)}
        fits[name] = fit
        if fit["rss_growth_mib"] > RSS_LEAK_MIB and fit["rss_growth_mib"] > RSS_LEAK_FRACTION * mean:
            problems.append(f"{name}: RSS rises {fit['rss_growth_mib']} MiB over the last two thirds "
                            f"(mean {fit['rss_mean_mib']} MiB)")
        if fit["fd_growth"] > FD_LEAK:
            problems.append(f"{name}: open files rise by {fit['fd_growth']} over the last two thirds")
    return fits, problems


def latency_by_minute(history: Path) -> list[tuple[float, float]]:
    """(seconds into the run, p50 ms of all routes) from Locust's --csv-full-history file."""
    rows: list[tuple[float, float]] = []
    if not history.is_file():
        return rows
    with history.open() as handle:
        reader = csv.DictReader(handle)
        for row in reader:
            if row.get("Name") == "Aggregated" and row.get("50%") not in (None, "", "N/A"):
                rows.append((float(row["Timestamp"]), float(row["50%"])))
    if not rows:
        return rows
    start = rows[0][0]
    return [(t - start, p50) for t, p50 in rows]


def drift(latencies: list[tuple[float, float]], run_s: float) -> tuple[float | None, float | None]:
    middle = [p for t, p in latencies if run_s / 3 <= t < 2 * run_s / 3 and p > 0]
    last = [p for t, p in latencies if t >= 2 * run_s / 3 and p > 0]
    return (statistics.median(middle) if middle else None, statistics.median(last) if last else None)


def main() -> int:
    minutes = float(os.environ.get("SOAK_MINUTES", "30"))
    every = float(os.environ.get("SOAK_SAMPLE_S", "60"))
    out = Path(os.environ.get("SOAK_OUT", ROOT / "docs" / "bench"))
    run_s = minutes * 60
    samples: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp, p3_suite() as suite:
        result = Path(tmp) / "soak.json"
        env = suite.load_env("soak", result)
        argv = [sys.executable, "-m", "locust", "-f", str(Path(__file__).with_name("locustfile.py")), "--headless",
                "--only-summary", "--loglevel", "WARNING", "--stop-timeout", "30", "--csv", str(Path(tmp) / "soak"),
                "--csv-full-history"]
        started = time.monotonic()
        locust = subprocess.Popen(argv, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  text=True)
        try:
            while locust.poll() is None:
                samples.append({"t": round(time.monotonic() - started, 1), "services": sample_processes(suite.pids())})
                print(f"[soak] {samples[-1]['t']:.0f} s: " + ", ".join(  # noqa: T201 - a command-line report
                    f"{n} {v['rss_mib']} MiB/{v['fds']} fds" for n, v in samples[-1]["services"].items()), flush=True)
                deadline = time.monotonic() + every
                while locust.poll() is None and time.monotonic() < deadline:
                    time.sleep(1)
        finally:
            if locust.poll() is None:
                locust.terminate()
            _, err = locust.communicate(timeout=120)
        samples.append({"t": round(time.monotonic() - started, 1), "services": sample_processes(suite.pids())})
        stats: dict[str, Any] = (json.loads(result.read_text()) if result.is_file()
                                 else {"endpoints": {}, "stderr": err[-2000:]})
        latencies = latency_by_minute(Path(tmp) / "soak_stats_history.csv")
    fits, problems = leaks(samples, run_s)
    middle, last = drift(latencies, run_s)
    if middle and last and last > LATENCY_DRIFT * middle:
        problems.append(f"latency drift: p50 {last:.0f} ms in the last third against {middle:.0f} ms before")
    errors = {route: row["errors"] for route, row in stats["endpoints"].items() if row["errors"]}
    if errors:
        problems.append(f"errors other than shedding: {errors}")
    report = {"minutes": minutes, "sample_s": every, "users": int(os.environ.get("SOAK_USERS", "8")),
              "samples": samples, "fits": fits, "latency_p50": latencies, "p50_middle_third": middle,
              "p50_last_third": last, "endpoints": stats["endpoints"], "problems": problems}
    out.mkdir(parents=True, exist_ok=True)
    (out / "soak.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [f"# Soak: {minutes:g} minutes, {report['users']} users, samples every {every:g} s", "",
             "Made by `make soak` (tests/load/soak.py); rules in its docstring.", "",
             "| service | RSS first MiB | RSS last MiB | fitted RSS growth (last 2/3) MiB | fds first | fds last | "
             "fitted fd growth |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name, fit in fits.items():
        first, final = samples[0]["services"].get(name, {}), samples[-1]["services"].get(name, {})
        lines.append(f"| {name} | {first.get('rss_mib')} | {final.get('rss_mib')} | {fit['rss_growth_mib']} | "
                     f"{first.get('fds')} | {final.get('fds')} | {fit['fd_growth']} |")
    lines += ["", f"p50 of all routes: {middle} ms in the middle third, {last} ms in the last third.", "",
              "| endpoint | requests | p50 | p95 | p99 | errors | shed |", "|---|---:|---:|---:|---:|---:|---:|"]
    for route, row in sorted(stats["endpoints"].items()):
        lines.append(f"| `{route}` | {row['requests']} | {row.get('p50')} | {row.get('p95')} | {row.get('p99')} | "
                     f"{row['errors']} | {row['shed']} |")
    lines += ["", "Verdict: " + ("; ".join(problems) if problems else "no leak, no drift, no errors.")]
    (out / "soak.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))  # noqa: T201 - a command-line report
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
