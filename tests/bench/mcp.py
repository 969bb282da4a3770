"""MCP benchmark: `read_file` and `write_file` over streamable HTTP, security layer on and off, in one run.

Two servers run at once, the same code with the same data: one with RBAC, approvals, audit and rate limits
on (called with the owner's key, as the `ai` command does), one with all four off; for `read_file` a bare
FastMCP server (tests/bench/mcp_plain.py) runs beside them as the library's own ceiling. Rounds rotate between
them so machine noise hits all alike. The client is the official `mcp` Python client. `write_file` is
measured too because a call that changes something waits for its audit row to be committed.
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
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import httpx2
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client

from tests.bench.measure import percentile
from tests.support.procs import Service, free_port, python_module

OUT = Path(__file__).resolve().parents[2] / "docs" / "bench"
SECURITY_OFF = {"RBAC_ENABLED": "false", "APPROVAL_WORKFLOW_ENABLED": "false", "AUDIT_ENABLED": "false",
                "RATE_LIMIT_ENABLED": "false"}
WRITTEN = "The suite writes this file.\n" * 10
# The default bucket (50/s, burst 200) would refuse a closed loop of one user's calls: the limiter still takes
# a token on every call, so its cost is measured, but the bucket is wide enough never to refuse one.
BENCH_RATE = {"RATE_LIMIT_PER_SECOND": "1000000", "RATE_LIMIT_BURST": "1000000"}
PLAIN = "bare FastMCP"


def start_server(name: str, work: Path, files: Path, extra: dict[str, str]) -> tuple[Service, str, str | None]:
    """One MCP server process; returns it, its /mcp URL and the owner's key (None when security is off)."""
    port = free_port()
    data = work / name
    env = {"MCP_PORT": str(port), "DATA_DIR": str(data), "MCP_ALLOWED_ROOTS": str(files),
           "LOG_LEVEL": "WARNING", **extra}
    service = Service(name, python_module("services.mcp_server"), env, f"http://127.0.0.1:{port}/health",
                      work / f"{name}.log").start()
    key_file = data / "security" / "owner.key"
    key = key_file.read_text().strip() if key_file.exists() else None
    return service, f"http://127.0.0.1:{port}/mcp", key


