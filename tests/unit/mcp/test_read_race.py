"""Issue 10 item 3: a folder swapped for a symlink to the outside while the tools read never leaks the outside."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client, FastMCP
from fastmcp.exceptions import ToolError

from services.mcp_server.guards import safe_open
from services.mcp_server.guards.paths import PathGuard
from services.mcp_server.settings import McpSettings
from services.mcp_server.tools import filesystem

SECRET = "OUTSIDE-SECRET-7f3a"
OUTSIDE_NAME = "outside-only-name.txt"
INSIDE = "inside content"
READERS = 12

# RENAME_EXCHANGE swaps the folder and the symlink in one step, so the box never goes missing and every
# moment is either "a real folder" or "a link to the outside": the most pressure a racing attacker can make.
SWAPPER = """
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
a, b, deadline = os.fsencode(sys.argv[1]), os.fsencode(sys.argv[2]), time.monotonic() + float(sys.argv[3])
swaps = 0
while swaps % 256 or time.monotonic() < deadline:  # a whole number of pairs leaves the folder in place
    if libc.renameat2(-100, a, -100, b, 2) != 0:
        raise OSError(ctypes.get_errno(), "renameat2")
    swaps += 1
print(swaps)
"""


@dataclass
class Tally:
    """What the readers saw: outside data is a leak; every other outcome is counted."""

    leaks: list[str] = field(default_factory=list)
    raw_errors: list[str] = field(default_factory=list)
    calls: Counter[str] = field(default_factory=Counter)
    leaks_by_tool: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    inside_reads: int = 0

    def judge(self, tool: str, text: str) -> None:
        self.calls[tool] += 1
        if SECRET in text or OUTSIDE_NAME in text:
            self.leaks.append(f"{tool}: {text[:300]}")
            self.leaks_by_tool[tool] += 1
        if "Errno" in text:
            self.raw_errors.append(f"{tool}: {text[:300]}")
        if INSIDE in text:
            self.inside_reads += 1


@pytest.fixture()
def arena(tmp_path: Path) -> dict[str, Path]:
    """allowed/box (a real folder) and a spare symlink to outside/, on one filesystem so they can be exchanged."""
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    (allowed / "box").mkdir(parents=True)
    outside.mkdir()
    (allowed / "box" / "secret.txt").write_text(INSIDE)
    (allowed / "box" / "inside-only-name.txt").write_text(INSIDE)
    (outside / "secret.txt").write_text(SECRET)
    (outside / OUTSIDE_NAME).write_text(SECRET)
    (tmp_path / "spare-link").symlink_to(outside, target_is_directory=True)
    return {"allowed": allowed, "box": allowed / "box", "spare": tmp_path / "spare-link"}


@pytest.fixture(params=["openat2", "walk"])
def opener(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both ways to open below a root: the kernel's openat2, and the O_NOFOLLOW walk kept for older kernels."""
    if request.param == "openat2" and safe_open.openat2_call() is None:
        pytest.skip("this kernel has no openat2; the walk is what runs here")
    if request.param == "walk":
        monkeypatch.setattr(safe_open, "openat2_call", lambda: None)
    return str(request.param)


@pytest.fixture()
async def client(arena: dict[str, Path], opener: str):
    settings = McpSettings(_env_file=None, MCP_ALLOWED_ROOTS=str(arena["allowed"]))  # type: ignore[call-arg]
    mcp = FastMCP("race-test")
    filesystem.register(mcp, settings)
    async with Client(mcp) as connected:
        yield connected


CALLS: list[tuple[str, dict[str, Any]]] = [
    ("read_file", {"path": "box/secret.txt"}),
    ("read_file", {"path": "secret.txt", "working_dir": "box"}),
    ("list_files", {"path": "box"}),
    ("search_files", {"path": "box", "content": "secret"}),
    ("search_files", {"path": ".", "pattern": "*"}),
]


async def _reader(client: Client, deadline: float, offset: int, tally: Tally) -> None:
    turn = offset
    while time.monotonic() < deadline:
        tool, args = CALLS[turn % len(CALLS)]
        turn += 1
        try:
            result = await client.call_tool(tool, args)
            tally.judge(tool, json.dumps(result.data))
        except ToolError as exc:
            tally.judge(tool, str(exc))
            tally.errors[re.sub(r"'[^']*'", "'…'", str(exc))[:90]] += 1


