"""A bare FastMCP server with one `read_file` tool and nothing else: the library's own cost, for the MCP benchmark.

    python -m tests.bench.mcp_plain PORT

No key, role, approval, audit, rate limit, path guard or metrics: the tool reads the file it is given. The
benchmark calls it beside the suite's server so their ratio is measured in one run.
"""

from __future__ import annotations

import sys
from pathlib import Path

import uvicorn
from fastmcp import FastMCP

mcp = FastMCP("plain")


@mcp.tool
def read_file(path: str) -> str:
    """Return the text of the file at `path`."""
    return Path(path).read_text(encoding="utf-8")


@mcp.custom_route("/health", methods=["GET"])
async def health(request: object) -> object:
    from starlette.responses import JSONResponse

    return JSONResponse({"status": "healthy"})


if __name__ == "__main__":
    uvicorn.run(mcp.http_app(path="/mcp"), host="127.0.0.1", port=int(sys.argv[1]), log_level="warning")
