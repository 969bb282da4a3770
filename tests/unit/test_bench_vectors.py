"""The vector-scale benchmark: its synthetic data, its exact answers, and a small run of both engines."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.bench import vectors


def test_blocks_are_the_same_each_time_unit_length_and_clustered_by_document() -> None:
    first, again = vectors.block(3, 400), vectors.block(3, 400)
    assert first.dtype == np.float32 and first.shape == (400, vectors.DIM)
    assert np.array_equal(first, again)
    assert np.allclose(np.linalg.norm(first, axis=1), 1.0, atol=1e-5)
    assert not np.array_equal(first, vectors.block(4, 400))
    same_document = float(first[0] @ first[1])  # chunks 0 and 1 share a document
    other_document = float(first[0] @ first[vectors.CHUNKS_PER_DOCUMENT * 5])
    assert same_document > other_document + 0.2


def test_exact_top_is_a_full_sort_over_every_block() -> None:
    total = 2 * vectors.BLOCK + 123  # three blocks, the last one short
    asked = vectors.queries(total, 5)
    every = np.concatenate([vectors.block(index, size) for index, _, size in vectors.blocks(total)])
    expected = np.argsort(-(asked @ every.T), axis=1)[:, :vectors.TOP_K].tolist()
    assert vectors.exact_top(total, asked) == expected


def test_a_small_run_measures_both_engines_in_processes_of_their_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    entry = vectors.measure(3000, 12, tmp_path, cap_gib=8.0, limit_s=240)
    for name in vectors.ENGINES:
        row = entry["engines"][name]
        assert "failed" not in row, row
        assert 0 < row["p50_ms"] <= row["p95_ms"]
        assert row["startup_s"] > 0 and row["peak_rss_mib"] > 0 and row["disk_mib"] > 0
    assert entry["engines"]["embedded"]["recall_at_10"] == 1.0  # it searches exactly
    assert entry["engines"]["qdrant-edge"]["recall_at_10"] >= 0.9
    assert entry["engines"]["qdrant-edge"]["index_s"] is not None
    assert not list(tmp_path.glob("*-3000"))  # each store is removed after it was measured

    monkeypatch.setattr(vectors, "OUT", tmp_path / "out")
    vectors.write_report({"date": "today", "machine": {"cpus": 2, "platform": "test"}, "sizes": [entry]})
    report = (tmp_path / "out" / "vectors.md").read_text()
    assert "| 3,000 | embedded |" in report and "| 3,000 | qdrant-edge |" in report


def test_an_engine_that_outgrows_its_memory_cap_is_reported_as_not_finished(tmp_path: Path) -> None:
    # 100 MiB of address space is less than either engine's libraries take, on any machine
    entry = vectors.measure(1000, 4, tmp_path, cap_gib=0.1, limit_s=30)
    rows = entry["engines"].values()
    assert all("failed after" in row["failed"] and row["memory_cap_gib"] == 0.1 for row in rows), entry
    assert [line for line in vectors.verdict({"sizes": [entry]}) if line.endswith("within 0.1 GiB.")]