@pytest.fixture()
def quiet_fastmcp() -> Iterator[None]:
    """Thousands of expected refusals would each be logged with a traceback, slowing the readers down."""
    logger = logging.getLogger("fastmcp")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    yield
    logger.setLevel(level)


async def test_ten_seconds_of_swapping_a_folder_for_an_outside_link_leaks_nothing(client, arena, opener, quiet_fastmcp):
    """The attack from the issue, with more readers than it used; the fallback walk gets a shorter run."""
    seconds = 10.0 if opener == "openat2" else 5.0
    swapper = subprocess.Popen(
        [sys.executable, "-c", SWAPPER, str(arena["box"]), str(arena["spare"]), str(seconds)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    tally = Tally()
    try:
        deadline = time.monotonic() + seconds
        await asyncio.gather(*(_reader(client, deadline, n, tally) for n in range(READERS)))
        out, err = swapper.communicate(timeout=30)
    finally:
        if swapper.poll() is None:
            swapper.kill()
            swapper.wait()
    assert swapper.returncode == 0, err
    swaps = int(out)
    summary = (f"{opener}: swaps={swaps} calls={dict(tally.calls)} inside_reads={tally.inside_reads} "
               f"leaks={dict(tally.leaks_by_tool)} refusals={tally.errors.most_common()}")
    logging.getLogger(__name__).info("%s", summary)
    assert swaps > 1000, "the swapper barely ran, so the race was not exercised"
    assert tally.inside_reads > 0, "no call ever succeeded, so the test proves nothing"
    assert tally.leaks == [], f"{summary}\ne.g. {tally.leaks[:3]}"
    assert tally.raw_errors == [], f"raw OS errors reached the caller: {summary}\ne.g. {tally.raw_errors[:3]}"


def _to_link(arena: dict[str, Path]) -> None:
    """What the racing attacker does: the folder moves away and a link to the outside takes its name."""
    if not arena["box"].is_symlink():
        arena["box"].rename(arena["box"].with_name("box-away"))
        arena["box"].symlink_to(arena["spare"].readlink(), target_is_directory=True)


def _to_folder(arena: dict[str, Path]) -> None:
    if arena["box"].is_symlink():
        arena["box"].unlink()
        arena["box"].with_name("box-away").rename(arena["box"])


@pytest.fixture()
def worst_timing(monkeypatch: pytest.MonkeyPatch, arena: dict[str, Path]) -> None:
    """The attacker's best luck, every time: the folder is real whenever the guard resolves a path, and a link to
    the outside from the moment its check passes until the next resolution."""
    resolve, check = PathGuard._real, PathGuard.check

    def honest_resolve(self: PathGuard, path: Path) -> Path:
        _to_folder(arena)
        return resolve(self, path)

    def check_then_swap(self: PathGuard, path: Path, shown: str | None = None) -> Path:
        result = check(self, path, shown)
        _to_link(arena)
        return result

    monkeypatch.setattr(PathGuard, "_real", honest_resolve)
    monkeypatch.setattr(PathGuard, "check", check_then_swap)


@pytest.mark.parametrize(
    ("tool", "args"),
    [
        ("read_file", {"path": "box/secret.txt"}),
        ("list_files", {"path": "box"}),
        ("search_files", {"path": "box", "content": "secret"}),
        ("search_files", {"path": "box", "pattern": "*"}),
        ("write_file", {"path": "box/new.txt", "content": "pwned"}),
        ("create_directory", {"path": "box/made"}),
    ],
)
async def test_a_folder_swapped_for_an_outside_link_after_the_check_is_refused(
    client, arena, worst_timing, tool, args
):
    """The open walks the checked path again below the root and meets the link: a clear refusal, nothing read."""
    outside_before = sorted(p.name for p in arena["spare"].iterdir())
    with pytest.raises(ToolError, match="goes through a symbolic link") as refused:
        await client.call_tool(tool, args)
    assert SECRET not in str(refused.value) and OUTSIDE_NAME not in str(refused.value)
    assert "Errno" not in str(refused.value)
    assert sorted(p.name for p in arena["spare"].iterdir()) == outside_before
