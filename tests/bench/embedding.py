"""Embedding benchmark: the service over HTTP (batches of 64) against in-process FastEmbed on the same texts.

Run with `python -m tests.bench.embedding`; writes docs/bench/embedding.{json,md}. Both sides use the same model
folder and thread count, and run in alternating order round by round, so machine noise hits both alike.
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

from services.stack.models import EMBED_DIR
from tests.bench.measure import bundled_models_dir
from tests.support.procs import ROOT, Service, free_port, python_module

MODEL = "sentence-transformers/all-MiniLM-L6-v2"
TARGET_RATIO = 0.90

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


def start_service(models_dir: Path, work: Path, threads: int, batch_size: int) -> Service:
    port = free_port()
    env = {"MODELS_DIR": str(models_dir), "DATA_DIR": str(work), "EMBEDDING_PORT": str(port),
           "EMBEDDING_THREADS": str(threads), "EMBEDDING_BATCH_SIZE": str(batch_size), "LOG_LEVEL": "WARNING"}
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


def bench(models_dir: Path, texts: list[str], threads: int, batch_size: int, rounds: int) -> dict:
    from fastembed import TextEmbedding

    model = TextEmbedding(MODEL, specific_model_path=str(models_dir / EMBED_DIR), threads=threads,
                          providers=["CPUExecutionProvider"], local_files_only=True)
    seconds: dict[str, list[float]] = {"in-process": [], "service": []}
    with tempfile.TemporaryDirectory(prefix="ai-suite-bench-embed-") as tmp:
        service = start_service(models_dir, Path(tmp), threads, batch_size)
        base = service.health_url.removesuffix("/health")
        try:
            with httpx.Client(base_url=base, timeout=120, trust_env=False) as client:
                targets = {"in-process": lambda: run_in_process(model, texts, batch_size),
                           "service": lambda: run_http(client, texts, batch_size)}
                for name in targets:  # warm-up round, not counted
                    targets[name]()
                for i in range(rounds):
                    order = list(targets) if i % 2 == 0 else list(reversed(targets))
                    for name in order:
                        seconds[name].append(targets[name]())
        finally:
            service.stop()
    rates = {name: [len(texts) / s for s in values] for name, values in seconds.items()}
    paired = [s / p for s, p in zip(rates["service"], rates["in-process"], strict=True)]
    return {
        name: {"texts_per_s_median": round(statistics.median(values), 1), "texts_per_s_min": round(min(values), 1),
               "texts_per_s_max": round(max(values), 1), "n": len(values)}
        for name, values in rates.items()
    } | {"ratio_of_medians": round(statistics.median(rates["service"]) / statistics.median(rates["in-process"]), 4),
         "ratio_paired_median": round(statistics.median(paired), 4)}


def write_report(result: dict, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "embedding.json").write_text(json.dumps(result, indent=2) + "\n")
    r, s = result["results"], result["settings"]
    ratio = r["ratio_of_medians"]
    lines = [
        "# Embedding service benchmark",
        "",
        f"Run {result['date']} on {result['machine']['cpus']} CPU cores ({result['machine']['platform']}), model "
        f"`{result['model']}` (bundled int8 ONNX). {s['texts']} texts (mixed lengths, about 20% Korean, "
        f"{s['chars_total']} characters), {s['threads']} ONNX threads on both sides, batches of {s['batch_size']}, "
        f"{s['rounds']} interleaved rounds after one warm-up round.",
        "",
        "| target | texts/s median | min | max |",
        "|---|---|---|---|",
    ]
    for name in ("in-process", "service"):
        row = r[name]
        lines.append(f"| {name} | {row['texts_per_s_median']} | {row['texts_per_s_min']} | {row['texts_per_s_max']} |")
    lines += [
        "",
        f"- The service reaches **{ratio:.1%}** of in-process FastEmbed throughput (median of paired rounds: "
        f"{r['ratio_paired_median']:.1%}); target at least {TARGET_RATIO:.0%}: "
        f"{'met' if ratio >= TARGET_RATIO else 'NOT met'}.",
        "",
        "`in-process` is `fastembed.TextEmbedding.embed(texts, batch_size=64)` in the benchmark process; `service` "
        "is `python -m services.embedding` over HTTP, one `POST /embed` of 64 texts at a time, with the client "
        "decoding every vector from JSON.",
        "",
    ]
    (out_dir / "embedding.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.embedding", description=__doc__)
    parser.add_argument("--rounds", type=int, default=5, help="timed passes over the text set per target")
    parser.add_argument("--texts", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="ONNX threads, the same for both")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "bench")
    args = parser.parse_args()
    # A SIGTERM (from `timeout`, say) must still run the `finally` that stops the service process.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    models_dir = bundled_models_dir()
    texts = make_texts(args.texts)
    results = bench(models_dir, texts, args.threads, args.batch_size, args.rounds)
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "load_average_at_start": [round(x, 2) for x in os.getloadavg()]},
        "model": MODEL,
        "results": results,
        "settings": {"texts": len(texts), "chars_total": sum(map(len, texts)), "korean_texts":
                     sum(1 for t in texts if not t.isascii()), "threads": args.threads, "batch_size": args.batch_size,
                     "rounds": args.rounds},
    }
    write_report(result, args.out)
    print(json.dumps(result, indent=2))  # noqa: T201


if __name__ == "__main__":
    main()
