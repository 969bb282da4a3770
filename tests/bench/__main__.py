"""`make bench`: phase-1 benchmarks, side by side in one run; writes docs/bench/phase1.{json,md}."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from services.common.models import GGUF_NAME
from tests.bench.measure import (
    bundled_models_dir,
    interleave,
    one_token_call,
    stream_chat,
    stream_in_process,
    summary_ms,
)
from tests.bench.report import write_report
from tests.support.procs import ROOT, Service, free_port, python_module

PROMPT = "Write a short story about a robot who learns to paint."


def start_services(models_dir: Path, work: Path, threads: int) -> dict[str, Service]:
    inf_port, fast_port, litellm_port = free_port(), free_port(), free_port()
    base = {"MODELS_DIR": str(models_dir), "DATA_DIR": str(work), "LOG_JSON": "false", "LOG_LEVEL": "WARNING"}
    backend = f"http://127.0.0.1:{inf_port}/v1"
    gateway_env = {**base, "CHAT_API_BASE": backend, "CODE_API_BASE": backend, "LLM_REQUEST_TIMEOUT": "120"}
    services = {
        "direct": Service("inference", python_module("services.inference"),
                          {**base, "INFERENCE_PORT": str(inf_port), "MODEL_ALIAS": "chat-7b,code-7b",
                           "N_THREADS": str(threads)},
                          f"http://127.0.0.1:{inf_port}/health", work / "inference.log"),
        "gateway": Service("gateway", python_module("services.gateway"),
                           {**gateway_env, "API_GATEWAY_PORT": str(fast_port), "GATEWAY_ENGINE": "fast"},
                           f"http://127.0.0.1:{fast_port}/health/liveliness", work / "gateway.log"),
        "litellm-proxy": Service("litellm", python_module("services.gateway"),
                                 {**gateway_env, "API_GATEWAY_PORT": str(litellm_port), "GATEWAY_ENGINE": "litellm"},
                                 f"http://127.0.0.1:{litellm_port}/health/liveliness", work / "litellm.log"),
    }
    services["direct"].start()
    services["gateway"].start()
    services["litellm-proxy"].start(deadline_s=180)
    return services


def base_url(service: Service) -> str:
    return service.health_url.split("/health")[0]


def bench_overhead(services: dict[str, Service], rounds: int) -> dict:
    clients = {name: httpx.Client(base_url=base_url(s), timeout=60, trust_env=False) for name, s in services.items()}
    targets = {name: (lambda c=client: one_token_call(c, "/v1/chat/completions", "chat-7b"))
               for name, client in clients.items()}
    samples = interleave(targets, rounds)
    result = {name: summary_ms(values) for name, values in samples.items()}
    direct = result["direct"]["p50_ms"]
    for name in ("gateway", "litellm-proxy"):
        paired = [(a - b) * 1000 for a, b in zip(samples[name], samples["direct"], strict=True)]
        result[name]["added_p50_ms"] = round(result[name]["p50_ms"] - direct, 2)
        result[name]["added_paired_median_ms"] = round(statistics.median(paired), 2)
    return result


def bench_streaming(services: dict[str, Service], llm, rounds: int, max_tokens: int) -> dict:
    clients = {name: httpx.Client(base_url=base_url(services[name]), timeout=120, trust_env=False)
               for name in ("direct", "gateway")}
    runs: dict[str, list] = {"in-process": [], "direct": [], "gateway": []}
    for i in range(rounds + 1):
        order = ["in-process", "direct", "gateway"]
        order = order[i % 3:] + order[: i % 3]
        for name in order:
            if name == "in-process":
                run = stream_in_process(llm, PROMPT, max_tokens)
            else:
                run = stream_chat(clients[name], "/v1/chat/completions", "chat-7b", PROMPT, max_tokens)
            if i:  # the first round warms caches and is not counted
                runs[name].append(run)
    out = {}
    for name, values in runs.items():
        out[name] = {
            "decode_tokens_per_s_median": round(statistics.median(r.decode_tps for r in values), 1),
            "ttft_ms_median": round(statistics.median(r.ttft_s for r in values) * 1000, 2),
            "tokens_median": statistics.median(r.tokens for r in values),
            "n": len(values),
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog="make bench", description=__doc__)
    parser.add_argument("--rounds", type=int, default=200, help="1-token requests per target")
    parser.add_argument("--stream-rounds", type=int, default=9, help="streamed generations per target")
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="llama.cpp threads, the same for the service and the in-process model")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "bench")
    args = parser.parse_args()

    models_dir = bundled_models_dir()
    from llama_cpp import Llama

    with tempfile.TemporaryDirectory(prefix="ai-suite-bench-") as tmp:
        services = start_services(models_dir, Path(tmp), args.threads)
        try:
            overhead = bench_overhead(services, args.rounds)
            llm = Llama(str(models_dir / GGUF_NAME), n_ctx=1024, n_batch=128, n_threads=args.threads,
                        verbose=False)
            streaming = bench_streaming(services, llm, args.stream_rounds, args.max_tokens)
        finally:
            for service in services.values():
                service.stop()
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "model": GGUF_NAME,
        "one_token_latency": overhead,
        "streaming": streaming,
        "settings": {"rounds": args.rounds, "stream_rounds": args.stream_rounds, "max_tokens": args.max_tokens,
                     "threads": args.threads,
                     "prompt": PROMPT},
    }
    write_report(result, args.out)
    print(json.dumps(result, indent=2))  # noqa: T201


if __name__ == "__main__":
    main()
