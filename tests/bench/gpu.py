"""`make bench-gpu`: token rates with every layer on the GPU, side by side with the CPU, in one run.

Needs a llama-cpp-python built with CUDA (see docs/bench/gpu.md for the build). Three targets run
interleaved on the same model: llama-cpp-python in-process with all layers offloaded, the same on the
CPU only, and the suite's inference service over HTTP with `N_GPU_LAYERS=-1`.
Writes gpu.json and gpu.md into --out (default docs/bench/).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from services.common.models import GGUF_NAME
from tests.bench.measure import StreamRun, bundled_models_dir, stream_chat, stream_in_process
from tests.support.procs import ROOT, Service, free_port, python_module

PROMPT = "Write a short story about a robot who learns to paint."
PARAGRAPH = ("The suite indexes documents, answers questions with citations, and runs tools behind approvals. "
             "Each service reports its health, and the gateway fails over between the chat and code models. ")


def gpu_name() -> str:
    smi = shutil.which("nvidia-smi")
    if not smi:
        return "unknown (no nvidia-smi)"
    done = subprocess.run([smi, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                          capture_output=True, text=True, timeout=30, check=False)
    return done.stdout.strip() or done.stderr.strip()


def long_prompt(llm, tokens: int) -> str:
    """A prompt of about `tokens` tokens in the model's own tokenizer."""
    text = PARAGRAPH
    while len(llm.tokenize(text.encode())) < tokens:
        text += PARAGRAPH
    return text


def prompt_rate(llm, text: str, round_no: int) -> float:
    """Prompt tokens evaluated per second for one 1-token completion.

    A round number leads the prompt so llama-cpp-python cannot reuse the previous round's KV cache.
    """
    prompt = f"Round {round_no}. {text}"
    n = len(llm.tokenize(prompt.encode()))
    start = time.perf_counter()
    llm.create_completion(prompt, max_tokens=1, temperature=0)
    return n / (time.perf_counter() - start)


def generate_in_process(llm, prompt: str, max_tokens: int) -> StreamRun:
    """llama-cpp-python's single-sequence loop: `Llama.generate` token by token, each one detokenized.

    The prompt goes through the service's own chat-template path (`Prompts.chat`), so it is the same
    prompt the service sees. The end of text is not a stop, so every run makes `max_tokens`.
    """
    from services.inference.engine import Prompts

    tokens, _ = Prompts(llm, llm.metadata.get("tokenizer.chat_template")).chat([{"role": "user", "content": prompt}])
    start = time.perf_counter()
    first = last = 0.0
    count = 0
    for token in llm.generate(tokens, temp=0.0, reset=True):
        llm.detokenize([token])
        last = time.perf_counter()
        if count == 0:
            first = last
        count += 1
        if count >= max_tokens:
            break
    decode = (count - 1) / (last - first) if count > 1 and last > first else 0.0
    return StreamRun(ttft_s=first - start, tokens=count, decode_tps=decode, total_s=last - start)


def summarise(runs: list[StreamRun]) -> dict:
    return {
        "e2e_tokens_per_s_median": round(statistics.median(r.e2e_tps for r in runs), 1),
        "decode_tokens_per_s_median": round(statistics.median(r.decode_tps for r in runs), 1),
        "ttft_ms_median": round(statistics.median(r.ttft_s for r in runs) * 1000, 2),
        "tokens_median": statistics.median(r.tokens for r in runs),
        "n": len(runs),
    }


def rotate(names: list[str], i: int) -> list[str]:
    return names[i % len(names):] + names[: i % len(names)]


