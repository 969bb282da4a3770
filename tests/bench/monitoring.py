"""Monitoring benchmark: what request metrics cost, METRICS_ENABLED on against off, side by side in one run.

Two copies of the chat path (inference and gateway) and of the retrieval path (embedding and rag, sharing one
PostgreSQL with a database each) run at once, the same code and data, one with METRICS_ENABLED=true and one
with false. Rounds alternate between them so the machine's noise hits both alike. While the metrics-on copy is
measured, its four /metrics pages are scraped every 5 s, as Prometheus does. Request ids and the access log are
on in both copies. Writes docs/bench/monitoring.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from services.stack.monitoring import SCRAPE_INTERVAL_S
from tests.bench.measure import bundled_models_dir, percentile
from tests.support.corpus import write_corpus
from tests.support.pg import TestPostgres, private_postgres
from tests.support.procs import ROOT, Service, free_port, python_module

ARMS = ("metrics-on", "metrics-off")
GOAL = 0.97
CHAT = {"model": "chat-7b", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1, "temperature": 0}


def say(message: str) -> None:
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {message}\n")


def url_of(service: Service) -> str:
    return service.health_url.rsplit("/health", 1)[0]


def start_arm(arm: str, phase: int, models_dir: Path, work: Path, pg: TestPostgres, threads: int,
              control: bool = False) -> dict[str, Service]:
    """inference, gateway, embedding and rag of one arm, started and healthy (`control`: metrics off in both)."""
    ports = {name: free_port() for name in ("inference", "gateway", "embedding", "rag")}
    data = work / f"{arm}-{phase}"
    base = {"MODELS_DIR": str(models_dir), "DATA_DIR": str(data), "LOG_JSON": "true", "LOG_LEVEL": "INFO",
            "METRICS_ENABLED": "true" if arm == "metrics-on" and not control else "false"}
    inference = f"http://127.0.0.1:{ports['inference']}/v1"
    specs = {
        "inference": ({"INFERENCE_PORT": ports["inference"], "MODEL_ALIAS": "chat-7b,code-7b", "N_THREADS": threads},
                      "services.inference", "/health"),
        "gateway": ({"API_GATEWAY_PORT": ports["gateway"], "CHAT_API_BASE": inference, "CODE_API_BASE": inference,
                     "GATEWAY_ENGINE": "fast"}, "services.gateway", "/health"),
        # Both vector caches off: every search embeds its query in the embedding service (one of the two
        # instrumented services the search passes), as a new question does; only retrieval would run otherwise.
        "embedding": ({"EMBEDDING_PORT": ports["embedding"], "EMBEDDING_THREADS": threads,
                       "EMBEDDING_CACHE": "false"}, "services.embedding", "/health"),
        "rag": ({"RAG_PORT": ports["rag"], "DATABASE_URL": pg.database(arm.replace("-", "_")),
                 "EMBEDDING_URL": f"http://127.0.0.1:{ports['embedding']}",
                 "GATEWAY_URL": f"http://127.0.0.1:{ports['gateway']}", "DOCUMENTS_DIR": str(work / "documents"),
                 "QDRANT_PATH": str(data / "vectors"), "RAG_QUERY_CACHE_ENTRIES": 0}, "services.rag", "/health"),
    }
    started: dict[str, Service] = {}
    for name, (env, module, health) in specs.items():
        service = Service(f"{arm}-{name}", python_module(module), {**base, **{k: str(v) for k, v in env.items()}},
                          f"http://127.0.0.1:{ports[name]}{health}", data / f"{name}.log")
        started[name] = service.start(deadline_s=180)
    return started


class Scraper:
    """GETs every /metrics page of the metrics-on arm every SCRAPE_INTERVAL_S while `active` is set."""

    def __init__(self, urls: list[str]) -> None:
        self.urls = urls
        self.active = threading.Event()
        self.stopped = threading.Event()
        self.scrapes = 0
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=5, trust_env=False) as client:
            while not self.stopped.is_set():
                if self.active.wait(0.1):
                    for url in self.urls:
                        client.get(f"{url}/metrics").raise_for_status()
                        self.scrapes += 1
                    self.stopped.wait(SCRAPE_INTERVAL_S)


def block(call: Callable[[], float], calls: int) -> tuple[float, list[float]]:
    """`calls` calls back to back: calls per second, and each call's latency."""
    start = time.perf_counter()
    latencies = [call() for _ in range(calls)]
    return calls / (time.perf_counter() - start), latencies


