"""The GPU benchmark's parts that run without a GPU: its refusal on a CPU build, its loop, its report."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import llama_cpp
import pytest

from services.common.models import GGUF_NAME
from tests.bench.gpu import generate_in_process, main, run
from tests.bench.measure import StreamRun
from tests.support.procs import ROOT


def test_a_cpu_only_build_is_refused_with_the_way_to_build_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(llama_cpp, "llama_supports_gpu_offload", lambda: False)
    with pytest.raises(SystemExit, match="GGML_CUDA=on"):
        run(argparse.Namespace())


def test_the_generate_loop_produces_max_tokens_even_past_the_end_of_text(models_dir: Path) -> None:
    llm = llama_cpp.Llama(str(models_dir / GGUF_NAME), n_ctx=256, n_threads=1, verbose=False)
    try:
        result = generate_in_process(llm, "Say hi.", 12)
    finally:
        llm.close()
    assert result.tokens == 12
    assert 0 < result.ttft_s < result.total_s
    assert result.e2e_tps == pytest.approx(12 / result.total_s)


def test_whole_request_rate_is_not_flattered_by_a_late_first_chunk() -> None:
    # 100 tokens, the first 50 of them grouped into a chunk that arrives after 0.5 s.
    run_ = StreamRun(ttft_s=0.5, tokens=100, decode_tps=99 / 0.5, total_s=1.0)
    assert run_.e2e_tps == 100.0 < run_.decode_tps
    assert StreamRun(ttft_s=0, tokens=0, decode_tps=0).e2e_tps == 0.0


def test_the_report_renders_from_the_recorded_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    recorded = ROOT / "docs" / "bench" / "gpu.json"
    monkeypatch.setattr("sys.argv", ["bench-gpu", "--render", str(recorded), "--out", str(tmp_path)])
    main()
    result = json.loads(recorded.read_text())
    assert json.loads((tmp_path / "gpu.json").read_text()) == result
    markdown = (tmp_path / "gpu.md").read_text()
    ratios = result["ratios"]
    assert f"**{ratios['service_over_generate_loop_gpu_pct']}%**" in markdown
    assert f"**{ratios['gpu_over_cpu_whole_request']}x**" in markdown
    for name, row in result["streaming"].items():
        assert f"| {name} | {row['e2e_tokens_per_s_median']} | {row['decode_tokens_per_s_median']} |" in markdown
