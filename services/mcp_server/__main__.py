"""`python -m services.mcp_server`: streamable HTTP on MCP_PORT, or `--stdio` for Claude Desktop."""

from __future__ import annotations

import argparse

from services.common.logging import configure_logging
from services.common.serve import serve
from services.mcp_server.app import create_app
from services.mcp_server.gate.db import SecurityDbError
from services.mcp_server.server import create_mcp
from services.mcp_server.settings import McpSettings


def run_stdio(settings: McpSettings) -> None:
    """Serve over stdin/stdout as the local owner; logs go to stderr so the protocol stream stays clean."""
    configure_logging(settings.log_level, settings.log_json, settings.log_file)
    create_mcp(settings).run(transport="stdio", show_banner=False)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.mcp_server", description=__doc__)
    parser.add_argument("--stdio", action="store_true", help="serve MCP over stdin/stdout as the local owner")
    args = parser.parse_args(argv)
    settings = McpSettings()
    try:
        if args.stdio:
            run_stdio(settings)
            return
        serve(create_app, settings, settings.port)
    except SecurityDbError as exc:
        # a refusal at start-up (an audit key others can read, a log that does not verify): say why, no traceback
        raise SystemExit(f"mcp-server: {exc}") from None


if __name__ == "__main__":
    main()