def timed(client: httpx.Client, path: str, body: dict) -> float:
    start = time.perf_counter()
    response = client.post(path, json=body)
    elapsed = time.perf_counter() - start
    response.raise_for_status()
    return elapsed


Samples = tuple[dict[str, list[float]], dict[str, list[float]]]  # block rates, call latencies; by arm


def alternate(calls: dict[str, Callable[[], float]], scraper: Scraper, blocks: int, per_block: int) -> Samples:
    """Short blocks that alternate between the arms (which goes first alternates too).

    On a machine that other work shares, the load changes from second to second; blocks of a fraction of a
    second, paired one on one off, see the same load, and the median of their ratios cancels it.
    """
    for call in calls.values():  # warm-up: caches, connections, the model's first prompt
        block(call, per_block)
    rates: dict[str, list[float]] = {arm: [] for arm in ARMS}
    latencies: dict[str, list[float]] = {arm: [] for arm in ARMS}
    for i in range(blocks):
        for arm in ARMS[i % 2:] + ARMS[: i % 2]:
            if arm == "metrics-on":
                scraper.active.set()
            rate, lat = block(calls[arm], per_block)
            scraper.active.clear()
            rates[arm].append(rate)
            latencies[arm] += lat
    return rates, latencies


def summarise(phases: list[Samples], per_block: int) -> dict:
    """Medians over every phase's blocks; the paired ratio pools the blocks of all phases."""
    paired = [on / off for rates, _ in phases
              for on, off in zip(rates["metrics-on"], rates["metrics-off"], strict=True)]
    result: dict = {"paired_ratio_median": round(statistics.median(paired), 4),
                    "paired_ratio_quartiles": [round(percentile(paired, 25), 4), round(percentile(paired, 75), 4)],
                    "paired_ratio_by_phase": [round(statistics.median([a / b for a, b in zip(
                        rates["metrics-on"], rates["metrics-off"], strict=True)]), 4) for rates, _ in phases],
                    "blocks": len(paired), "per_block": per_block}
    for arm in ARMS:
        ms = [v * 1000 for _, latencies in phases for v in latencies[arm]]
        rates = [r for block_rates, _ in phases for r in block_rates[arm]]
        result[arm] = {"per_s_median": round(statistics.median(rates), 2), "p50_ms": round(statistics.median(ms), 2),
                       "p95_ms": round(percentile(ms, 95), 2), "calls": len(ms)}
    result["ratio_of_medians"] = round(result["metrics-on"]["per_s_median"] / result["metrics-off"]["per_s_median"],
                                       4)
    return result


def in_process_cost(blocks: int, per_block: int) -> dict:
    """Microseconds per request of a small JSON route under the shared middleware, metrics on against off.

    The app is called directly as ASGI (no socket, no client), so the difference is the instrumentation alone.
    """
    import asyncio

    from fastapi import FastAPI

    from services.common.app_factory import harden
    from services.common.settings import SuiteSettings

    def app(enabled: bool) -> FastAPI:
        built = FastAPI()
        harden(built, SuiteSettings(_env_file=None, METRICS_ENABLED=enabled))  # type: ignore[call-arg]

        @built.get("/ping")
        async def ping() -> dict:
            return {"ok": True}

        return built

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": "/ping", "raw_path": b"/ping", "query_string": b"", "root_path": "",
             "headers": [(b"host", b"bench")], "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}

    async def receive() -> dict:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict) -> None:
        return None

    async def block(target: FastAPI) -> float:
        start = time.perf_counter()
        for _ in range(per_block):
            await target(dict(scope), receive, send)
        return (time.perf_counter() - start) / per_block * 1e6

    async def measure() -> dict[str, list[float]]:
        apps = {"metrics-on": app(True), "metrics-off": app(False)}
        for target in apps.values():
            await block(target)  # warm-up
        times: dict[str, list[float]] = {arm: [] for arm in ARMS}
        for i in range(blocks):
            for arm in ARMS[i % 2:] + ARMS[: i % 2]:
                times[arm].append(await block(apps[arm]))
        return times

    # the access log line is written in both; here it goes nowhere, so only the metrics differ
    logging.getLogger("services.access").disabled = True
    times = asyncio.run(measure())
    on, off = statistics.median(times["metrics-on"]), statistics.median(times["metrics-off"])
    return {"metrics-on_us": round(on, 1), "metrics-off_us": round(off, 1), "added_us": round(on - off, 1),
            "blocks": blocks, "per_block": per_block}


