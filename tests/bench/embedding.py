"""Embedding benchmark: the service over HTTP (batches of 64) against in-process FastEmbed on the same texts.

Two text sets: sentence-sized texts (queries, short passages) and chunk-sized texts of 512 tokens (what RAG
indexing sends). Run with `python -m tests.bench.embedding`; writes docs/bench/embedding.{json,md}. Both sides
use the same model folder and thread count, and run in alternating order round by round, so machine noise hits
both alike.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

from services.common.models import EMBED_DIR
from services.embedding.engine import EmbeddingEngine
from services.embedding.settings import EmbeddingSettings
from tests.bench.measure import bundled_models_dir
from tests.support.procs import ROOT, Service, free_port, python_module

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
TARGET_RATIO = 0.90
# The service's default budget (no .env is read): its in-process twin uses it and the report names it.
BATCH_TOKENS = EmbeddingSettings(_env_file=None).batch_tokens

EN_WORDS = (
    "the a file system reads writes data index query vector model server request network memory cache "
    "python function returns value error retry timeout database table row column document search result "
    "quickly slowly carefully every morning river mountain weather rain forecast city train station coffee "
    "library book chapter paragraph sentence meaning language translate compile build test deploy release "
    "user password login account setting option default config container image volume port health check"
).split()
KO_WORDS = (
    "파일을 읽는 방법 데이터 저장 검색 결과 문서 색인 질문 답변 서버 요청 응답 모델 벡터 메모리 "
    "내일 비가 오고 바람이 강하게 분다 도서관에서 책을 빌렸다 기차역 커피 회의 일정 보고서 작성 "
    "사용자 비밀번호 설정 변경 컨테이너 이미지 포트 상태 확인 한국어 문장 형태소 분석"
).split()


def make_texts(count: int = 1024, seed: int = 7) -> list[str]:
    """A fixed, varied set: short, medium and long sentences (3 to 45 words), about one in five Korean."""
    rng = random.Random(seed)
    texts = []
    for _ in range(count):
        korean = rng.random() < 0.2
        words = KO_WORDS if korean else EN_WORDS
        # Sentence-sized: queries and short passages. Chunk-sized (512-token) inputs are the indexing benchmark's.
        length = rng.choice((rng.randint(3, 8), rng.randint(8, 20), rng.randint(20, 45)))
        sentence = " ".join(rng.choice(words) for _ in range(length))
        texts.append(sentence[0].upper() + sentence[1:] + ".")
    return texts


def make_chunks(count: int = 64, seed: int = 11) -> list[str]:
    """Chunk-sized texts: 450 words each, past the model's 512-token window, about one in five Korean."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(KO_WORDS if rng.random() < 0.2 else EN_WORDS) for _ in range(450))
            for _ in range(count)]


