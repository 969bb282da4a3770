"""`make bench-serving`: concurrent serving, the suite beside llama.cpp's own llama-server, in one run.

For 1, 2, 4 and 8 concurrent streams: aggregate tokens/s, time to first token and time per output token,
for the suite through its gateway, the inference service directly, and llama-server with as many slots.
Targets alternate within every round; medians of rounds are reported. Then the prompt cache: 4
conversations of about 800 tokens, interleaved, each next turn timed warm (its history cached) and cold.
Results go to docs/bench/serving.{json,md,svg,png}.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from services.common.models import GGUF_NAME
from tests.bench.llamacpp import build_tools, locked_sdist
from tests.bench.measure import bundled_models_dir, percentile
from tests.bench.servingreport import write_report
from tests.bench.servingtext import conversation, story_prompt
from tests.support.procs import ROOT, Service, free_port, python_module

SUITE = ("suite-gateway", "suite-direct")
# A fresh connection per request: a target sits idle while the others run, and a kept-alive connection that
# its server closes just as a request goes out fails the request (uvicorn and llama-server close after 5 s).
LIMITS = httpx.Limits(max_connections=32, max_keepalive_connections=0)


@dataclass
class Stream:
    ttft_s: float
    total_s: float
    tokens: int
    text: str
    prompt_tokens: int | None


async def stream_chat(client: httpx.AsyncClient, messages: list[dict], max_tokens: int) -> Stream:
    """One streamed, greedy chat completion; tokens come from the usage chunk, else one per chunk."""
    body = {"model": "chat-7b", "messages": messages, "max_tokens": max_tokens, "temperature": 0, "seed": 1,
            "stream": True, "stream_options": {"include_usage": True}}
    start = time.perf_counter()
    first = 0.0
    chunks = 0
    usage: dict = {}
    text: list[str] = []
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[len("data: "):])
            usage = chunk.get("usage") or usage
            for choice in chunk.get("choices") or []:
                piece = (choice.get("delta") or {}).get("content")
                if piece:
                    first = first or time.perf_counter()
                    chunks += 1
                    text.append(piece)
    total = time.perf_counter() - start
    return Stream(first - start if first else total, total, usage.get("completion_tokens", chunks), "".join(text),
                  usage.get("prompt_tokens"))


@dataclass
class Round:
    """Concurrent streams started together: aggregate tokens/s over the round's wall time."""

    streams: list[Stream]
    wall_s: float

    @property
    def tokens_per_s(self) -> float:
        return sum(s.tokens for s in self.streams) / self.wall_s


async def concurrent_round(client: httpx.AsyncClient, prompts: list[str], max_tokens: int) -> Round:
    start = time.perf_counter()
    streams = await asyncio.gather(*(stream_chat(client, [{"role": "user", "content": p}], max_tokens)
                                     for p in prompts))
    return Round(list(streams), time.perf_counter() - start)


async def sequential_round(client: httpx.AsyncClient, prompts: list[str], max_tokens: int) -> Round:
    start = time.perf_counter()
    streams = [await stream_chat(client, [{"role": "user", "content": p}], max_tokens) for p in prompts]
    return Round(streams, time.perf_counter() - start)


def rotate(names: list[str], i: int) -> list[str]:
    return names[i % len(names):] + names[: i % len(names)]


def summarise(rounds: list[Round]) -> dict:
    streams = [s for r in rounds for s in r.streams]
    ttft = [s.ttft_s * 1000 for s in streams]
    tpot = [(s.total_s - s.ttft_s) * 1000 / (s.tokens - 1) for s in streams if s.tokens > 1]
    return {
        "tokens_per_s": round(statistics.median(r.tokens_per_s for r in rounds), 1),
        "ttft_ms_p50": round(statistics.median(ttft), 1),
        "ttft_ms_p95": round(percentile(ttft, 95), 1),
        "tpot_ms_p50": round(statistics.median(tpot), 2),
        "tokens_per_stream": statistics.median(s.tokens for s in streams),
        "rounds": len(rounds),
    }


