"""Paths a client names must stay under DOCUMENTS_DIR, after every symlink is resolved."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from services.common.errors import BadRequest, NotFound


def is_inside(path: str, root: str) -> bool:
    """True when the real `path` is `root` or below it (prefix tricks like /docs2 do not count)."""
    return os.path.commonpath([path, root]) == root


def resolve_inside(root: Path, given: str) -> Path:
    """The real path of `given` (relative to `root`, or absolute); 400 when it escapes `root`."""
    if not given or "\x00" in given:
        raise BadRequest("a path must be a non-empty string without NUL bytes", param="paths")
    real_root = os.path.realpath(root)
    candidate = given if os.path.isabs(given) else os.path.join(real_root, given)
    real = os.path.realpath(candidate)
    if not is_inside(real, real_root):
        raise BadRequest(f"path {given!r} is outside DOCUMENTS_DIR", code="path_outside_root", param="paths")
    if not os.path.exists(real):
        raise NotFound(f"path {given!r} does not exist under DOCUMENTS_DIR", code="path_not_found")
    return Path(real)


OUTSIDE_ROOT = "symlink points outside DOCUMENTS_DIR"
NOT_A_FILE = "not a regular file"


def walk_files(root: Path, start: Path) -> Iterator[tuple[Path, str | None]]:
    """Files under `start` (or `start` itself), each with a reason when it must be skipped."""
    real_root = os.path.realpath(root)
    if start.is_file():
        yield start, None
        return
    for folder, dirs, files in os.walk(start, followlinks=False):
        # hidden folders (.git, .venv) hold tool state, not documents
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(files):
            if name.startswith("."):
                continue
            path = os.path.join(folder, name)
            real = os.path.realpath(path)
            if not is_inside(real, real_root):
                yield Path(path), OUTSIDE_ROOT
            elif not os.path.isfile(real):
                yield Path(path), NOT_A_FILE
            else:
                yield Path(real), None


def relative_name(root: Path, path: Path) -> str:
    """The document's name: its path relative to DOCUMENTS_DIR, with forward slashes."""
    return Path(os.path.relpath(path, os.path.realpath(root))).as_posix()
