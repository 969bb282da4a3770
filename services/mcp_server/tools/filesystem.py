"""Filesystem tools: list, read, write (atomic), create folders, search, and a system summary.

Every tool opens what it touches through PathGuard below an allowed root's descriptor, with no symlink followed,
and judges the opened descriptor (its kind and size), so a folder swapped for a link mid-call leaks nothing.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import platform
import stat
import sys
import time
from collections.abc import Generator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import psutil
from fastmcp import FastMCP
from fastmcp.exceptions import ToolError
from pydantic import Field

from services.mcp_server.catalog import tool
from services.mcp_server.guards.paths import MissingPathError, PathGuard
from services.mcp_server.guards.safe_open import O_PATH, walk_tree
from services.mcp_server.settings import McpSettings

MAX_LIST_ENTRIES = 1000
MAX_SEARCH_RESULTS = 1000
MAX_SEARCH_FILES = 20_000
SKIPPED_FOLDERS = frozenset({".git", ".hg", ".svn", "node_modules", "__pycache__", ".venv"})
# O_NONBLOCK: opening a planted FIFO must not hang; O_NOCTTY: a planted terminal device must not become ours.
FILE_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY
FOLDER_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NONBLOCK

WorkingDir = Annotated[
    str | None, Field(description="Folder that relative paths resolve against (default: the first allowed root).")
]


def _kind(mode: int) -> str:
    if stat.S_ISLNK(mode):
        return "symlink"
    return "directory" if stat.S_ISDIR(mode) else "file" if stat.S_ISREG(mode) else "other"


def printable(name: str) -> str:
    """A file name as valid UTF-8: bytes that are not (kept by Python as surrogates) become U+FFFD."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _entry(item: os.DirEntry[str]) -> dict[str, Any] | None:
    try:
        info = item.stat(follow_symlinks=False)
    except FileNotFoundError:
        return None  # removed since the folder was read
    return {
        "name": printable(item.name), "type": _kind(info.st_mode), "size": info.st_size,
        "modified": datetime.fromtimestamp(info.st_mtime, UTC).isoformat(timespec="seconds"),
    }


def decode_text(data: bytes, shown: str) -> str:
    """UTF-8 text, or a ToolError for binary content."""
    if b"\0" in data[:8192]:
        raise ToolError(f"{shown!r} looks like a binary file; read_file returns text only")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ToolError(f"{shown!r} is not UTF-8 text (byte {exc.start}); read_file returns text only") from exc


def read_limited(guard: PathGuard, real: Path, shown: str, limit: int) -> bytes:
    """The bytes of a regular file, judged by its open descriptor: a folder, a device or more than `limit` fails."""
    with guard.opened(real, FILE_FLAGS, shown) as fd:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise ToolError(f"{shown!r} is a directory; use list_files")
        if not stat.S_ISREG(info.st_mode):
            raise ToolError(f"{shown!r} is not a regular file")
        # The size on the descriptor turns most big files away unread; the bounded read catches one still growing.
        if info.st_size <= limit:
            data = _read_up_to(fd, limit + 1, shown)
            if len(data) <= limit:
                return data
    raise ToolError(f"{shown!r} is larger than {limit} bytes (TOOL_MAX_READ_BYTES)")


def _read_up_to(fd: int, size: int, shown: str) -> bytes:
    chunks, left = [], size
    try:
        while left > 0:
            chunk = os.read(fd, left)
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
    except OSError as exc:
        raise ToolError(f"cannot read {shown!r}: {exc.strerror or 'system error'}") from exc
    return b"".join(chunks)


def list_folder(guard: PathGuard, folder: Path, shown: str, include_hidden: bool) -> dict[str, Any]:
    """Entries of one folder, sorted, read from its descriptor without following symlinks."""
    with guard.opened(folder, FOLDER_FLAGS, shown) as fd, os.scandir(fd) as items:
        found = [_entry(item) for item in items if include_hidden or not item.name.startswith(".")]
    entries = [entry for entry in found if entry is not None]
    entries.sort(key=lambda entry: (entry["type"] != "directory", entry["name"]))
    return {
        "path": guard.display(folder), "entries": entries[:MAX_LIST_ENTRIES],
        "total": len(entries), "truncated": len(entries) > MAX_LIST_ENTRIES,
    }


def search_tree(
    guard: PathGuard, folder: Path, shown: str, pattern: str, content: str | None, max_results: int, read_limit: int
) -> dict[str, Any]:
    """Walk `folder` by descriptors (never into a symlink) for names matching `pattern`, optionally with `content`."""
    matches: list[dict[str, Any]] = []
    scanned = 0
    needle = content.lower() if content else None
    hidden = guard.own_data_ids()
    with guard.opened(folder, FOLDER_FLAGS, shown) as top, contextlib.closing(_tree_files(top, hidden)) as files:
        for dir_fd, name, relative in files:
            scanned += 1
            if not (fnmatch.fnmatch(name, pattern) or fnmatch.fnmatch(relative, pattern)):
                continue
            if needle is None:
                matches.append({"path": relative})
            else:
                matches.extend(_content_hits(dir_fd, name, relative, needle, read_limit, max_results - len(matches)))
            if len(matches) >= max_results or scanned >= MAX_SEARCH_FILES:
                return _search_result(guard, folder, matches[:max_results], scanned, truncated=True)
    return _search_result(guard, folder, matches, scanned, truncated=False)


def _tree_files(top: int, hidden: frozenset[tuple[int, int]]) -> Generator[tuple[int, str, str]]:
    """(folder fd, name, path relative to the top) for every non-folder entry, in walk order."""
    for prefix, dir_fd, names in walk_tree(top, SKIPPED_FOLDERS, hidden):
        for name in names:
            yield dir_fd, name, printable(prefix + name)


