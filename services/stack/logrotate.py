"""Size-based rotation of the native services' log files, done by the supervisor.

Each service writes its stdout and stderr to `${DATA_DIR}/logs/<service>.log` through a descriptor the runner
opened in append mode, which the process keeps for its life. Renaming the file would leave the process
writing into the renamed one, so rotation copies the file to `<name>.1` (older copies move up to
`<name>.<backups>`) and truncates it in place: an appending writer carries on at the new end. Lines written
between the final catch-up copy and the truncation (microseconds) can be lost; logrotate's copytruncate has
the same window. A read does not wait for a write in progress, so the copy can end in part of a line whose
write the truncation then waits for and removes; the copy drops such an unfinished last line (after its last
newline), so no file holds a torn line.
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

log = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 10 * 1024 * 1024
DEFAULT_BACKUPS = 5


def backups_of(path: Path, backups: int) -> list[Path]:
    """`path.1` ... `path.<backups>`, newest first."""
    return [path.with_name(f"{path.name}.{i}") for i in range(1, backups + 1)]


def rotate_if_large(path: Path, max_bytes: int, backups: int) -> bool:
    """Rotate `path` when it has reached `max_bytes`; True when it did."""
    try:
        if path.stat().st_size < max_bytes:
            return False
    except FileNotFoundError:
        return False
    older = backups_of(path, backups)
    if older:
        for newer, oldest in zip(reversed(older[:-1]), reversed(older[1:]), strict=True):
            if newer.exists():
                os.replace(newer, oldest)
        tmp = path.with_name(f".{path.name}.rotating")
        with path.open("rb") as source, tmp.open("w+b") as copy:
            shutil.copyfileobj(source, copy)
            tail = source.read()  # what the services appended during the copy
            os.truncate(path, 0)  # at once: a line written between that read and this truncation is lost
            copy.write(tail)
            _drop_unfinished_line(copy)
        os.replace(tmp, older[0])
    else:
        os.truncate(path, 0)
    return True


def _drop_unfinished_line(copy: BinaryIO, chunk: int = 64 * 1024) -> None:
    """Cut the copy after its last newline: what follows is part of a write the copy caught half-way. A copy with
    no newline at all is not made of lines and stays whole."""
    end = copy.seek(0, os.SEEK_END)
    position = end
    while position > 0:
        start = max(0, position - chunk)
        copy.seek(start)
        found = copy.read(position - start).rfind(b"\n")
        if found >= 0:
            copy.truncate(start + found + 1)
            return
        position = start


def rotate_logs(paths: Iterable[Path], max_bytes: int, backups: int) -> list[Path]:
    """Rotate every file of `paths` that is too large; returns those rotated. A failure is logged, not raised."""
    rotated = []
    for path in paths:
        try:
            if rotate_if_large(path, max_bytes, backups):
                rotated.append(path)
        except OSError as exc:
            log.warning("could not rotate %s: %s", path, exc)
    return rotated
