"""Write a benchmark result as JSON and as a markdown table with the targets checked."""

from __future__ import annotations

import json
from pathlib import Path


def _verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def write_report(result: dict, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "phase1.json").write_text(json.dumps(result, indent=2) + "\n")
    lat, st = result["one_token_latency"], result["streaming"]
    gw_added = lat["gateway"]["added_paired_median_ms"]
    ll_added = lat["litellm-proxy"]["added_paired_median_ms"]
    tps_ratio = st["gateway"]["decode_tokens_per_s_median"] / st["direct"]["decode_tokens_per_s_median"]
    ttft_added = st["gateway"]["ttft_ms_median"] - st["direct"]["ttft_ms_median"]
    svc_ratio = st["direct"]["decode_tokens_per_s_median"] / st["in-process"]["decode_tokens_per_s_median"]
    lines = [
        "# Phase 1 benchmark",
        "",
        f"Run {result['date']} on {result['machine']['cpus']} CPU cores ({result['machine']['platform']}), "
        f"model `{result['model']}`. All targets ran side by side in one run, interleaved; medians reported.",
        "",
        "## Gateway overhead, 1-token chat completions",
        "",
        "| target | p50 ms | p95 ms | added p50 ms (median of paired differences) |",
        "|---|---|---|---|",
    ]
    for name in ("direct", "gateway", "litellm-proxy"):
        row = lat[name]
        lines.append(f"| {name} | {row['p50_ms']} | {row['p95_ms']} | {row.get('added_paired_median_ms', '-')} |")
    lines += [
        "",
        f"- Suite gateway (`GATEWAY_ENGINE=fast`) adds **{gw_added} ms** p50; target at most 5 ms: "
        f"{_verdict(gw_added <= 5)}.",
        f"- Stock LiteLLM proxy (`GATEWAY_ENGINE=litellm`, default settings, config generated from `.env`) "
        f"adds {ll_added} ms: the anchor.",
        "",
        f"## Streaming, {result['settings']['max_tokens']} tokens, temperature 0",
        "",
        "| target | decode tokens/s | time to first token ms | tokens |",
        "|---|---|---|---|",
    ]
    for name in ("in-process", "direct", "gateway"):
        row = st[name]
        lines.append(f"| {name} | {row['decode_tokens_per_s_median']} | {row['ttft_ms_median']} | "
                     f"{row['tokens_median']} |")
    lines += [
        "",
        f"- Gateway streaming reaches **{tps_ratio:.1%}** of direct tokens/s (target at least 95%: "
        f"{_verdict(tps_ratio >= 0.95)}), and time to first token rises by **{ttft_added:.1f} ms** "
        f"(target at most 10 ms: {_verdict(ttft_added <= 10)}).",
        f"- The inference service reaches **{svc_ratio:.1%}** of in-process llama-cpp-python tokens/s "
        f"(target at least 97%: {_verdict(svc_ratio >= 0.97)}).",
        "",
        "`in-process` is `llama_cpp.Llama.create_chat_completion(stream=True)` in the benchmark process; `direct` is "
        "the inference service over HTTP; `gateway` goes through the suite gateway to the same service. "
        f"llama.cpp used {result['settings'].get('threads', '?')} threads on both sides. Decode tokens/s runs from "
        "the first to the last content chunk; the service groups tokens that arrive within `STREAM_INTERVAL_MS` "
        "(20 ms) into one chunk, so token counts come from the stream's usage chunk.",
        "",
    ]
    (out_dir / "phase1.md").write_text("\n".join(lines))
