"""Filesystem tools: list, read, write (atomic), create folders, search, and a system summary."""

from __future__ import annotations

import fnmatch
import os
import platform
import stat
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import psutil
from fastmcp import FastMCP
from fastmcp.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import Field

from services.mcp_server.security.paths import PathGuard
from services.mcp_server.settings import McpSettings

MAX_LIST_ENTRIES = 1000
MAX_SEARCH_RESULTS = 1000
MAX_SEARCH_FILES = 20_000
SKIPPED_FOLDERS = frozenset({".git", ".hg", ".svn", "node_modules", "__pycache__", ".venv"})

READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)
WRITES = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=False)
OVERWRITES = ToolAnnotations(read_only_hint=False, destructive_hint=True, open_world_hint=False)
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


def _entry(item: os.DirEntry[str]) -> dict[str, Any]:
    info = item.stat(follow_symlinks=False)
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


def list_folder(guard: PathGuard, folder: Path, include_hidden: bool) -> dict[str, Any]:
    """Entries of one folder, sorted, without following symlinks."""
    if not folder.is_dir():
        raise ToolError(f"{guard.display(folder)!r} is not a directory")
    with os.scandir(folder) as items:
        entries = [_entry(item) for item in items if include_hidden or not item.name.startswith(".")]
    entries.sort(key=lambda entry: (entry["type"] != "directory", entry["name"]))
    return {
        "path": guard.display(folder), "entries": entries[:MAX_LIST_ENTRIES],
        "total": len(entries), "truncated": len(entries) > MAX_LIST_ENTRIES,
    }


def search_tree(
    guard: PathGuard, folder: Path, pattern: str, content: str | None, max_results: int, read_limit: int
) -> dict[str, Any]:
    """Walk `folder` (no symlinks followed) for names matching `pattern`, optionally lines containing `content`."""
    matches: list[dict[str, Any]] = []
    scanned = 0
    needle = content.lower() if content else None
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIPPED_FOLDERS)
        for name in sorted(filenames):
            scanned += 1
            path = Path(dirpath) / name
            relative = printable(str(path.relative_to(folder)))
            if not (fnmatch.fnmatch(name, pattern) or fnmatch.fnmatch(relative, pattern)):
                continue
            if needle is None:
                matches.append({"path": relative})
            else:
                matches.extend(_content_hits(path, relative, needle, read_limit, max_results - len(matches)))
            if len(matches) >= max_results or scanned >= MAX_SEARCH_FILES:
                return _search_result(guard, folder, matches[:max_results], scanned, truncated=True)
    return _search_result(guard, folder, matches, scanned, truncated=False)


def _content_hits(path: Path, relative: str, needle: str, read_limit: int, room: int) -> list[dict[str, Any]]:
    try:
        # O_NOFOLLOW: a symlink in the tree may point outside the roots, so it is never read.
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)
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
    disk = psutil.disk_usage(str(folder))
    return {
        "platform": {"system": platform.system(), "release": platform.release(), "machine": platform.machine()},
        "python": platform.python_version(),
        "python_implementation": sys.implementation.name,
        "cpu": {"logical": psutil.cpu_count(), "physical": psutil.cpu_count(logical=False),
                "percent": psutil.cpu_percent(interval=None)},
        "memory": {"total": memory.total, "available": memory.available, "percent": memory.percent},
        "disk": {"path": guard.display(folder), "total": disk.total, "free": disk.free, "percent": disk.percent},
        "uptime_seconds": int(time.time() - psutil.boot_time()),
        "allowed_roots": [guard.display(root) for root in guard.roots],
    }


def register(mcp: FastMCP, settings: McpSettings) -> None:
    """Add the six filesystem tools."""
    guard = PathGuard(settings)

    @mcp.tool(name="list_files", annotations=READ_ONLY)
    def list_files(
        path: Annotated[str, Field(description="Folder to list, relative to working_dir or absolute.")] = ".",
        include_hidden: Annotated[bool, Field(description="Also list names starting with a dot.")] = False,
        working_dir: WorkingDir = None,
    ) -> dict[str, Any]:
        """List a folder's entries with type, size and modification time."""
        return list_folder(guard, guard.resolve(path, working_dir), include_hidden)

    @mcp.tool(name="read_file", annotations=READ_ONLY)
    def read_file(
        path: Annotated[str, Field(description="Text file to read, relative to working_dir or absolute.")],
        working_dir: WorkingDir = None,
    ) -> dict[str, Any]:
        """Read a UTF-8 text file (up to TOOL_MAX_READ_BYTES)."""
        real = guard.resolve(path, working_dir)
        if real.is_dir():
            raise ToolError(f"{path!r} is a directory; use list_files")
        limit = settings.max_read_bytes
        data = guard.read_bytes(real, limit)
        if len(data) > limit:
            raise ToolError(f"{path!r} is larger than {limit} bytes (TOOL_MAX_READ_BYTES)")
        return {"path": guard.display(real), "size": len(data), "content": decode_text(data, path)}

    @mcp.tool(name="write_file", annotations=OVERWRITES)
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
        elif not real.parent.is_dir():
            raise ToolError(f"the folder of {path!r} does not exist; pass create_parents=true or create it first")
        data = content.encode("utf-8")
        created = guard.write_atomic(real, data)
        return {"path": guard.display(real), "bytes_written": len(data), "created": created}

    @mcp.tool(name="create_directory", annotations=WRITES)
    def create_directory(
        path: Annotated[str, Field(description="Folder to create (with missing parents).")],
        working_dir: WorkingDir = None,
    ) -> dict[str, Any]:
        """Create a folder and any missing parents inside the allowed roots."""
        real = guard.resolve_new(path, working_dir)
        if real.exists() and not real.is_dir():
            raise ToolError(f"{path!r} exists and is not a directory")
        return {"path": guard.display(real), "created": guard.make_dirs(real)}

    @mcp.tool(name="search_files", annotations=READ_ONLY)
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
        folder = guard.resolve(path, working_dir)
        if not folder.is_dir():
            raise ToolError(f"{path!r} is not a directory")
        return search_tree(guard, folder, pattern, content, max_results, settings.max_read_bytes)

    @mcp.tool(name="get_system_info", annotations=READ_ONLY)
    def get_system_info(working_dir: WorkingDir = None) -> dict[str, Any]:
        """Describe this machine: OS, Python, CPU, memory, and disk space where working_dir lies."""
        return system_info(guard, guard.base(working_dir))
