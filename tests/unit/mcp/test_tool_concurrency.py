"""Tool calls run concurrently through the whole server (security middleware included), within per-tool limits:
against a loopback server that takes 1 s per request and counts the requests it holds at once."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastmcp import Client, FastMCP

from services.mcp_server.server import create_mcp
from services.mcp_server.settings import McpSettings
from tests.support.slow_http import SLOW_S, Counter, Slow, slow_server
from tests.unit.mcp.security_support import make_settings

CHROMIUM = Path("/usr/bin/chromium")
CALLS = 8


@pytest.fixture
def slow() -> Iterator[tuple[str, Counter]]:
    with slow_server(SLOW_S) as served:
        yield served


async def run_at_once(mcp: FastMCP, tool: str, args: dict[str, Any], calls: int = CALLS) -> float:
    """Call `tool` `calls` times at once from one client; the seconds until all answered."""
    async with Client(mcp) as client:
        started = time.perf_counter()
        results = await asyncio.gather(*(client.call_tool(tool, args) for _ in range(calls)))
        elapsed = time.perf_counter() - started
    assert all(not result.is_error for result in results)
    return elapsed


def settings(tmp_path: Path, host: str, **env: Any) -> McpSettings:
    return make_settings(tmp_path, RAG_URL=f"http://{host}", WEB_ALLOWED_HOSTS=host, WEB_TIMEOUT=30, **env)


async def test_eight_slow_calls_finish_in_about_the_time_of_one(tmp_path: Path, slow: tuple[str, Counter]) -> None:
    host, counter = slow
    mcp = create_mcp(settings(tmp_path, host), families=["rag"])
    elapsed = await run_at_once(mcp, "rag_query", {"question": "why so slow?"})
    assert counter.done == CALLS and counter.most == CALLS
    assert elapsed < 4 * SLOW_S, f"{CALLS} calls of {SLOW_S:g}s took {elapsed:.1f}s"


async def test_a_tools_limit_holds_across_its_calls(tmp_path: Path, slow: tuple[str, Counter]) -> None:
    host, counter = slow
    mcp = create_mcp(settings(tmp_path, host, MCP_TOOL_CONCURRENCY_TOOLS='{"rag_query": 2}'), families=["rag"])
    await run_at_once(mcp, "rag_query", {"question": "one at a time?"}, calls=6)
    assert counter.done == 6 and counter.most == 2


async def test_the_default_limit_applies_to_tools_without_their_own(
    tmp_path: Path, slow: tuple[str, Counter]
) -> None:
    host, counter = slow
    mcp = create_mcp(settings(tmp_path, host, MCP_TOOL_CONCURRENCY=3, MCP_TOOL_CONCURRENCY_TOOLS="{}"),
                     families=["rag"])
    await run_at_once(mcp, "rag_query", {"question": "three?"}, calls=6)
    assert counter.most == 3


def blocking_tools(mcp: FastMCP, settings: McpSettings) -> None:
    """A catalog name whose body blocks its thread, as file and git tools do."""
    counter = Slow.counter

    @mcp.tool(name="read_file")
    def read_file(path: str) -> str:
        """Block for SLOW_S seconds."""
        with counter:
            time.sleep(SLOW_S)
        return path


async def test_blocking_tools_run_off_the_event_loop(tmp_path: Path, slow: tuple[str, Counter]) -> None:
    _, counter = slow
    mcp = create_mcp(make_settings(tmp_path), families=[blocking_tools])
    ticks = 0

    async def tick() -> None:  # the loop stays free while the calls block their threads
        nonlocal ticks
        while True:
            await asyncio.sleep(0.05)
            ticks += 1

    ticker = asyncio.create_task(tick())
    elapsed = await run_at_once(mcp, "read_file", {"path": "a.txt"})
    ticker.cancel()
    assert counter.most == CALLS and elapsed < 4 * SLOW_S
    assert ticks >= 5


def test_a_limit_below_one_is_refused() -> None:
    with pytest.raises(ValueError, match="at least 1: web_scrape"):
        McpSettings(_env_file=None, MCP_TOOL_CONCURRENCY_TOOLS='{"web_scrape": 0}')  # type: ignore[call-arg]


# A browser context takes a while to start on a loaded machine: the page is held long enough that every call
# reaches the server before the first one is answered.
SLOW_PAGE_S = 5.0


@pytest.mark.skipif(not CHROMIUM.is_file(), reason="Debian's chromium is not installed")
async def test_eight_slow_pages_are_scraped_at_once(tmp_path: Path) -> None:
    with slow_server(SLOW_PAGE_S) as (host, counter):
        await scrape_at_once(tmp_path, host)
    assert counter.done == CALLS and counter.most == CALLS


async def scrape_at_once(tmp_path: Path, host: str) -> None:
    mcp = create_mcp(settings(tmp_path, host, CHROMIUM_PATH=str(CHROMIUM)), families=["web"])
    # every page is held by the server at the same moment: the calls overlap, not queue. No time bound:
    # 8 browser contexts cost CPU that a loaded 2-core machine cannot promise (tests.bench.caches measures it).
    await run_at_once(mcp, "web_scrape", {"url": f"http://{host}/slow"})
