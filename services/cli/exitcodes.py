"""Exit codes of the `ai` command (also listed in `ai --help`)."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    API_ERROR = 1
    USAGE = 2
    UNREACHABLE = 3
    INTERRUPTED = 130


MEANINGS = {
    ExitCode.OK: "answered",
    ExitCode.API_ERROR: "the gateway answered with an error (bad model, bad request, timeout)",
    ExitCode.USAGE: "usage error (bad flag value, nothing to ask)",
    ExitCode.UNREACHABLE: "the gateway is not reachable: start it with `make run` or `ai-suite up p1`",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C)",
}
