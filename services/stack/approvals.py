"""`ai-approvals`, run with the settings the native runner gives mcp-server, so any folder finds its database."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from services.mcp_server import approvals_cli
from services.stack.compose import ComposeError
from services.stack.interpolate import InterpolationError
from services.stack.runner import Stack, StackError

log = logging.getLogger(__name__)


def native_environment() -> dict[str, str]:
    """mcp-server's environment from the compose files; empty where they are absent (inside the image, whose
    environment already has the settings)."""
    try:
        return dict(Stack("p3").services["mcp-server"].env)
    except (StackError, ComposeError, InterpolationError, OSError, KeyError) as exc:
        log.debug("no native mcp-server settings: %s", exc)
        return {}


def main(argv: Sequence[str] | None = None) -> int:
    return approvals_cli.main(argv, native_environment())


if __name__ == "__main__":
    sys.exit(main())