def measure_phase(phase: int, control: bool, args: argparse.Namespace, models_dir: Path, work: Path,
                  pg: TestPostgres) -> tuple[Samples, Samples, int]:
    """Start both copies (the other one first in every other phase), measure both paths, stop them."""
    arms: dict[str, dict[str, Service]] = {}
    try:
        for arm in ARMS if phase % 2 == 0 else ARMS[::-1]:
            say(f"phase {phase + 1}{' (control)' if control else ''}: starting {arm}")
            arms[arm] = start_arm(arm, phase, models_dir, work, pg, args.threads, control)
        scraper = Scraper([] if control else [url_of(s) for s in arms["metrics-on"].values()])
        scraper.thread.start()
        clients = {arm: {name: httpx.Client(base_url=url_of(s), timeout=120, trust_env=False)
                         for name, s in services.items()} for arm, services in arms.items()}
        for arm in ARMS:
            clients[arm]["rag"].post("/index", json={"collection": "bench"}).raise_for_status()
        query = {"query": "How do I read a file in Python?", "collection": "bench", "top_k": 5}
        say(f"phase {phase + 1}: 1-token chat through the gateway")
        chat = alternate({arm: (lambda c=clients[arm]["gateway"]: timed(c, "/v1/chat/completions", CHAT))
                          for arm in ARMS}, scraper, args.blocks, args.chat_calls)
        say(f"phase {phase + 1}: RAG /search")
        search = alternate({arm: (lambda c=clients[arm]["rag"]: timed(c, "/search", query)) for arm in ARMS},
                           scraper, args.blocks, args.search_calls)
        scraper.stopped.set()
        for per_arm in clients.values():
            for client in per_arm.values():
                client.close()
        return chat, search, scraper.scrapes
    finally:
        for services in arms.values():
            for service in services.values():
                service.stop()


def run(args: argparse.Namespace, models_dir: Path, work: Path) -> dict:
    write_corpus(work / "documents")
    pg = private_postgres()
    samples: dict[bool, tuple[list[Samples], list[Samples]]] = {False: ([], []), True: ([], [])}
    scrapes = 0
    plan = [(phase, False) for phase in range(args.phases)]
    plan += [(args.phases + phase, True) for phase in range(args.control_phases)]
    try:
        for phase, control in plan:
            chat, search, scraped = measure_phase(phase, control, args, models_dir, work, pg)
            samples[control][0].append(chat)
            samples[control][1].append(search)
            scrapes += scraped
    finally:
        pg.stop()
        shutil.rmtree(pg.folder.parent, ignore_errors=True)
    say("in process")
    result = {"chat": summarise(samples[False][0], args.chat_calls),
              "search": summarise(samples[False][1], args.search_calls), "scrapes": scrapes,
              "in_process": in_process_cost(41, 500)}
    if args.control_phases:
        result["control"] = {"chat": summarise(samples[True][0], args.chat_calls),
                             "search": summarise(samples[True][1], args.search_calls)}
    return result


def table(result: dict, unit: str) -> list[str]:
    lines = [f"| instrumentation | {unit}/s (median of blocks) | p50 ms | p95 ms | calls |", "|---|---|---|---|---|"]
    for arm in ARMS:
        row = result[arm]
        lines.append(f"| {arm} | {row['per_s_median']} | {row['p50_ms']} | {row['p95_ms']} | {row['calls']} |")
    return lines


def verdict(result: dict, control: dict | None) -> list[str]:
    ratio = result["paired_ratio_median"]
    low, high = result["paired_ratio_quartiles"]
    phases = ", ".join(f"{r:.1%}" for r in result["paired_ratio_by_phase"])
    lines = [f"- Throughput with metrics on is **{ratio:.1%}** of metrics off (median of {result['blocks']} paired "
             f"blocks of {result['per_block']} calls, half of them between {low:.1%} and {high:.1%}; by phase "
             f"{phases}; the ratio of the medians is {result['ratio_of_medians']:.1%}); goal at least {GOAL:.0%}: "
             f"{'met' if ratio >= GOAL else 'NOT met'}."]
    if control is not None:
        control_phases = ", ".join(f"{r:.1%}" for r in control["paired_ratio_by_phase"])
        lines.append(f"- Control, metrics off in both copies: the first copy ran at "
                     f"{control['paired_ratio_median']:.1%} of the second (by phase {control_phases}). "
                     "Differences inside this spread are the machine's noise, not the metrics.")
    return lines