@contextlib.contextmanager
def serving_stack(args: argparse.Namespace, slots: int, work: Path) -> Iterator[dict[str, str]]:
    """The suite (gateway and inference service) and llama-server, each with `slots` slots; yields base URLs."""
    base = {"MODELS_DIR": str(args.models_dir), "DATA_DIR": str(work), "LOG_JSON": "false", "LOG_LEVEL": "WARNING"}
    inf_port, gw_port, ls_port = free_port(), free_port(), free_port()
    inference = Service("inference", python_module("services.inference"), {
        **base, "INFERENCE_PORT": str(inf_port), "MODEL_ALIAS": "chat-7b,code-7b", "N_THREADS": str(args.threads),
        "N_PARALLEL": str(slots), "N_CTX": str(args.n_ctx), "N_BATCH": str(args.n_batch),
        "MAX_QUEUE": "64"}, f"http://127.0.0.1:{inf_port}/health", work / f"inference-{slots}.log")
    backend = f"http://127.0.0.1:{inf_port}/v1"
    gateway = Service("gateway", python_module("services.gateway"), {
        **base, "API_GATEWAY_PORT": str(gw_port), "GATEWAY_ENGINE": "fast", "CHAT_API_BASE": backend,
        "CODE_API_BASE": backend, "LLM_REQUEST_TIMEOUT": "600"},
        f"http://127.0.0.1:{gw_port}/health/liveliness", work / f"gateway-{slots}.log")
    server = Service("llama-server", [str(args.bin_dir / "llama-server"), *llama_server_args(args, slots, ls_port)],
                     {}, f"http://127.0.0.1:{ls_port}/health", work / f"llama-server-{slots}.log")
    started: list[Service] = []
    urls = {"suite-gateway": f"http://127.0.0.1:{gw_port}", "suite-direct": f"http://127.0.0.1:{inf_port}",
            "llama-server": f"http://127.0.0.1:{ls_port}"}
    try:
        for service in (inference, gateway, server):
            started.append(service.start())
        if args.option_b:
            # Design (b) of ADR 0007: llama-server as the engine behind a relay that keeps the suite's API;
            # a second gateway process plays the relay, so requests take gateway -> relay -> llama-server.
            relay_port, front_port = free_port(), free_port()
            relay = Service("relay", python_module("services.gateway"), {
                **base, "API_GATEWAY_PORT": str(relay_port), "GATEWAY_ENGINE": "fast",
                "CHAT_API_BASE": urls["llama-server"] + "/v1", "CODE_API_BASE": urls["llama-server"] + "/v1",
                "LLM_REQUEST_TIMEOUT": "600"}, f"http://127.0.0.1:{relay_port}/health/liveliness",
                work / f"relay-{slots}.log")
            front = Service("front", python_module("services.gateway"), {
                **base, "API_GATEWAY_PORT": str(front_port), "GATEWAY_ENGINE": "fast",
                "CHAT_API_BASE": f"http://127.0.0.1:{relay_port}/v1",
                "CODE_API_BASE": f"http://127.0.0.1:{relay_port}/v1", "LLM_REQUEST_TIMEOUT": "600"},
                f"http://127.0.0.1:{front_port}/health/liveliness", work / f"front-{slots}.log")
            started += [relay.start(), front.start()]
            urls["option-b"] = f"http://127.0.0.1:{front_port}"
        yield urls
    finally:
        for service in reversed(started):
            service.stop()


def llama_server_args(args: argparse.Namespace, slots: int, port: int) -> list[str]:
    """llama-server with the suite's shape: `slots` slots of N_CTX tokens each, the same threads and batch."""
    return ["-m", str(args.models_dir / GGUF_NAME), "--host", "127.0.0.1", "--port", str(port),
            "-np", str(slots), "-c", str(slots * args.n_ctx), "-t", str(args.threads), "-tb", str(args.threads),
            "-b", str(args.n_batch), "-ub", str(args.n_batch), "--no-webui"]


async def bench_concurrency(urls: dict[str, str], level: int, args: argparse.Namespace) -> dict:
    prompts = [story_prompt(i) for i in range(level)]
    modes = ["concurrent"] + (["one-after-another"] if level == args.pair_level else [])
    names = [f"{target}/{mode}" for target in urls for mode in modes]
    rounds: dict[str, list[Round]] = {name: [] for name in names}
    clients = {t: httpx.AsyncClient(base_url=u, timeout=600, limits=LIMITS, trust_env=False) for t, u in urls.items()}
    try:
        for i in range(args.rounds + 1):
            for name in rotate(names, i):
                target, mode = name.split("/")
                run = concurrent_round if mode == "concurrent" else sequential_round
                result = await run(clients[target], prompts, args.max_tokens)
                if i:  # the first round warms every target and is not counted
                    rounds[name].append(result)
    finally:
        for client in clients.values():
            await client.aclose()
    out: dict = {name: summarise(values) for name, values in rounds.items()}
    if level == args.pair_level:
        for target in urls:
            pairs = zip(rounds[f"{target}/concurrent"], rounds[f"{target}/one-after-another"], strict=True)
            out[f"{target}/concurrent"]["gain_over_one_after_another"] = round(
                statistics.median(c.tokens_per_s / s.tokens_per_s for c, s in pairs), 2)
    return out


