"""Vector engine at scale: the suite's embedded path beside Qdrant Edge, at 100,000 and 1,000,000 chunks.

Synthetic unit vectors of the bundled embedding model's size (384), made from a fixed seed, with a document id
in each point's payload as the suite stores it. Each engine is measured in processes of its own, so that its
memory is its own:

- a build process writes the points (and, for Qdrant Edge, builds its HNSW index);
- a fresh query process then opens the store, as the RAG service does after a restart: start-up is the time from
  opening it to the first answer, and the searches after it give p50 and p95. Memory is the process's peak RSS.

Engines:

- embedded (today): `services.rag.clients.qdrant.VectorStore` on a folder, which is what the RAG service runs
  without QDRANT_URL: embedded Qdrant (qdrant-client's local mode) keeps the points, and searches go to an
  in-memory float32 copy of the vectors (DenseMatrix), searched exactly;
- qdrant-edge: `qdrant_edge.EdgeShard`, the Qdrant engine in-process, with its HNSW index (m 16, ef_construct
  100, the engine's defaults) and default search parameters. Recall@10 against the exact answer is reported,
  since HNSW is approximate.

Queries are stored vectors with noise added, so each has near neighbours, as a real question has.
`python -m tests.bench.vectors [--sizes 100000 1000000]`; results go to docs/bench/vectors.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "docs" / "bench"
DIM = 384
BLOCK = 10_000  # points generated (and written) per block; each block has its own seed
CHUNKS_PER_DOCUMENT = 40  # BLOCK is a multiple, so no document spans two blocks
TOPICS = 2000
SPREAD = 1.0 / DIM ** 0.5  # per dimension: a noise vector of about unit length
TOP_K = 10
GOALS_MS = {100_000: 30.0, 1_000_000: 100.0}
ENGINES = ("embedded", "qdrant-edge")
COLLECTION = "bench"


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=-1, keepdims=True)).astype(np.float32)


@functools.cache
def _topics() -> np.ndarray:
    return _unit(np.random.default_rng(1).standard_normal((TOPICS, DIM), dtype=np.float32))


def block(index: int, size: int) -> np.ndarray:
    """Block `index` of unit vectors (always the same for the same index).

    Like real embeddings, they have structure: each document lies near one of TOPICS topics, and its chunks
    near the document (uniform random vectors would have no neighbours worth the name).
    """
    topics = _topics()
    rng = np.random.default_rng(1000 + index)
    documents = -(-size // CHUNKS_PER_DOCUMENT)
    centres = _unit(topics[rng.integers(0, TOPICS, documents)] + rng.standard_normal((documents, DIM),
                                                                                      dtype=np.float32) * SPREAD)
    rows = np.repeat(centres, CHUNKS_PER_DOCUMENT, axis=0)[:size]
    return _unit(rows + rng.standard_normal((size, DIM), dtype=np.float32) * SPREAD)


def blocks(total: int) -> list[tuple[int, int, int]]:
    """(index, first point, size) of each block of `total` points."""
    return [(i, start, min(BLOCK, total - start)) for i, start in enumerate(range(0, total, BLOCK))]


def batches(total: int, size: int = 1000) -> Iterator[list[tuple[uuid.UUID, list[float], dict[str, Any]]]]:
    """(id, vector, payload) of every point, in batches of `size`, as the RAG service writes a document's chunks."""
    for index, start, count in blocks(total):
        rows = block(index, count)
        for first in range(0, count, size):
            yield [(point_id(start + n), rows[n].tolist(), {"document_id": document_of(start + n), "chunk": n})
                   for n in range(first, min(first + size, count))]


def point_id(number: int) -> uuid.UUID:
    return uuid.UUID(int=number + 1)


def document_of(number: int) -> str:
    return f"doc-{number // CHUNKS_PER_DOCUMENT}"