def _content_hits(
    dir_fd: int, name: str, relative: str, needle: str, read_limit: int, room: int
) -> list[dict[str, Any]]:
    try:
        # O_NOFOLLOW by name in the folder's fd: a symlink in the tree may point outside the roots, so it is never read.
        fd = os.open(name, FILE_FLAGS | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode) or info.st_size > read_limit:
                return []
            data = handle.read(read_limit)
    except OSError:
        return []
    if b"\0" in data[:8192]:
        return []
    hits = []
    for number, line in enumerate(data.decode("utf-8", "replace").splitlines(), start=1):
        if needle in line.lower():
            hits.append({"path": relative, "line": number, "text": line.strip()[:200]})
            if len(hits) >= room:
                break
    return hits


def _search_result(
    guard: PathGuard, folder: Path, matches: list[dict[str, Any]], scanned: int, truncated: bool
) -> dict[str, Any]:
    return {"root": guard.display(folder), "matches": matches, "files_scanned": scanned, "truncated": truncated}


def system_info(guard: PathGuard, folder: Path) -> dict[str, Any]:
    """Platform, CPU, memory and disk facts; nothing from the environment, so no secrets."""
    memory = psutil.virtual_memory()
    with guard.opened(folder, O_PATH | os.O_DIRECTORY) as fd:
        disk = os.fstatvfs(fd)
    free, used = disk.f_bavail * disk.f_frsize, (disk.f_blocks - disk.f_bfree) * disk.f_frsize
    return {
        "platform": {"system": platform.system(), "release": platform.release(), "machine": platform.machine()},
        "python": platform.python_version(),
        "python_implementation": sys.implementation.name,
        "cpu": {"logical": psutil.cpu_count(), "physical": psutil.cpu_count(logical=False),
                "percent": psutil.cpu_percent(interval=None)},
        "memory": {"total": memory.total, "available": memory.available, "percent": memory.percent},
        "disk": {"path": guard.display(folder), "total": disk.f_blocks * disk.f_frsize, "free": free,
                 "percent": round(100 * used / (used + free), 1) if used + free else 0.0},
        "uptime_seconds": int(time.time() - psutil.boot_time()),
        "allowed_roots": [guard.display(root) for root in guard.roots],
    }


def register(mcp: FastMCP, settings: McpSettings) -> None:
    """Add the six filesystem tools."""
    guard = PathGuard.shared(settings)

    @tool(mcp, "list_files")
    def list_files(
        path: Annotated[str, Field(description="Folder to list, relative to working_dir or absolute.")] = ".",
        include_hidden: Annotated[bool, Field(description="Also list names starting with a dot.")] = False,
        working_dir: WorkingDir = None,
    ) -> dict[str, Any]:
        """List a folder's entries with type, size and modification time."""
        return list_folder(guard, guard.locate(path, working_dir), path, include_hidden)

    @tool(mcp, "read_file")
    def read_file(
        path: Annotated[str, Field(description="Text file to read, relative to working_dir or absolute.")],
        working_dir: WorkingDir = None,
    ) -> dict[str, Any]:
        """Read a UTF-8 text file (up to TOOL_MAX_READ_BYTES)."""
        real = guard.locate(path, working_dir)
        data = read_limited(guard, real, path, settings.max_read_bytes)
        return {"path": guard.display(real), "size": len(data), "content": decode_text(data, path)}

    @tool(mcp, "write_file")
    def write_file(
        path: Annotated[str, Field(description="File to write, relative to working_dir or absolute.")],
        content: Annotated[str, Field(description="Full new text of the file (UTF-8).")],
        create_parents: Annotated[bool, Field(description="Create missing parent folders.")] = False,
        working_dir: WorkingDir = None,
    ) -> dict[str, Any]:
        """Write a text file atomically (temp file, then rename), never through a symlink."""
        real = guard.resolve_new(path, working_dir)
        if create_parents:
            guard.make_dirs(real.parent)
        data = content.encode("utf-8")
        try:
            created = guard.write_atomic(real, data)
        except MissingPathError as exc:
            hint = f"the folder of {path!r} does not exist; pass create_parents=true or create it first"
            raise ToolError(hint) from exc
        return {"path": guard.display(real), "bytes_written": len(data), "created": created}

    @tool(mcp, "create_directory")
    def create_directory(
        path: Annotated[str, Field(description="Folder to create (with missing parents).")],
        working_dir: WorkingDir = None,
    ) -> dict[str, Any]:
        """Create a folder and any missing parents inside the allowed roots."""
        real = guard.resolve_new(path, working_dir)
        return {"path": guard.display(real), "created": guard.make_dirs(real)}

    @tool(mcp, "search_files")
    def search_files(
        pattern: Annotated[str, Field(description="Glob for file names or relative paths, e.g. '*.py'.")] = "*",
        content: Annotated[
            str | None, Field(description="Only files whose text contains this (case-insensitive); lists lines.")
        ] = None,
        path: Annotated[str, Field(description="Folder to search, relative to working_dir.")] = ".",
        max_results: Annotated[int, Field(ge=1, le=MAX_SEARCH_RESULTS, description="Most matches returned.")] = 100,
        working_dir: WorkingDir = None,
    ) -> dict[str, Any]:
        """Find files by name pattern and optionally by content, below a folder (symlinks are not followed)."""
        folder = guard.locate(path, working_dir)
        return search_tree(guard, folder, path, pattern, content, max_results, settings.max_read_bytes)

    @tool(mcp, "get_system_info")
    def get_system_info(working_dir: WorkingDir = None) -> dict[str, Any]:
        """Describe this machine: OS, Python, CPU, memory, and disk space where working_dir lies."""
        return system_info(guard, guard.base(working_dir))