def peak_rss_gb(pid: int) -> float:
    """The process's peak resident memory (VmHWM), in GB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) * 1024 / 1e9, 2)
    return float("nan")


def start_service(models_dir: Path, work: Path, threads: int, batch_size: int) -> Service:
    port = free_port()
    env = {"MODELS_DIR": str(models_dir), "DATA_DIR": str(work), "EMBEDDING_PORT": str(port),
           "EMBEDDING_THREADS": str(threads), "EMBEDDING_BATCH_SIZE": str(batch_size), "LOG_LEVEL": "WARNING",
           "EMBEDDING_CACHE": "false"}  # the same texts go every round: measure the model, not the cache
    service = Service("embedding", python_module("services.embedding"), env,
                      f"http://127.0.0.1:{port}/health", work / "embedding.log")
    return service.start(deadline_s=120)


def run_http(client: httpx.Client, texts: list[str], batch_size: int) -> float:
    """Seconds to embed every text through /embed, one request per batch, vectors decoded by the client."""
    start = time.perf_counter()
    for i in range(0, len(texts), batch_size):
        response = client.post("/embed", json={"texts": texts[i:i + batch_size]})
        response.raise_for_status()
        assert len(response.json()["embeddings"]) == len(texts[i:i + batch_size])
    return time.perf_counter() - start


def run_in_process(model, texts: list[str], batch_size: int) -> float:  # noqa: ANN001 (fastembed type)
    start = time.perf_counter()
    vectors = list(model.embed(texts, batch_size=batch_size))
    elapsed = time.perf_counter() - start
    assert len(vectors) == len(texts)
    return elapsed


def run_engine(engine: EmbeddingEngine, texts: list[str], batch_size: int) -> float:
    """The service's own batching in the benchmark process, one request's worth of texts at a time."""
    start = time.perf_counter()
    for i in range(0, len(texts), batch_size):
        assert len(engine.embed(texts[i:i + batch_size]).vectors) == len(texts[i:i + batch_size])
    return time.perf_counter() - start


def compare(targets: dict, count: int, rounds: int) -> dict:
    """Alternate the targets round by round after one warm-up pass each; texts/s per target and their ratio."""
    seconds: dict[str, list[float]] = {name: [] for name in targets}
    for name in targets:  # warm-up round, not counted
        targets[name]()
    for i in range(rounds):
        order = list(targets) if i % 2 == 0 else list(reversed(targets))
        for name in order:
            seconds[name].append(targets[name]())
    rates = {name: [count / s for s in values] for name, values in seconds.items()}
    paired = [s / p for s, p in zip(rates["service"], rates["in-process"], strict=True)]
    medians = {name: statistics.median(values) for name, values in rates.items()}
    return {
        name: {"texts_per_s_median": round(medians[name], 2), "texts_per_s_min": round(min(values), 2),
               "texts_per_s_max": round(max(values), 2), "n": len(values)}
        for name, values in rates.items()
    } | {"ratio_of_medians": round(medians["service"] / medians["in-process"], 4),
         "ratio_paired_median": round(statistics.median(paired), 4),
         "service_over_engine_in_process": round(medians["service"] / medians["engine-in-process"], 4)}


def bench(models_dir: Path, sets: dict[str, list[str]], threads: int, batch_size: int, rounds: int) -> dict:
    from fastembed import TextEmbedding

    model = TextEmbedding(MODEL, specific_model_path=str(models_dir / EMBED_DIR), threads=threads,
                          providers=["CPUExecutionProvider"], local_files_only=True)
    engine = EmbeddingEngine(model, MODEL, batch_size, BATCH_TOKENS)
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="ai-suite-bench-embed-") as tmp:
        service = start_service(models_dir, Path(tmp), threads, batch_size)
        base = service.health_url.removesuffix("/health")
        try:
            with httpx.Client(base_url=base, timeout=300, trust_env=False) as client:
                for label, texts in sets.items():
                    targets = {"in-process": lambda t=texts: run_in_process(model, t, batch_size),
                               "engine-in-process": lambda t=texts: run_engine(engine, t, batch_size),
                               "service": lambda t=texts: run_http(client, t, batch_size)}
                    results[label] = compare(targets, len(texts), rounds)
            assert service.proc is not None
            results["service_peak_rss_gb"] = peak_rss_gb(service.proc.pid)
        finally:
            service.stop()
    return results


def write_report(result: dict, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "embedding.json").write_text(json.dumps(result, indent=2) + "\n")
    r, s = result["results"], result["settings"]
    lines = [
        "# Embedding service benchmark",
        "",
        f"Run {result['date']} on {result['machine']['cpus']} CPU cores ({result['machine']['platform']}), model "
        f"`{result['model']}` (bundled int8 ONNX), {s['threads']} ONNX threads on both sides, requests of "
        f"{s['batch_size']} texts, {s['rounds']} interleaved rounds after one warm-up round.",
        "",
    ]
    sections = {
        "sentences": f"## Sentences: {s['texts']} texts, mixed lengths, about 20% Korean, {s['chars_total']} "
                     "characters",
        "chunks": f"## Chunks: {s['chunks']} texts of 512 tokens (what RAG indexing sends)",
    }
    for label, title in sections.items():
        row = r[label]
        ratio = row["ratio_of_medians"]
        lines += [title, "", "| target | texts/s median | min | max |", "|---|---|---|---|"]
        for name in ("in-process", "engine-in-process", "service"):
            t = row[name]
            lines.append(f"| {name} | {t['texts_per_s_median']} | {t['texts_per_s_min']} | {t['texts_per_s_max']} |")
        lines += [
            "",
            f"- The service reaches **{ratio:.1%}** of in-process FastEmbed throughput (median of paired rounds: "
            f"{row['ratio_paired_median']:.1%}); target at least {TARGET_RATIO:.0%}: "
            f"{'met' if ratio >= TARGET_RATIO else 'NOT met'}.",
            f"- Against the same batching run in-process, the service reaches "
            f"**{row['service_over_engine_in_process']:.1%}**: what HTTP and JSON cost.",
            "",
        ]
    lines += [
        f"The service's peak resident memory over the whole run was **{r['service_peak_rss_gb']} GB**.",
        "",
        f"`in-process` is `fastembed.TextEmbedding.embed(texts, batch_size={s['batch_size']})` in the benchmark "
        f"process; `engine-in-process` is the service's `EmbeddingEngine` on the same model object, called in "
        f"the benchmark process; `service` is `python -m services.embedding` over HTTP, one `POST /embed` of "
        f"{s['batch_size']} texts at a time, with the client decoding every vector from JSON. The service sorts "
        "each request's "
        f"texts by length and runs them in ONNX batches of at most {s['batch_tokens']} padded tokens "
        "(`EMBEDDING_BATCH_TOKENS`): 512-token chunks go four at a time, which on CPU is faster per text than 64 "
        "at a time and needs far less memory.",
        "",
    ]
    (out_dir / "embedding.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.embedding", description=__doc__)
    parser.add_argument("--rounds", type=int, default=5, help="timed passes over the text set per target")
    parser.add_argument("--texts", type=int, default=1024)
    parser.add_argument("--chunks", type=int, default=64, help="512-token texts in the chunk set")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="ONNX threads, the same for both")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "bench")
    args = parser.parse_args()
    # A SIGTERM (from `timeout`, say) must still run the `finally` that stops the service process.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    models_dir = bundled_models_dir()
    texts = make_texts(args.texts)
    chunks = make_chunks(args.chunks)
    results = bench(models_dir, {"sentences": texts, "chunks": chunks}, args.threads, args.batch_size, args.rounds)
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "load_average_at_start": [round(x, 2) for x in os.getloadavg()]},
        "model": MODEL,
        "results": results,
        "settings": {"texts": len(texts), "chars_total": sum(map(len, texts)), "korean_texts":
                     sum(1 for t in texts if not t.isascii()), "threads": args.threads, "batch_size": args.batch_size,
                     "chunks": len(chunks), "batch_tokens": BATCH_TOKENS,
                     "rounds": args.rounds},
    }
    write_report(result, args.out)
    print(json.dumps(result, indent=2))  # noqa: T201


if __name__ == "__main__":
    main()
