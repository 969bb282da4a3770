"""Token buckets per user and tool, and the middleware's clear error with a retry time."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest
from fastmcp import Client
from fastmcp.exceptions import ToolError

from services.mcp_server.gate.ratelimit import RateLimited, RateLimiter
from services.mcp_server.server import build_server
from services.mcp_server.settings import McpSettings
from tests.unit.mcp.security_support import fake_tools, make_settings


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_burst_then_refill() -> None:
    clock = Clock()
    limiter = RateLimiter(per_second=2, burst=3, clock=clock)
    for _ in range(3):
        limiter.take("ann", "read_file")
    with pytest.raises(RateLimited) as err:
        limiter.take("ann", "read_file")
    assert err.value.retry_after == pytest.approx(0.5)
    assert "retry in 0.50 s" in str(err.value)
    clock.now += 0.5
    limiter.take("ann", "read_file")  # one token back after 1/rate seconds
    with pytest.raises(RateLimited):
        limiter.take("ann", "read_file")
    clock.now += 100
    for _ in range(3):  # refill stops at the bucket size
        limiter.take("ann", "read_file")
    with pytest.raises(RateLimited):
        limiter.take("ann", "read_file")


def test_buckets_are_per_user_and_per_tool() -> None:
    limiter = RateLimiter(per_second=1, burst=1, clock=Clock())
    limiter.take("ann", "read_file")
    limiter.take("bob", "read_file")
    limiter.take("ann", "list_files")
    with pytest.raises(RateLimited):
        limiter.take("ann", "read_file")


def test_tool_override_beats_the_default() -> None:
    clock = Clock()
    limiter = RateLimiter(per_second=100, burst=100, overrides={"run_command": (0.5, 1)}, clock=clock)
    limiter.take("ann", "run_command")
    with pytest.raises(RateLimited) as err:
        limiter.take("ann", "run_command")
    assert err.value.retry_after == pytest.approx(2.0)
    for _ in range(50):
        limiter.take("ann", "read_file")


async def test_middleware_refuses_with_retry_time_and_audits(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, RATE_LIMIT_TOOLS='{"read_file": [0.01, 2]}')
    mcp, layer = build_server(settings, [fake_tools])
    async with Client(mcp) as client:
        await client.call_tool("read_file", {"path": "a"})
        await client.call_tool("read_file", {"path": "a"})
        with pytest.raises(ToolError) as err:
            await client.call_tool("read_file", {"path": "a"})
        assert re.search(r"rate limit exceeded for user 'owner' on tool 'read_file': retry in \d+\.\d\d s",
                         str(err.value))
        await client.call_tool("write_file", {"path": "a", "content": "b"})  # other tools keep their own bucket
    statuses = [r[0] for r in sqlite3.connect(layer.db_path).execute("SELECT status FROM audit_log ORDER BY id")]
    assert statuses == ["allowed", "allowed", "denied", "allowed"]


async def test_rate_limit_switched_off(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, RATE_LIMIT_TOOLS='{"read_file": [0.01, 1]}', RATE_LIMIT_ENABLED=False)
    mcp, _ = build_server(settings, [fake_tools])
    async with Client(mcp) as client:
        for _ in range(5):
            await client.call_tool("read_file", {"path": "a"})


def test_the_default_bucket_allows_50_per_second_with_a_burst_of_200(tmp_path: Path) -> None:
    settings = McpSettings(_env_file=None, DATA_DIR=tmp_path)  # type: ignore[call-arg]
    clock = Clock()
    limiter = RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst, settings.rate_limit_tools,
                          clock=clock)
    for _ in range(200):
        limiter.take("ann", "read_file")
    with pytest.raises(RateLimited):
        limiter.take("ann", "read_file")
    clock.now += 1.0
    for _ in range(50):
        limiter.take("ann", "read_file")
    with pytest.raises(RateLimited):
        limiter.take("ann", "read_file")
    for _ in range(10):  # the slower per-tool defaults still apply
        limiter.take("ann", "run_command")
    with pytest.raises(RateLimited):
        limiter.take("ann", "run_command")
