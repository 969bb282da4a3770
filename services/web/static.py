"""desktop-app/'s files, opened one path component at a time without following a symlink."""

from __future__ import annotations

import errno
import mimetypes
import os
import stat
from pathlib import Path

# What the browser must be told exactly: a module script with a wrong type is refused under nosniff.
MEDIA_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".mjs": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".json": "application/json",
    ".map": "application/json",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
    ".woff2": "font/woff2",
    ".txt": "text/plain; charset=utf-8",
    ".md": "text/plain; charset=utf-8",
}
MAX_FILE_BYTES = 32 * 1024 * 1024
INDEX = "index.html"


def media_type(name: str) -> str:
    suffix = os.path.splitext(name)[1].lower()
    return MEDIA_TYPES.get(suffix) or mimetypes.guess_type(name)[0] or "application/octet-stream"


def safe_parts(relative: str) -> list[str] | None:
    """The path's components, or None when one is empty, `.`, `..`, hidden or holds a separator or NUL."""
    parts = relative.split("/")
    for part in parts:
        if not part or part.startswith(".") or "\\" in part or "\0" in part:
            return None
    return parts


def read_static(root: Path, relative: str) -> bytes | None:
    """The bytes of the regular file at `root/relative`, or None when there is none to serve.

    Each directory is opened relative to the one before with O_NOFOLLOW, and the file too, so a symlink
    anywhere below `root` (placed there or swapped in) is never followed; directories are not listed.
    """
    parts = safe_parts(relative)
    if parts is None:
        return None
    flags = os.O_RDONLY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return None
    try:
        for part in parts[:-1]:
            child = os.open(part, flags | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = child
        child = os.open(parts[-1], flags | os.O_NONBLOCK, dir_fd=fd)
        os.close(fd)
        fd = child
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_FILE_BYTES:
            return None
        chunks = []
        while chunk := os.read(fd, 1024 * 1024):
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP, errno.EACCES, errno.EISDIR, errno.ENXIO):
            return None
        raise
    finally:
        os.close(fd)