async def bench_prompt_cache(urls: dict[str, str], args: argparse.Namespace) -> dict:
    """4 conversations interleaved: the next turn with its ~800-token history cached, and the same turn cold."""
    warm: dict[str, list[float]] = {t: [] for t in urls}
    cold: dict[str, list[float]] = {t: [] for t in urls}
    prompt_tokens: list[int] = []
    clients = {t: httpx.AsyncClient(base_url=u, timeout=600, limits=LIMITS, trust_env=False) for t, u in urls.items()}
    try:
        for i in range(args.cache_rounds):
            for target in rotate(list(urls), i):
                client = clients[target]
                talks = [conversation(c, f"{target}-{i}") for c in range(4)]
                answers = [(await stream_chat(client, talk.first_turn(), 8)).text for talk in talks]
                for talk, answer in zip(talks, answers, strict=True):  # interleaved: each goes back to its slot
                    turn = talk.next_turn(answer)
                    result = await stream_chat(client, turn, 8)
                    warm[target].append(result.ttft_s * 1000)
                    if result.prompt_tokens and target in SUITE:
                        prompt_tokens.append(result.prompt_tokens)
                for talk, answer in zip(talks, answers, strict=True):
                    result = await stream_chat(client, talk.next_turn(answer, fresh=True), 8)
                    cold[target].append(result.ttft_s * 1000)
    finally:
        for client in clients.values():
            await client.aclose()
    out: dict = {"prompt_tokens_median": statistics.median(prompt_tokens) if prompt_tokens else None}
    for target in urls:
        w, c = statistics.median(warm[target]), statistics.median(cold[target])
        out[target] = {"warm_ttft_ms_p50": round(w, 1), "cold_ttft_ms_p50": round(c, 1),
                       "warm_over_cold": round(w / c, 3), "turns": len(warm[target])}
    return out


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise LookupError("VmRSS")


def bench_memory(args: argparse.Namespace, work: Path) -> dict:
    """Resident memory of the inference service, loaded and after one answer, per context shape."""
    out = {}
    for label, slots, n_ctx in (("before: 1 slot x 1024", 1, 1024), (f"now: 4 slots x {args.n_ctx}", 4, args.n_ctx)):
        port = free_port()
        service = Service("inference", python_module("services.inference"), {
            "MODELS_DIR": str(args.models_dir), "DATA_DIR": str(work), "LOG_JSON": "false", "LOG_LEVEL": "WARNING",
            "INFERENCE_PORT": str(port), "N_THREADS": str(args.threads), "N_PARALLEL": str(slots),
            "N_CTX": str(n_ctx), "N_BATCH": str(args.n_batch)},
            f"http://127.0.0.1:{port}/health", work / "inference-memory.log").start()
        try:
            assert service.proc is not None
            loaded = rss_mib(service.proc.pid)
            httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=600, trust_env=False, json={
                "messages": [{"role": "user", "content": story_prompt(0)}], "max_tokens": 16}).raise_for_status()
            out[label] = {"rss_mib_loaded": loaded, "rss_mib_after_answer": rss_mib(service.proc.pid)}
        finally:
            service.stop()
    return out


async def run(args: argparse.Namespace) -> dict:
    result: dict = {"concurrency": {}, "settings": {
        "threads": args.threads, "n_ctx_per_slot": args.n_ctx, "n_batch": args.n_batch, "max_tokens": args.max_tokens,
        "rounds": args.rounds, "cache_rounds": args.cache_rounds, "levels": args.levels, "pair_level": args.pair_level,
        "llama_cpp": f"llama-cpp-python {locked_sdist()[0]} (vendored llama.cpp)"}}
    with tempfile.TemporaryDirectory(prefix="ai-suite-bench-serving-") as tmp:
        work = Path(tmp)
        for level in args.levels:
            with serving_stack(args, level, work) as urls:
                result["concurrency"][str(level)] = await bench_concurrency(urls, level, args)
            print(json.dumps({level: result["concurrency"][str(level)]}), flush=True)  # noqa: T201 - progress
        if args.cache_rounds:
            with serving_stack(args, 4, work) as urls:
                result["prompt_cache"] = await bench_prompt_cache(urls, args)
        result["memory"] = bench_memory(args, work)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(prog="make bench-serving", description=__doc__)
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 2, 4, 8], help="concurrent streams")
    parser.add_argument("--rounds", type=int, default=5, help="counted rounds per target and level")
    parser.add_argument("--cache-rounds", type=int, default=3, help="prompt-cache rounds (4 conversations each)")
    parser.add_argument("--max-tokens", type=int, default=96)
    parser.add_argument("--pair-level", type=int, default=4, help="level also run one after another")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--n-ctx", type=int, default=4096, help="context per slot, for both engines")
    parser.add_argument("--n-batch", type=int, default=512, help="tokens per step, for both engines")
    parser.add_argument("--option-b", action="store_true", help="also time design (b): a relay to llama-server")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "bench")
    args = parser.parse_args()
    args.models_dir = bundled_models_dir()
    args.bin_dir = build_tools(Path(os.environ.get("DATA_DIR", ROOT / "data")).resolve())
    result = asyncio.run(run(args))
    result["date"] = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    result["machine"] = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                         "load_average_at_end": os.getloadavg()}
    result["model"] = GGUF_NAME
    write_report(result, args.out)
    print(json.dumps(result, indent=2))  # noqa: T201 - the command's answer


if __name__ == "__main__":
    main()