def run(args: argparse.Namespace) -> dict:
    import llama_cpp
    from llama_cpp import Llama

    if not llama_cpp.llama_supports_gpu_offload():
        raise SystemExit("this llama-cpp-python has no GPU offload; build it with CMAKE_ARGS=-DGGML_CUDA=on "
                         "(docs/bench/gpu.md)")
    models_dir = args.models_dir or bundled_models_dir()
    model = str(models_dir / GGUF_NAME)
    threads = args.threads
    common = {"n_ctx": args.n_ctx, "n_batch": args.n_batch, "n_threads": threads, "verbose": False}
    loaded = time.perf_counter()
    llms = {"in-process-gpu": Llama(model, n_gpu_layers=-1, **common),
            "in-process-cpu": Llama(model, n_gpu_layers=0, **common)}
    load_s = round(time.perf_counter() - loaded, 2)
    text = long_prompt(llms["in-process-gpu"], args.prompt_tokens)

    with tempfile.TemporaryDirectory(prefix="ai-suite-bench-gpu-") as tmp:
        port = free_port()
        service = Service("inference", python_module("services.inference"),
                          {"MODELS_DIR": str(models_dir), "DATA_DIR": tmp, "LOG_JSON": "false",
                           "LOG_LEVEL": "WARNING", "INFERENCE_PORT": str(port), "N_GPU_LAYERS": "-1",
                           "N_THREADS": str(threads), "N_CTX": str(args.n_ctx), "N_BATCH": str(args.n_batch)},
                          f"http://127.0.0.1:{port}/health", Path(tmp) / "inference.log").start(deadline_s=300)
        client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300, trust_env=False)
        try:
            targets: dict[str, Callable[[], StreamRun]] = {
                "in-process-gpu": lambda: stream_in_process(llms["in-process-gpu"], PROMPT, args.max_tokens),
                "generate-loop-gpu": lambda: generate_in_process(llms["in-process-gpu"], PROMPT, args.max_tokens),
                "in-process-cpu": lambda: stream_in_process(llms["in-process-cpu"], PROMPT, args.max_tokens),
                "service-gpu": lambda: stream_chat(client, "/v1/chat/completions", "chat-7b", PROMPT,
                                                   args.max_tokens),
            }
            decode: dict[str, list[StreamRun]] = {name: [] for name in targets}
            for i in range(args.rounds + 1):
                for name in rotate(list(targets), i):
                    result = targets[name]()
                    if i:  # the first round warms caches and is not counted
                        decode[name].append(result)
            prompt: dict[str, list[float]] = {name: [] for name in llms}
            for i in range(args.rounds + 1):
                for name in rotate(list(llms), i):
                    rate = prompt_rate(llms[name], text, i)
                    if i:
                        prompt[name].append(rate)
        finally:
            client.close()
            service.stop()

    streaming = {name: summarise(runs) for name, runs in decode.items()}
    gpu, cpu, loop, svc = (streaming[n]["e2e_tokens_per_s_median"]
                           for n in ("in-process-gpu", "in-process-cpu", "generate-loop-gpu", "service-gpu"))
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": {"cpus": os.cpu_count(), "gpu": gpu_name(), "platform": platform.platform(),
                    "python": platform.python_version()},
        "llama_cpp_python": llama_cpp.__version__,
        "model": GGUF_NAME,
        "model_load_s_both": load_s,
        "streaming": streaming,
        "prompt_tokens_per_s_median": {name: round(statistics.median(v), 1) for name, v in prompt.items()},
        "ratios": {"gpu_over_cpu_whole_request": round(gpu / cpu, 2) if cpu else None,
                   "service_over_in_process_gpu_pct": round(100 * svc / gpu, 1) if gpu else None,
                   "service_over_generate_loop_gpu_pct": round(100 * svc / loop, 1) if loop else None},
        "settings": {"rounds": args.rounds, "max_tokens": args.max_tokens, "prompt_tokens": args.prompt_tokens,
                     "threads": threads, "n_ctx": args.n_ctx, "n_batch": args.n_batch, "prompt": PROMPT,
                     "build": args.build},
    }


