"""Caches and parallel tools: the embedding service with its vector cache cold, warm in memory and warm from disk
after a restart (beside the cache switched off), and 8 slow MCP tool calls one after another against all at once.

Run with `python -m tests.bench.caches`; writes docs/bench/caches.{json,md}. Each round runs every variant in
turn, so the machine's other load hits them alike; the report gives medians and ratios from the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from fastmcp import Client

from services.embedding.app import create_app
from services.embedding.engine import EmbeddingEngine
from services.embedding.settings import EmbeddingSettings
from services.mcp_server.server import create_mcp
from services.mcp_server.settings import McpSettings
from tests.bench.embedding import make_texts
from tests.bench.measure import bundled_models_dir
from tests.support.asgi import in_process, wait_ready
from tests.support.procs import ROOT
from tests.support.slow_http import slow_server

OUT = ROOT / "docs" / "bench"
BATCH = 64  # texts per request, as RAG indexing sends them
CHROMIUM = Path("/usr/bin/chromium")


def load_average() -> str:
    try:
        return " ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "unknown"


async def embed_all(client: httpx.AsyncClient, texts: list[str]) -> None:
    for start in range(0, len(texts), BATCH):
        response = await client.post("/embed", json={"texts": texts[start:start + BATCH]})
        response.raise_for_status()


async def embedding_round(models_dir: Path, engine: EmbeddingEngine, texts: list[str]) -> dict[str, float]:
    """Seconds to embed `texts`: cache off, cold, warm (memory), and after a restart (disk only)."""
    times: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-caches-") as data:
        def settings(**env: Any) -> EmbeddingSettings:
            return EmbeddingSettings(_env_file=None, MODELS_DIR=models_dir, DATA_DIR=data, **env)  # type: ignore[arg-type]

        async def timed(key: str, config: EmbeddingSettings, runs: tuple[str, ...]) -> None:
            async with in_process(create_app(config, loader=lambda _: engine), "http://embedding") as client:
                await wait_ready(client)
                for name in runs:
                    started = time.perf_counter()
                    await embed_all(client, texts)
                    times[name] = time.perf_counter() - started

        await timed("off", settings(EMBEDDING_CACHE=False), ("off",))
        await timed("cold", settings(), ("cold", "memory"))
        await timed("disk", settings(), ("disk",))  # a restart: empty memory tier, the same DATA_DIR
    return times


async def embedding_bench(rounds: int, count: int) -> dict[str, Any]:
    models_dir = bundled_models_dir()
    engine = EmbeddingEngine.load(EmbeddingSettings(_env_file=None, MODELS_DIR=models_dir))  # type: ignore[call-arg]
    texts = make_texts(count)
    samples: dict[str, list[float]] = {}
    for _ in range(rounds):
        for name, seconds in (await embedding_round(models_dir, engine, texts)).items():
            samples.setdefault(name, []).append(seconds)
    medians = {name: statistics.median(values) for name, values in samples.items()}
    return {
        "texts": count, "batch": BATCH, "rounds": rounds,
        "median_ms": {name: round(value * 1000, 1) for name, value in medians.items()},
        "texts_per_s": {name: round(count / value, 1) for name, value in medians.items()},
        "speedup_memory": round(medians["cold"] / medians["memory"], 1),
        "speedup_disk": round(medians["cold"] / medians["disk"], 1),
        "cold_vs_off": round(medians["cold"] / medians["off"], 3),
    }


async def tool_round(settings: McpSettings, families: list[str], tool: str, args: dict[str, Any],
                     calls: int) -> dict[str, float]:
    mcp = create_mcp(settings, families=families)
    async with Client(mcp) as client:
        await client.call_tool(tool, args)  # warm-up: the browser starts, connections open

        async def timed(make: Callable[[], Awaitable[Any]]) -> float:
            started = time.perf_counter()
            await make()
            return time.perf_counter() - started

        async def one_after_another() -> None:
            for _ in range(calls):
                await client.call_tool(tool, args)

        async def all_at_once() -> None:
            await asyncio.gather(*(client.call_tool(tool, args) for _ in range(calls)))

        return {"sequential": await timed(one_after_another), "concurrent": await timed(all_at_once)}


async def tools_bench(rounds: int, calls: int, delay_s: float) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with slow_server(delay_s) as (host, counter), tempfile.TemporaryDirectory(prefix="bench-tools-") as data:
        settings = McpSettings(_env_file=None, DATA_DIR=data, MCP_ALLOWED_ROOTS=data,  # type: ignore[call-arg]
                               RAG_URL=f"http://{host}", WEB_ALLOWED_HOSTS=host, WEB_TIMEOUT=60,
                               CHROMIUM_PATH=CHROMIUM, RATE_LIMIT_TOOLS="{}")
        cases = [("rag_query", ["rag"], {"question": "slow?"})]
        if CHROMIUM.is_file():
            cases.append(("web_scrape", ["web"], {"url": f"http://{host}/slow"}))
        for tool, families, args in cases:
            samples: dict[str, list[float]] = {"sequential": [], "concurrent": []}
            counter.most = 0
            for _ in range(rounds):
                for name, seconds in (await tool_round(settings, families, tool, args, calls)).items():
                    samples[name].append(seconds)
            medians = {name: statistics.median(values) for name, values in samples.items()}
            results[tool] = {
                "median_s": {name: round(value, 2) for name, value in medians.items()},
                "speedup": round(medians["sequential"] / medians["concurrent"], 2),
                "most_in_flight": counter.most,
            }
    return {"calls": calls, "delay_s": delay_s, "rounds": rounds, "tools": results}


def markdown(report: dict[str, Any]) -> str:
    emb, tools = report["embedding"], report["tools"]
    ms, rate = emb["median_ms"], emb["texts_per_s"]
    lines = [
        "# Caches and parallel tools",
        "",
        f"Measured {report['when']} on {report['machine']} (load average at the start: {report['load_before']}, "
        f"at the end: {report['load_after']}; the machine was shared with other work, so compare the ratios, "
        "which come from the same run). `python -m tests.bench.caches`.",
        "",
        f"## Embedding cache ({emb['texts']} sentence-sized texts, {emb['batch']} per request, median of "
        f"{emb['rounds']} rounds, in process)",
        "",
        "| variant | time | texts/s |",
        "|---|---|---|",
        f"| cache off | {ms['off']:.0f} ms | {rate['off']:.0f} |",
        f"| cold (every text misses, vectors written to memory and disk) | {ms['cold']:.0f} ms | {rate['cold']:.0f} |",
        f"| warm, memory tier | {ms['memory']:.0f} ms | {rate['memory']:.0f} |",
        f"| warm, disk tier after a restart | {ms['disk']:.0f} ms | {rate['disk']:.0f} |",
        "",
        f"Repeated texts: **{emb['speedup_memory']}x** faster from memory, **{emb['speedup_disk']}x** from disk after "
        f"a restart. A cold pass costs {emb['cold_vs_off']}x the time of no cache (hashing and writing).",
        "",
        f"## Parallel tools ({tools['calls']} calls of a tool whose loopback server takes {tools['delay_s']:g} s, "
        f"median of {tools['rounds']} rounds, one client)",
        "",
        "| tool | one after another | all at once | speed-up | most requests the server held at once |",
        "|---|---|---|---|---|",
    ]
    for tool, row in tools["tools"].items():
        lines.append(f"| `{tool}` | {row['median_s']['sequential']:.2f} s | {row['median_s']['concurrent']:.2f} s | "
                     f"{row['speedup']}x | {row['most_in_flight']} |")
    lines += ["", "The last column counts the requests the slow server held at the same moment: 8 means no call "
              "waited for another. Time above one delay is the calls' own work (for `web_scrape`, a browser "
              "context and page each, which is CPU-bound and shares the machine's cores)."]
    return "\n".join(lines) + "\n"


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    report: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}",
        "load_before": load_average(),
    }
    report["embedding"] = await embedding_bench(args.rounds, args.texts)
    report["tools"] = await tools_bench(args.rounds, args.calls, args.delay)
    report["load_after"] = load_average()
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--texts", type=int, default=512)
    parser.add_argument("--calls", type=int, default=8)
    parser.add_argument("--delay", type=float, default=1.0, help="seconds the slow server takes per request")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    report = asyncio.run(main_async(args))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "caches.json").write_text(json.dumps(report, indent=2) + "\n")
    (args.out / "caches.md").write_text(markdown(report))
    print(markdown(report))  # noqa: T201 - the benchmark's report


if __name__ == "__main__":
    main()