def queries(total: int, count: int) -> np.ndarray:
    """Stored vectors with noise, at unit length."""
    rng = np.random.default_rng(7)
    picks = [int(p) for p in rng.integers(0, total, count)]
    sizes = {index: size for index, _, size in blocks(total)}
    made = {index: block(index, sizes[index]) for index in sorted({p // BLOCK for p in picks})}  # each once
    rows = np.stack([made[p // BLOCK][p % BLOCK] for p in picks])
    return _unit(rows + rng.standard_normal(rows.shape, dtype=np.float32) * SPREAD * 0.5)


def exact_top(total: int, asked: np.ndarray) -> list[list[int]]:
    """The true TOP_K point numbers per query, by brute force over the blocks."""
    best_scores = np.full((len(asked), TOP_K), -np.inf, dtype=np.float32)
    best_ids = np.zeros((len(asked), TOP_K), dtype=np.int64)
    for index, start, size in blocks(total):
        scores = asked @ block(index, size).T
        ids = np.broadcast_to(np.arange(start, start + size), scores.shape)
        merged_scores = np.concatenate([best_scores, scores], axis=1)
        merged_ids = np.concatenate([best_ids, ids], axis=1)
        keep = np.argsort(-merged_scores, axis=1)[:, :TOP_K]
        best_scores = np.take_along_axis(merged_scores, keep, axis=1)
        best_ids = np.take_along_axis(merged_ids, keep, axis=1)
    return best_ids.tolist()


# --- engines, each used inside its own process -------------------------------------------------------------

def _embedded_store(folder: Path) -> Any:
    from services.rag.clients.outage import RetryPolicy
    from services.rag.clients.qdrant import VectorStore

    return VectorStore(RetryPolicy(attempts=1, min_wait=0.1, max_wait=1.0), path=folder)


async def _embedded_build(folder: Path, total: int) -> None:
    from services.rag.clients.qdrant import Point

    store = _embedded_store(folder)
    await store.ensure_collection(COLLECTION, DIM)
    for batch in batches(total):
        await store.upsert(COLLECTION, [Point(number, vector, payload) for number, vector, payload in batch])
    await store.close()


async def _embedded_query(folder: Path, asked: np.ndarray) -> tuple[float, list[float], list[list[int]]]:
    started = time.perf_counter()
    store = _embedded_store(folder)
    found = [await store.search(COLLECTION, asked[0].tolist(), TOP_K)]
    startup = time.perf_counter() - started
    latencies = []
    for vector in asked[1:]:
        begun = time.perf_counter()
        found.append(await store.search(COLLECTION, vector.tolist(), TOP_K))
        latencies.append(time.perf_counter() - begun)
    await store.close()
    return startup, latencies, [[hit.int - 1 for hit, _ in hits] for hits in found]


def _edge_config() -> Any:
    import qdrant_edge as edge

    return edge.EdgeConfig(vectors={"dense": edge.EdgeVectorParams(size=DIM, distance=edge.Distance.Dot)})


def _edge_build(folder: Path, total: int) -> float:
    """Write the points, then build the index; returns the seconds the index took."""
    import qdrant_edge as edge

    shard = edge.EdgeShard.create(str(folder), _edge_config())
    for batch in batches(total):
        shard.update(edge.UpdateOperation.upsert_points([
            edge.Point(str(number), {"dense": vector}, payload) for number, vector, payload in batch]))
    shard.flush()
    begun = time.perf_counter()
    shard.optimize()
    indexed = time.perf_counter() - begun
    shard.close()
    return indexed


def _edge_query(folder: Path, asked: np.ndarray) -> tuple[float, list[float], list[list[int]]]:
    import qdrant_edge as edge

    def search(shard: Any, vector: np.ndarray) -> list[int]:
        hits = shard.query(edge.QueryRequest(limit=TOP_K, query=edge.Query.Nearest(vector.tolist(), using="dense")))
        return [uuid.UUID(str(hit.id)).int - 1 for hit in hits]

    started = time.perf_counter()
    shard = edge.EdgeShard.load(str(folder))
    found = [search(shard, asked[0])]
    startup = time.perf_counter() - started
    latencies = []
    for vector in asked[1:]:
        begun = time.perf_counter()
        found.append(search(shard, vector))
        latencies.append(time.perf_counter() - begun)
    shard.close()
    return startup, latencies, found


def child(opts: argparse.Namespace) -> None:
    """One build or query step of one engine; prints its result as JSON."""
    # Address space capped, so that an engine that does not fit fails with MemoryError instead of driving the
    # machine into swap or the OOM killer.
    cap = int(opts.memory_cap_gib * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    folder = Path(opts.folder)
    result: dict[str, Any] = {}
    if opts.child == "build":
        begun = time.perf_counter()
        if opts.engine == "embedded":
            asyncio.run(_embedded_build(folder, opts.size))
        else:
            result["index_s"] = round(_edge_build(folder, opts.size), 1)
        result["build_s"] = round(time.perf_counter() - begun, 1)
    else:
        asked = np.load(opts.query_file)
        if opts.engine == "embedded":
            startup, latencies, found = asyncio.run(_embedded_query(folder, asked))
        else:
            startup, latencies, found = _edge_query(folder, asked)
        result.update(startup_s=round(startup, 2), latencies_ms=[round(x * 1000, 3) for x in latencies],
                      found=found)
    result["peak_rss_mib"] = round(_peak_rss() / 1024, 1)
    print(json.dumps(result))  # noqa: T201 (read by the parent)


def _total_gib() -> float:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30


def _peak_rss() -> int:
    """This process's peak RSS in KiB (VmHWM; getrusage's figure can carry the parent's over from fork)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


class StepFailed(RuntimeError):
    """A build or query step exited with an error (MemoryError past the cap among them)."""


def run_step(engine: str, step: str, size: int, folder: Path, query_file: Path, cap_gib: float,
             limit_s: float) -> dict[str, Any]:
    argv = [sys.executable, "-m", "tests.bench.vectors", "--child", step, "--engine", engine, "--size", str(size),
            "--folder", str(folder), "--query-file", str(query_file), "--memory-cap-gib", str(cap_gib)]
    begun = time.perf_counter()
    try:
        # an engine short of memory can also stop answering (threads it cannot start), so time is capped too
        done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, check=False, timeout=limit_s)
    except subprocess.TimeoutExpired:
        raise StepFailed(f"{step} failed after {limit_s:.0f} s: no answer within the time limit") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no message"])[-1]
        raise StepFailed(f"{step} failed after {time.perf_counter() - begun:.0f} s: {last[:300]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def measure(size: int, count: int, work: Path, cap_gib: float, limit_s: float = 4 * 3600) -> dict[str, Any]:
    # here, not at the top: the measured child processes import this module and must not carry what it imports
    from tests.bench.measure import summary_ms

    asked = queries(size, count)
    query_file = work / f"queries-{size}.npy"
    np.save(query_file, asked)
    truth = exact_top(size, asked)
    engines: dict[str, Any] = {}
    for engine in ENGINES:
        folder = work / f"{engine}-{size}"
        try:
            print(f"{engine}: writing {size:,} points ...", file=sys.stderr, flush=True)  # noqa: T201
            built = run_step(engine, "build", size, folder, query_file, cap_gib, limit_s)
            print(f"{engine}: querying ...", file=sys.stderr, flush=True)  # noqa: T201
            asked_result = run_step(engine, "query", size, folder, query_file, cap_gib, limit_s)
        except StepFailed as exc:
            engines[engine] = {"failed": str(exc), "memory_cap_gib": cap_gib}
            shutil.rmtree(folder, ignore_errors=True)
            continue
        found = asked_result.pop("found")
        recall = statistics.fmean(len(set(got) & set(want)) / TOP_K for got, want in zip(found, truth, strict=True))
        latencies = summary_ms([ms / 1000 for ms in asked_result.pop("latencies_ms")])
        engines[engine] = {
            "build_s": built["build_s"], "index_s": built.get("index_s"), "build_peak_rss_mib": built["peak_rss_mib"],
            "startup_s": asked_result["startup_s"], "peak_rss_mib": asked_result["peak_rss_mib"],
            "p50_ms": latencies["p50_ms"], "p95_ms": latencies["p95_ms"],
            "recall_at_10": round(recall, 3), "disk_mib": round(_disk(folder) / 2**20, 1),
        }
        shutil.rmtree(folder, ignore_errors=True)
    return {"size": size, "queries": count, "goal_p50_ms": GOALS_MS.get(size), "engines": engines}


def _disk(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def write_report(result: dict[str, Any]) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "vectors.json").write_text(json.dumps(result, indent=2) + "\n")
    lines = [
        "# Vector engine at scale: the embedded path beside Qdrant Edge", "",
        f"Run {result['date']} on {result['machine']['cpus']} CPU cores ({result['machine']['platform']}); "
        "`python -m tests.bench.vectors`. Synthetic unit vectors of 384 dimensions with a document id in each "
        f"payload; {result['sizes'][0]['queries']} queries per size (stored vectors with noise), top {TOP_K}. "
        "Each engine builds its store in one process and is measured in a fresh one: start-up is from opening "
        "the store to the first answer, memory is that process's peak RSS.", "",
        "- **embedded (today)**: what the RAG service runs without `QDRANT_URL`: embedded Qdrant (qdrant-client's "
        "local mode) keeps the points, and searches go to an in-memory float32 copy, searched exactly.",
        "- **qdrant-edge**: `qdrant-edge-py`, the Qdrant engine in-process, with its HNSW index (the engine's "
        "defaults: m 16, ef_construct 100) and default search parameters.", "",
        "| chunks | engine | search p50 ms | p95 ms | goal p50 | recall@10 | start-up s | peak RSS MiB (query process) "
        "| write s (of which index) | disk MiB |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for entry in result["sizes"]:
        for engine, row in entry["engines"].items():
            goal = entry["goal_p50_ms"]
            if "failed" in row:
                lines.append(f"| {entry['size']:,} | {engine} | did not finish: {row['failed']} (address space "
                             f"capped at {row['memory_cap_gib']} GiB) | | {goal if goal is not None else '-'} "
                             "| | | | | |")
                continue
            met = "" if goal is None else (" (met)" if row["p50_ms"] <= goal else " (NOT met)")
            index = f" ({row['index_s']})" if row.get("index_s") is not None else ""
            lines.append(f"| {entry['size']:,} | {engine} | {row['p50_ms']}{met} | {row['p95_ms']} | "
                         f"{goal if goal is not None else '-'} | {row['recall_at_10']} | {row['startup_s']} | "
                         f"{row['peak_rss_mib']} | {row['build_s']}{index} | {row['disk_mib']} |")
    lines += ["", "## Reading", ""]
    lines += [f"- {line}" for line in verdict(result)]
    (OUT / "vectors.md").write_text("\n".join(lines) + "\n")


def verdict(result: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for entry in result["sizes"]:
        engines, goal = entry["engines"], entry["goal_p50_ms"]
        if "embedded" not in engines or "qdrant-edge" not in engines:
            continue
        here, edge = engines["embedded"], engines["qdrant-edge"]
        if "failed" in here or "failed" in edge:
            for name, row in engines.items():
                if "failed" in row:
                    lines.append(f"{entry['size']:,} chunks: {name} did not finish ({row['failed']}) within "
                                 f"{row['memory_cap_gib']} GiB.")
                else:
                    lines.append(f"{entry['size']:,} chunks: {name} answers in {row['p50_ms']} ms (p50) after a "
                                 f"{row['startup_s']} s start, in {row['peak_rss_mib']} MiB, finding "
                                 f"{row['recall_at_10']:.1%} of the exact top 10.")
            continue
        lines.append(
            f"{entry['size']:,} chunks: the embedded path answers in {here['p50_ms']} ms (p50) after a "
            f"{here['startup_s']} s start, in {here['peak_rss_mib']} MiB; Qdrant Edge in {edge['p50_ms']} ms after "
            f"{edge['startup_s']} s, in {edge['peak_rss_mib']} MiB, finding {edge['recall_at_10']:.1%} of the exact "
            "top 10" + ("" if goal is None else f"; goal {goal:g} ms") + ".")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000], help="chunks per run")
    parser.add_argument("--queries", type=int, default=200, help="queries per size")
    parser.add_argument("--no-write", action="store_true", help="print the result without writing docs/bench")
    parser.add_argument("--memory-cap-gib", type=float, default=round(_total_gib() * 0.6, 1),
                        help="address space each engine's process may use (default: 60%% of this machine's memory)")
    parser.add_argument("--child", choices=["build", "query"], help=argparse.SUPPRESS)
    parser.add_argument("--engine", choices=ENGINES, help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--query-file", help=argparse.SUPPRESS)
    parser.add_argument("--render", type=Path, nargs="+", metavar="RESULT_JSON",
                        help="write vectors.md/.json from earlier runs' printed results (their sizes together)")
    opts = parser.parse_args()
    if opts.render:
        runs = [json.loads(path.read_text()) for path in opts.render]
        sizes_of = [", ".join(format(entry["size"], ",") for entry in run["sizes"]) for run in runs]
        dates = "; ".join(f"{run['date']} ({sizes} chunks)" for run, sizes in zip(runs, sizes_of, strict=True))
        write_report({**runs[-1], "date": dates, "sizes": sorted((size for run in runs for size in run["sizes"]),
                                                                 key=lambda entry: entry["size"])})
        return
    if opts.child:
        child(opts)
        return
    with tempfile.TemporaryDirectory(prefix="vector-bench-", dir=os.environ.get("BENCH_TMP")) as tmp:
        sizes = [measure(size, opts.queries, Path(tmp), opts.memory_cap_gib) for size in opts.sizes]
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "sizes": sizes,
    }
    print(json.dumps(result, indent=2))  # noqa: T201 (the benchmark's report)
    if not opts.no_write:
        write_report(result)


if __name__ == "__main__":
    main()