def write_markdown(result: dict, path: Path) -> None:
    st, pp, ratios = result["streaming"], result["prompt_tokens_per_s_median"], result["ratios"]
    s = result["settings"]
    rows = "\n".join(f"| {name} | {v['e2e_tokens_per_s_median']} | {v['decode_tokens_per_s_median']} | "
                     f"{v['ttft_ms_median']} | {v['tokens_median']} |" for name, v in st.items())
    prompt_rows = "\n".join(f"| {name} | {rate} |" for name, rate in pp.items())
    path.write_text(f"""# GPU benchmark

Run {result['date']} on {result['machine']['gpu']}, {result['machine']['cpus']} CPU cores \
({result['machine']['platform']}, Python {result['machine']['python']}), llama-cpp-python \
{result['llama_cpp_python']} built with `{s['build']}`, model `{result['model']}`. \
All targets ran side by side in one run, interleaved; medians of {s['rounds']} rounds.

## Streaming, {s['max_tokens']} tokens, temperature 0

| target | tokens/s, whole request | decode tokens/s | time to first token ms | tokens |
|---|---|---|---|---|
{rows}

- Every layer on the GPU generates **{ratios['gpu_over_cpu_whole_request']}x** as fast as the CPU alone \
({s['threads']} threads), whole request, through `create_chat_completion`.
- The inference service with `N_GPU_LAYERS=-1` reaches **{ratios['service_over_generate_loop_gpu_pct']}%** of \
the same `Llama.generate` loop run in-process, and **{ratios['service_over_in_process_gpu_pct']}%** of \
in-process `create_chat_completion(stream=True)`.

## Prompt evaluation, about {s['prompt_tokens']} tokens

| target | prompt tokens/s |
|---|---|
{prompt_rows}

`in-process-gpu` and `in-process-cpu` are `llama_cpp.Llama.create_chat_completion(stream=True)` in the \
benchmark process with `n_gpu_layers=-1` and `0`; `generate-loop-gpu` is the service's own loop \
(`Llama.generate`, each token detokenized) in the benchmark process; `service-gpu` is the suite's inference \
service over HTTP. "Whole request" is tokens over the time from sending the request to the last token; \
"decode" runs from the first to the last content chunk, which flatters the service a little because it groups \
the tokens of each `STREAM_INTERVAL_MS` (20 ms) into one chunk. All four load the same GGUF; n_ctx \
{s['n_ctx']}, n_batch {s['n_batch']}. The bundled model is small (135M parameters), so on the GPU the time per \
token is mostly Python and llama.cpp's per-token overhead rather than arithmetic; larger models gain more.

## Reproduce

On a machine with an NVIDIA GPU and the CUDA toolkit, rebuild llama-cpp-python with CUDA in the suite's
environment (`--no-cache`, because uv's cache would otherwise hand back the CPU build), then run the benchmark:

```bash
make install    # the locked CPU build first; then the same locked sdist again, compiled with CUDA:
CMAKE_ARGS="-DGGML_CUDA=on" .tools/bin/uv sync --frozen --extra all --extra test \\
    --reinstall-package llama-cpp-python --no-cache
make bench-gpu
```

The run above built only for compute capability 9.0 and without the FlashAttention kernels, to shorten the
build; the plain `-DGGML_CUDA=on` build includes them.
""")


def write_reports(result: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu.json").write_text(json.dumps(result, indent=2) + "\n")
    write_markdown(result, out / "gpu.md")


def main() -> None:
    parser = argparse.ArgumentParser(prog="make bench-gpu", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7, help="measured rounds per target (one more warms up)")
    parser.add_argument("--max-tokens", type=int, default=256)
    parser.add_argument("--prompt-tokens", type=int, default=1500, help="length of the prompt-evaluation prompt")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--n-ctx", type=int, default=2048)
    parser.add_argument("--n-batch", type=int, default=512)
    parser.add_argument("--models-dir", type=Path, default=None, help="default: MODELS_DIR or ./models")
    parser.add_argument("--build", default="CMAKE_ARGS=-DGGML_CUDA=on", help="how llama-cpp-python was built")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "bench")
    parser.add_argument("--render", type=Path, metavar="GPU_JSON",
                        help="write gpu.md from an earlier run's gpu.json instead of measuring")
    args = parser.parse_args()
    result = json.loads(args.render.read_text()) if args.render else run(args)
    write_reports(result, args.out)
    print(json.dumps(result, indent=2))  # noqa: T201


if __name__ == "__main__":
    main()
