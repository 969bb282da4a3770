"""Open paths below a root folder's descriptor without following any symlink, so a swapped folder cannot redirect us.

openat2(2) with RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS makes the kernel refuse every symlink and every step out of
the root in one call. Kernels before 5.6 (or seccomp filters that hide the call) get the same guarantee from a
walk that opens one component at a time with O_NOFOLLOW, each relative to the descriptor of the folder above.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import platform
import stat
import sys
from collections.abc import Callable, Generator, Iterator

RESOLVE_NO_MAGICLINKS = 0x02
RESOLVE_NO_SYMLINKS = 0x04
RESOLVE_BENEATH = 0x08
_RESOLVE = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS
_SYS_OPENAT2 = {"x86_64": 437, "aarch64": 437}
_AT_FDCWD = -100
_EAGAIN_TRIES = 8

# O_PATH: walking needs only search permission on a folder, not read permission, as a path lookup would.
# Both are Linux's; elsewhere a plain read-only open and no O_TMPFILE keep the walk working.
O_PATH: int = getattr(os, "O_PATH", os.O_RDONLY)
_O_TMPFILE: int = getattr(os, "O_TMPFILE", 0)
_STEP_FLAGS = O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_WALK_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK

Openat2 = Callable[[int, bytes, int, int, int], int]


class _OpenHow(ctypes.Structure):
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64)]


@functools.cache
def openat2_call() -> Openat2 | None:
    """The openat2 system call through libc's syscall(), or None when this machine or kernel lacks it."""
    number = _SYS_OPENAT2.get(platform.machine()) if sys.platform == "linux" else None
    if number is None:
        return None
    syscall = ctypes.CDLL(None, use_errno=True).syscall
    syscall.restype = ctypes.c_long
    syscall.argtypes = [ctypes.c_long, ctypes.c_int, ctypes.c_char_p, ctypes.POINTER(_OpenHow), ctypes.c_size_t]

    def call(dir_fd: int, path: bytes, flags: int, mode: int, resolve: int) -> int:
        how = _OpenHow(flags, mode, resolve)
        fd = int(syscall(number, dir_fd, path, ctypes.byref(how), ctypes.sizeof(how)))
        if fd < 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code), os.fsdecode(path))
        return fd

    try:
        os.close(call(_AT_FDCWD, b"/", O_PATH | os.O_CLOEXEC, 0, RESOLVE_NO_SYMLINKS))
    except OSError:
        # ENOSYS before Linux 5.6, EPERM under a seccomp profile that does not know the call: the walk is as safe.
        return None
    return call


def open_beneath(root_fd: int, relative: str, flags: int, mode: int = 0) -> int:
    """Open `relative` (no '..', no leading '/') below `root_fd`, never through a symlink; raises OSError.

    A symlink anywhere on the way gives ELOOP and a step out of the root EXDEV, whichever way is used.
    """
    if relative.startswith("/") or ".." in relative.split("/"):
        raise OSError(errno.EXDEV, "only a path below the root is allowed here", relative)
    call = openat2_call()
    if call is None:
        return open_by_walk(root_fd, relative, flags, mode)
    return open_by_openat2(call, root_fd, relative, flags, mode)


def open_by_openat2(call: Openat2, root_fd: int, relative: str, flags: int, mode: int = 0) -> int:
    """One openat2 call; EAGAIN (the kernel saw a rename race it could not rule out) is retried a few times."""
    name = os.fsencode(relative or ".")
    mode = mode if flags & (os.O_CREAT | _O_TMPFILE) else 0
    # Without O_NOFOLLOW, RESOLVE_NO_SYMLINKS refuses a symlink as the last component too, with ELOOP; with it,
    # O_DIRECTORY would report that symlink as "not a directory" instead.
    flags = (flags & ~os.O_NOFOLLOW) | os.O_CLOEXEC
    for _ in range(_EAGAIN_TRIES - 1):
        try:
            return call(root_fd, name, flags, mode, _RESOLVE)
        except BlockingIOError:
            continue
    return call(root_fd, name, flags, mode, _RESOLVE)


def open_by_walk(root_fd: int, relative: str, flags: int, mode: int = 0) -> int:
    """Open each folder on the way relative to the one above it with O_NOFOLLOW, then the last component."""
    parts = [part for part in relative.split("/") if part not in ("", ".")]
    if ".." in parts:
        raise OSError(errno.EXDEV, "'..' is not allowed here", relative)
    current = root_fd
    try:
        for part in parts[:-1]:
            step = _step(current, part, _STEP_FLAGS, 0, relative)
            if current != root_fd:
                os.close(current)
            current = step
        last = parts[-1] if parts else "."
        return _step(current, last, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode, relative)
    finally:
        if current != root_fd:
            os.close(current)


def _step(dir_fd: int, name: str, flags: int, mode: int, relative: str) -> int:
    """Open one component below `dir_fd`; errors name the whole relative path."""
    try:
        return os.open(name, flags, mode, dir_fd=dir_fd)
    except NotADirectoryError as exc:
        # With O_DIRECTORY, Linux reports a symlink as "not a directory": tell the two apart, as openat2 does.
        code = errno.ELOOP if _is_symlink(dir_fd, name) else errno.ENOTDIR
        raise OSError(code, os.strerror(code), relative) from exc
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, relative) from exc


def _is_symlink(dir_fd: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except OSError:
        return False


def walk_tree(top_fd: int, skip: frozenset[str],
              hidden: frozenset[tuple[int, int]] = frozenset()) -> Generator[tuple[str, int, list[str]]]:
    """Depth-first, sorted, over folder fds: yields (folder relative to top with a trailing '/', its fd, file names).

    Subfolders open with O_NOFOLLOW relative to their parent's fd, so a folder swapped for a symlink is skipped,
    never entered. Only the folders on the current branch are open, so the fd count is the depth, not the width.
    The yielded fd is valid until the next step; read files with `os.open(name, ..., dir_fd=fd)`.
    Folders and files whose (device, inode) is in `hidden` are neither entered nor listed.
    """
    folders, files = _scan(top_fd, skip, hidden)
    yield "", top_fd, files
    stack: list[tuple[int, str, Iterator[str]]] = [(top_fd, "", iter(folders))]
    try:
        while stack:
            fd, relative, pending = stack[-1]
            name = next(pending, None)
            if name is None:
                stack.pop()
                if fd != top_fd:
                    os.close(fd)
                continue
            try:
                child = os.open(name, _WALK_DIR_FLAGS, dir_fd=fd)
            except OSError:
                continue  # vanished, swapped for a symlink or unreadable since the scan: not ours to enter
            try:
                folders, files = _scan(child, skip, hidden)
            except OSError:
                os.close(child)
                continue
            child_relative = f"{relative}{name}/"
            stack.append((child, child_relative, iter(folders)))
            yield child_relative, child, files
    finally:
        for fd, _, _ in stack:
            if fd != top_fd:
                os.close(fd)


def _scan(fd: int, skip: frozenset[str], hidden: frozenset[tuple[int, int]]) -> tuple[list[str], list[str]]:
    """Sorted subfolder and file names of an open folder; symlinks and other kinds count as files (never entered)."""
    folders, files = [], []
    device = os.fstat(fd).st_dev
    with os.scandir(fd) as entries:
        for entry in entries:
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
                if hidden and (device, entry.inode()) in hidden:
                    continue
            except OSError:
                continue
            if is_dir:
                if entry.name not in skip:
                    folders.append(entry.name)
            else:
                files.append(entry.name)
    return sorted(folders), sorted(files)