def write_report(result: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "monitoring.json").write_text(json.dumps(result, indent=2) + "\n")
    machine = result["machine"]
    lines = [
        "# Monitoring benchmark: the cost of request metrics",
        "",
        f"Run {result['date']} on {machine['cpus']} CPU cores ({machine['platform']}), a machine shared with "
        f"other work (load average {machine['load_average_at_start']} at the start, "
        f"{machine['load_average_at_end']} at the end). Two copies of each path ran at once, one with "
        "`METRICS_ENABLED=true` and one with `false`; short blocks of calls alternated between them (closed "
        f"loop, one client), so that both saw the same load. There were {result['settings']['phases']} phases, "
        "each with fresh copies started in the other order, so that neither setting kept a lucky copy; then "
        f"{result['settings']['control_phases']} control phases with metrics off in both copies. While the "
        f"metrics-on copy was measured its four `/metrics` pages were scraped every {SCRAPE_INTERVAL_S} s "
        f"({result['scrapes']} scrapes in all). Request ids and the JSON access log were on in both copies.",
        "",
        "## A 1-token chat completion through the gateway (gateway and inference instrumented)",
        "",
        *table(result["chat"], "requests"),
        "",
        *verdict(result["chat"], (result.get("control") or {}).get("chat")),
        "",
        "## RAG `/search`, top 5, hybrid (rag and embedding instrumented; the query-vector caches of both off, "
        "so every search embeds its query, then runs dense, BM25 and fusion)",
        "",
        *table(result["search"], "searches"),
        "",
        *verdict(result["search"], (result.get("control") or {}).get("search")),
        "",
        "## The same middleware in process",
        "",
        f"A small JSON route called as ASGI, no socket: {result['in_process']['metrics-on_us']} µs per request "
        f"with metrics on and {result['in_process']['metrics-off_us']} µs with metrics off, so metrics add "
        f"**{result['in_process']['added_us']} µs per request and service** (median of "
        f"{result['in_process']['blocks']} alternating blocks of {result['in_process']['per_block']} requests). "
        "A chat completion passes two instrumented services, a search two (rag and embedding).",
        "",
        "Metrics on means: the shared request middleware on every request (`http_requests_total` and "
        "`http_request_duration_seconds` by handler template), the process collector, and `/metrics` served to "
        "the scraper. The domain metrics (`rag_*`, `embedding_*`) are updated in both copies; with metrics off "
        "nothing reads them. prometheus-fastapi-instrumentator, which the services used before, cost 165 µs per "
        "request in process on the same machine (and 33 µs the middleware that replaced it, measured in the same "
        "way), because it matched each request against the routes a second time and kept six series per request.",
        "",
    ]
    (out / "monitoring.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.monitoring", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phases", type=int, default=2,
                        help="fresh copies per phase, started in the other order each time (cancels a copy's luck)")
    parser.add_argument("--blocks", type=int, default=60, help="alternating blocks per path, copy and phase")
    parser.add_argument("--chat-calls", type=int, default=20, help="chat completions per block")
    parser.add_argument("--search-calls", type=int, default=8, help="searches per block")
    parser.add_argument("--threads", type=int, default=1, help="N_THREADS and EMBEDDING_THREADS of each copy")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "bench")
    parser.add_argument("--render", type=Path, metavar="JSON", help="write the markdown from an earlier run's JSON")
    parser.add_argument("--control-phases", type=int, default=2,
                        help="phases with metrics off in both copies: how far two identical copies differ")
    args = parser.parse_args()
    if args.render:
        write_report(json.loads(args.render.read_text()), args.out)
        return
    # A SIGTERM (from `timeout`, say) must still run the `finally` blocks that stop the processes.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    models_dir = bundled_models_dir()
    load_before = [round(x, 2) for x in os.getloadavg()]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ai-suite-bench-monitoring-") as tmp:
        results = run(args, models_dir, Path(tmp))
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "load_average_at_start": load_before,
                    "load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
        "duration_s": round(time.perf_counter() - started, 1),
        "settings": {"phases": args.phases, "control_phases": args.control_phases, "blocks": args.blocks,
                     "chat_calls": args.chat_calls, "search_calls": args.search_calls, "threads": args.threads},
        **results,
    }
    write_report(result, args.out)
    sys.stdout.write(f"wrote {args.out / 'monitoring.md'} and {args.out / 'monitoring.json'}\n")


if __name__ == "__main__":
    main()
