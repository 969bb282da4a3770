"""`ai-suite mcp --stdio`, started the way Claude Desktop starts it: from `/`, with the official stdio client."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from services.mcp_server.catalog import TOOLS

pytestmark = pytest.mark.integration


async def test_stdio_server_runs_as_the_owner_and_shares_the_audit_log(tmp_path: Path) -> None:
    root, data = tmp_path / "root", tmp_path / "data"
    root.mkdir()
    (root / "hello.txt").write_text("hello from stdio\n")
    env = {"DATA_DIR": str(data), "MCP_ALLOWED_ROOTS": str(root), "LOG_LEVEL": "WARNING"}
    params = StdioServerParameters(command=sys.executable, args=["-m", "services.stack", "mcp", "--stdio"],
                                   env=env, cwd="/")
    with (tmp_path / "stderr.log").open("w") as errlog:
        async with stdio_client(params, errlog=errlog) as (read, write):
            async with ClientSession(read, write) as session:
                await session.initialize()
                assert {tool.name for tool in (await session.list_tools()).tools} == set(TOOLS)
                read_back = await session.call_tool("read_file", {"path": "hello.txt", "working_dir": str(root)})
                assert not read_back.is_error and "hello from stdio" in json.dumps(read_back.structured_content)
                gated = await session.call_tool("run_command", {"command": "echo hi", "working_dir": str(root)})
                assert gated.is_error
                assert json.loads(gated.content[0].text)["approval_required"] is True
    assert (data / "security" / "security.db").is_file()
    verify = subprocess.run([sys.executable, "-m", "services.stack", "audit", "verify"], cwd="/",
                            env={**os.environ, **env}, capture_output=True, text=True, timeout=60)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    with closing(sqlite3.connect(f"file:{data / 'security' / 'security.db'}?mode=ro", uri=True)) as conn:
        rows = conn.execute("SELECT user_name, tool, status FROM audit_log ORDER BY id").fetchall()
    assert rows == [("owner", "read_file", "allowed"), ("owner", "run_command", "pending")]
