"""Logging set-up: plain text on a terminal, JSON lines in containers."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from pythonjsonlogger.json import JsonFormatter


def configure_logging(level: str = "INFO", json_lines: bool = False, log_file: Path | None = None) -> None:
    """Configure the root logger once per process; `log_file` adds JSON lines to a file."""
    handler = logging.StreamHandler(sys.stderr)
    if json_lines:
        handler.setFormatter(JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handlers: list[logging.Handler] = [handler]
    if log_file is not None:
        # in containers stdout goes to `docker logs`; the file puts the same lines under ${DATA_DIR}/logs
        log_file.parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(log_file, encoding="utf-8")
        file_handler.setFormatter(JsonFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        handlers.append(file_handler)
    root = logging.getLogger()
    root.handlers[:] = handlers
    root.setLevel(level.upper())