@asynccontextmanager
async def sessions(url: str, key: str | None, count: int) -> AsyncIterator[list[ClientSession]]:
    """`count` initialised MCP sessions, each on its own HTTP connection."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    async with AsyncExitStack() as stack:
        opened = []
        for _ in range(count):
            client = await stack.enter_async_context(httpx2.AsyncClient(headers=headers, timeout=30))
            read, write = await stack.enter_async_context(streamable_http_client(url, http_client=client))
            session = await stack.enter_async_context(ClientSession(read, write))
            await session.initialize()
            opened.append(session)
        yield opened


async def call(session: ClientSession, tool: str, args: dict) -> float:
    start = time.perf_counter()
    result = await session.call_tool(tool, args)
    elapsed = time.perf_counter() - start
    if result.is_error:
        raise RuntimeError(f"{tool} failed: {result.content}")
    return elapsed


async def closed_loop(pool: list[ClientSession], tool: str, args: dict, seconds: float) -> float:
    """Calls per second with every session calling back to back."""
    deadline = time.perf_counter() + seconds
    done = 0

    async def worker(session: ClientSession) -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await call(session, tool, args)
            done += 1

    start = time.perf_counter()
    await asyncio.gather(*(worker(s) for s in pool))
    return done / (time.perf_counter() - start)


async def steady(
    pool: list[ClientSession], tool: str, args: dict, rate: float, seconds: float
) -> tuple[list[float], float]:
    """Open loop at `rate` calls/s; returns latencies (from the scheduled start) and the achieved rate."""
    latencies: list[float] = []
    total = int(rate * seconds)
    start = time.perf_counter()

    async def one(i: int) -> None:
        due = start + i / rate
        await asyncio.sleep(max(0.0, due - time.perf_counter()))
        await call(pool[i % len(pool)], tool, args)
        latencies.append(time.perf_counter() - due)

    await asyncio.gather(*(one(i) for i in range(total)))
    return latencies, total / (time.perf_counter() - start)


async def bench(urls: dict[str, tuple[str, str | None]], tool: str, args: dict, rounds: int, seconds: float,
                concurrency: int, rate: float) -> dict:
    async with AsyncExitStack() as stack:
        pools = {name: await stack.enter_async_context(sessions(url, key, concurrency))
                 for name, (url, key) in urls.items()}
        for pool in pools.values():  # warm-up: imports, caches, connection set-up
            await closed_loop(pool, tool, args, 1.0)
        throughput: dict[str, list[float]] = {name: [] for name in pools}
        latency: dict[str, list[float]] = {name: [] for name in pools}
        achieved: dict[str, list[float]] = {name: [] for name in pools}
        names = list(pools)
        for i in range(rounds):  # each round starts with the next server in turn
            for name in names[i % len(names):] + names[: i % len(names)]:
                throughput[name].append(await closed_loop(pools[name], tool, args, seconds))
        for i in range(rounds):
            for name in names[i % len(names):] + names[: i % len(names)]:
                lat, got = await steady(pools[name], tool, args, rate, seconds)
                latency[name] += lat
                achieved[name].append(got)
    result: dict = {}
    for name in names:
        ms = [v * 1000 for v in latency[name]]
        result[name] = {
            "calls_per_s_median": round(statistics.median(throughput[name]), 1),
            "calls_per_s_rounds": [round(v, 1) for v in throughput[name]],
            "steady_rate_achieved": round(statistics.median(achieved[name]), 1),
            "steady_p50_ms": round(statistics.median(ms), 2),
            "steady_p95_ms": round(percentile(ms, 95), 2),
            "steady_calls": len(ms),
        }
    return result


def start_plain(work: Path) -> tuple[Service, str]:
    """The bare FastMCP server of tests/bench/mcp_plain.py: the library without the suite."""
    port = free_port()
    service = Service(PLAIN, python_module("tests.bench.mcp_plain", str(port)), {},
                      f"http://127.0.0.1:{port}/health", work / f"{PLAIN}.log").start()
    return service, f"http://127.0.0.1:{port}/mcp"


def table(targets: dict) -> list[str]:
    lines = ["| server | calls/s (closed loop) | steady rate reached | p50 ms | p95 ms |",
             "|---|---|---|---|---|"]
    for name in ("security-on", "security-off", PLAIN):
        if name not in targets:
            continue
        row = targets[name]
        lines.append(f"| {name} | {row['calls_per_s_median']} | {row['steady_rate_achieved']}/s | "
                     f"{row['steady_p50_ms']} | {row['steady_p95_ms']} |")
    return lines


def ratios(targets: dict) -> tuple[float, float]:
    """Security on over off: the ratio of the median throughputs, and the median of the per-round ratios.

    Each round runs the two servers back to back, so the per-round ratio cancels the drift of the
    machine's speed during a run; it is the figure the target is judged by.
    """
    on, off = targets["security-on"], targets["security-off"]
    paired = [a / b for a, b in zip(on["calls_per_s_rounds"], off["calls_per_s_rounds"], strict=True)]
    return on["calls_per_s_median"] / off["calls_per_s_median"], statistics.median(paired)


def plain_lines(targets: dict) -> list[str]:
    """How the suite's server compares with a bare FastMCP server reading the same file, in the same run."""
    if PLAIN not in targets:
        return []
    plain = targets[PLAIN]["calls_per_s_rounds"]
    share = {name: statistics.median(a / b for a, b in zip(targets[name]["calls_per_s_rounds"], plain, strict=True))
             for name in ("security-off", "security-on")}
    return [f"- {PLAIN} (tests/bench/mcp_plain.py: the same library, the same client, a `read_file` tool that only "
            "reads the file; no key, guard, audit or metrics) is the ceiling on this machine: the suite's server "
            f"reaches **{share['security-off']:.1%}** of its calls/s with security off and "
            f"**{share['security-on']:.1%}** with security on (medians of the paired rounds)."]


