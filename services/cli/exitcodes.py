"""Exit codes of the `ai` command (also listed in `ai --help`)."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    API_ERROR = 1
    USAGE = 2
    UNREACHABLE = 3
    NOT_APPROVED = 4
    INTERRUPTED = 130


MEANINGS = {
    ExitCode.OK: "answered",
    ExitCode.API_ERROR: "the service answered with an error (bad model, bad request, timeout, tool failed or denied)",
    ExitCode.USAGE: "usage error (bad flag value, nothing to ask)",
    ExitCode.UNREACHABLE: "the gateway is not reachable: start it with `make run` or `ai-suite up p1` "
    "(the RAG service or MCP server for --rag/--index and --mcp: `ai-suite up p2` or `p3`)",
    ExitCode.NOT_APPROVED: "an MCP call that needed approval was rejected or expired, so it did not run",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C)",
}
