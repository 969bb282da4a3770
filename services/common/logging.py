"""Logging set-up: JSON lines (or plain text on a terminal), each with the request id it was logged under."""

from __future__ import annotations

import logging
import logging.handlers
import sys
from pathlib import Path

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

from services.common.request_id import RequestIdFilter

JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s"
# uvicorn repeats each message with terminal colour codes as an extra field; the JSON line keeps the plain one
LEFT_OUT = (*RESERVED_ATTRS, "color_message")
DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_BACKUPS = 5


class TextFormatter(logging.Formatter):
    """The plain-text line, with the request id at the end when there is one."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        request_id = getattr(record, "request_id", None)
        return f"{line} [request_id={request_id}]" if request_id else line


def json_formatter() -> JsonFormatter:
    return JsonFormatter(JSON_FIELDS, reserved_attrs=LEFT_OUT)


def configure_logging(level: str = "INFO", json_lines: bool = False, log_file: Path | None = None, *,
                      max_bytes: int = DEFAULT_MAX_BYTES, backups: int = DEFAULT_BACKUPS) -> None:
    """Configure the root logger once per process; `log_file` adds JSON lines to a size-rotated file.

    Natively the runner sends stdout and stderr to the service's log file and its supervisor rotates that
    file, so `log_file` is only set in containers, where the process is the file's one writer.
    """
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(json_formatter() if json_lines else TextFormatter())
    handlers: list[logging.Handler] = [handler]
    if log_file is not None:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.handlers.RotatingFileHandler(
            log_file, maxBytes=max_bytes, backupCount=backups, encoding="utf-8")
        file_handler.setFormatter(json_formatter())
        handlers.append(file_handler)
    for each in handlers:
        # on the handlers, not the root logger: a logger's own filters skip records of its children
        each.addFilter(RequestIdFilter())
    root = logging.getLogger()
    root.handlers[:] = handlers
    root.setLevel(level.upper())
