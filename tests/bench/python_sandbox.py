"""What bubblewrap costs per execute_python call: the tool in process, PYTHON_SANDBOX=bwrap and none-unsafe.

Both run side by side in one process, alternating call by call, so machine noise hits them alike; the cost is
the median of the paired differences. Run: `python -m tests.bench.python_sandbox [--rounds 30]`; it writes
docs/bench/python_sandbox.{json,md}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from fastmcp import Client, FastMCP

from services.mcp_server.settings import McpSettings
from services.mcp_server.tools import execution

OUT = Path(__file__).resolve().parents[2] / "docs" / "bench"
CODE = "import json\nprint(json.dumps(sum(range(10_000))))"
MODES = ("bwrap", "none-unsafe")


async def measure(rounds: int, warmup: int = 3) -> dict[str, list[float]]:
    """Seconds per execute_python call in each mode, alternating which goes first."""
    with tempfile.TemporaryDirectory() as root:
        clients = {}
        for mode in MODES:
            mcp = FastMCP(f"bench-{mode}")
            settings = McpSettings(_env_file=None, MCP_ALLOWED_ROOTS=root, PYTHON_SANDBOX=mode)  # type: ignore[call-arg]
            execution.register(mcp, settings)
            clients[mode] = Client(mcp)
        times: dict[str, list[float]] = {mode: [] for mode in MODES}
        async with clients["bwrap"], clients["none-unsafe"]:
            for index in range(warmup + rounds):
                for mode in MODES if index % 2 else reversed(MODES):
                    started = time.perf_counter()
                    result = (await clients[mode].call_tool("execute_python", {"code": CODE})).data
                    elapsed = time.perf_counter() - started
                    assert result["exit_code"] == 0, result
                    if index >= warmup:
                        times[mode].append(elapsed)
        return times


def report(times: dict[str, list[float]]) -> dict:
    medians = {mode: round(statistics.median(values) * 1000, 1) for mode, values in times.items()}
    added = [(b - n) * 1000 for b, n in zip(times["bwrap"], times["none-unsafe"], strict=True)]
    return {
        "date": time.strftime("%Y-%m-%d"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "rounds": len(added), "code": CODE, "median_ms": medians,
        "added_paired_median_ms": round(statistics.median(added), 1),
        "ratio": round(medians["bwrap"] / medians["none-unsafe"], 2),
    }


def write(result: dict, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "python_sandbox.json").write_text(json.dumps(result, indent=2) + "\n")
    medians = result["median_ms"]
    lines = [
        "# execute_python: the cost of bubblewrap",
        "",
        f"Run {result['date']} on {result['machine']['cpus']} CPU cores ({result['machine']['platform']}): "
        f"{result['rounds']} calls per mode through the tool in process, alternating; medians.",
        "",
        "| PYTHON_SANDBOX | median ms per call |",
        "|---|---|",
        *(f"| {mode} | {medians[mode]} |" for mode in MODES),
        "",
        f"bubblewrap adds **{result['added_paired_median_ms']} ms** per call (median of paired differences); "
        f"a call takes {result['ratio']}x as long. Only execute_python pays it.",
        "",
    ]
    (out_dir / "python_sandbox.md").write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    result = report(asyncio.run(measure(args.rounds)))
    write(result, args.out)
    print(json.dumps(result, indent=2))  # noqa: T201 - a command-line report


if __name__ == "__main__":
    main()