def write_report(result: dict) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "mcp.json").write_text(json.dumps(result, indent=2) + "\n")
    on = result["targets"]["security-on"]
    of_medians, ratio = ratios(result["targets"])
    write_of_medians, write_ratio = ratios(result["write_targets"])
    rate = result["settings"]["steady_rate"]
    lines = [
        "# MCP benchmark: `read_file` and `write_file` over streamable HTTP",
        "",
        f"Run {result['date']} on {result['machine']['cpus']} CPU cores ({result['machine']['platform']}). "
        "The servers ran at once and the rounds rotated between them; the client is the official `mcp` "
        f"Python client with {result['settings']['concurrency']} sessions. Medians over "
        f"{result['settings']['rounds']} rounds of {result['settings']['seconds']} s.",
        "",
        f"## `read_file` of a {result['settings']['file_bytes']}-byte file",
        "",
        *table(result["targets"]),
        "",
        f"- Throughput with security on is **{ratio:.1%}** of security off (median of the paired rounds; the "
        f"ratio of the medians is {of_medians:.1%}); target at least 90%: {'met' if ratio >= 0.9 else 'NOT met'}.",
        f"- p95 with security on at a steady {rate:g} calls/s is **{on['steady_p95_ms']} ms**; target at most "
        f"20 ms: {'met' if on['steady_p95_ms'] <= 20 else 'NOT met'}.",
        "- Security on means: the caller's key is looked up, RBAC checks the role, the rate limiter takes a "
        "token (from a bucket the benchmark widens, so that it never refuses), and the call is appended to the "
        "HMAC-keyed audit chain (through its queue).",
        *plain_lines(result["targets"]),
        "",
        f"## `write_file` of {result['settings']['write_bytes']} bytes, answered after its audit row is committed",
        "",
        *table(result["write_targets"]),
        "",
        f"- Throughput with security on is **{write_ratio:.1%}** of security off (median of the paired rounds; "
        f"the ratio of the medians is {write_of_medians:.1%}). A call that can change something waits for the "
        "commit of its audit row; concurrent calls share commits.",
        "",
        "Anchor: the original system's RBAC stack reached 80 calls/s with p95 397 ms.",
        "",
    ]
    (OUT / "mcp.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=11, help="alternating rounds per measurement")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each round")
    parser.add_argument("--concurrency", type=int, default=4, help="client sessions")
    parser.add_argument("--rate", type=float, default=100.0, help="steady calls/s for the latency rounds")
    parser.add_argument("--no-write", action="store_true", help="print the result without writing docs/bench")
    parser.add_argument("--render", type=Path, metavar="MCP_JSON",
                        help="write mcp.md from an earlier run's mcp.json instead of measuring")
    opts = parser.parse_args()
    if opts.render:
        write_report(json.loads(opts.render.read_text()))
        return
    with tempfile.TemporaryDirectory(prefix="mcp-bench-") as tmp:
        work = Path(tmp)
        files = work / "files"
        files.mkdir()
        sample = files / "sample.txt"
        sample.write_text("The suite reads this file on every call.\n" * 100)
        file_bytes = sample.stat().st_size
        servers = []
        try:
            on, on_url, on_key = start_server("security-on", work, files, BENCH_RATE)
            servers.append(on)
            off, off_url, _ = start_server("security-off", work, files, SECURITY_OFF)
            servers.append(off)
            if on_key is None:
                raise RuntimeError("the security-on server wrote no owner key")
            plain, plain_url = start_plain(work)
            servers.append(plain)
            urls = {"security-on": (on_url, on_key), "security-off": (off_url, None)}
            read_args = {"path": str(sample)}
            targets = asyncio.run(bench({**urls, PLAIN: (plain_url, None)}, "read_file", read_args, opts.rounds,
                                        opts.seconds, opts.concurrency, opts.rate))
            write_args = {"path": str(files / "written.txt"), "content": WRITTEN}
            write_targets = asyncio.run(bench(urls, "write_file", write_args, opts.rounds, opts.seconds,
                                              opts.concurrency, opts.rate))
        finally:
            for service in servers:
                service.stop()
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "settings": {"rounds": opts.rounds, "seconds": opts.seconds, "concurrency": opts.concurrency,
                     "steady_rate": opts.rate, "file_bytes": file_bytes, "write_bytes": len(WRITTEN.encode())},
        "targets": targets,
        "write_targets": write_targets,
    }
    if not opts.no_write:
        write_report(result)
    print(json.dumps(result, indent=2))  # noqa: T201 (the benchmark's report)


if __name__ == "__main__":
    main()
