"""Path guard: every path a tool names resolves (realpath) inside an allowed root, and is then opened below that
root's descriptor without following any symlink, so a folder swapped for a link after the check cannot redirect it."""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
import weakref
from collections.abc import Iterator
from pathlib import Path

from fastmcp.exceptions import ToolError

from services.mcp_server.guards.safe_open import O_PATH, open_beneath
from services.mcp_server.settings import McpSettings

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_ROOT_FLAGS = O_PATH | os.O_DIRECTORY | os.O_CLOEXEC


# PathGuard.shared: per live settings object (by identity, as settings are not hashable), its guard.
_SHARED: dict[int, tuple[weakref.ref[McpSettings], PathGuard]] = {}


class MissingPathError(ToolError):
    """The path, or a folder on its way, does not exist (callers may add a hint such as create_parents)."""


class PathGuard:
    """Resolves user paths against `working_dir` and refuses anything that lands outside the allowed roots."""

    @classmethod
    def shared(cls, settings: McpSettings) -> PathGuard:
        """The one guard of these settings: roots and protected folders are resolved once, when it is first asked
        for (as the tools' guards are when they are registered), not on every call that needs a guard."""
        held = _SHARED.get(id(settings))
        if held is not None and held[0]() is settings:
            return held[1]
        guard, key = cls(settings), id(settings)
        _SHARED[key] = (weakref.ref(settings, lambda _: _SHARED.pop(key, None)), guard)
        return guard

    def __init__(self, settings: McpSettings) -> None:
        self.roots = settings.roots()
        self.host_root = Path(os.path.realpath(settings.host_root)) if settings.host_root else None
        if not self.roots:
            raise ValueError("MCP_ALLOWED_ROOTS is empty: no folder is allowed")
        self.protected = [Path(os.path.realpath(path)) for path in settings.own_data()]

    def is_allowed(self, path: Path) -> bool:
        """True when the (already resolved) path is a root or lies below one, and is not the suite's own data."""
        return any(_within(path, root) for root in self.roots) and not self.is_own_data(path)

    @staticmethod
    def contains(folder: str | Path, path: str | Path) -> bool:
        """Whether `path` is `folder` or lies below it; both absolute and normalised (resolved or lexical)."""
        return _within(path, folder)

    def is_own_data(self, path: Path) -> bool:
        """True for the suite's state, security folder and keys: a tool that could read the audit key could
        forge the audit chain, and one that could write the databases could rewrite history."""
        return any(_within(path, folder) for folder in self.protected)

    def own_data_ids(self) -> frozenset[tuple[int, int]]:
        """(device, inode) of the protected folders and files that exist, for walks that meet them by descriptor."""
        ids = set()
        for path in self.protected:
            with contextlib.suppress(OSError):
                info = os.stat(path)
                ids.add((info.st_dev, info.st_ino))
        return frozenset(ids)

    def check(self, path: Path, shown: str | None = None) -> Path:
        """Return `path` if it is allowed, else raise a ToolError naming it."""
        if self.is_own_data(path):
            raise ToolError(f"path {shown or str(path)!r} is the suite's own data (databases, keys, state); "
                            "tools cannot read or change it")
        if not self.is_allowed(path):
            raise ToolError(f"path {shown or str(path)!r} is outside the allowed roots ({self.roots_text()})")
        return path

    def roots_text(self) -> str:
        """The allowed roots as the user knows them (host paths)."""
        return ", ".join(self.display(root) for root in self.roots)

    def display(self, path: Path) -> str:
        """The path as the caller knows it: without the container's host mount prefix."""
        if self.host_root is not None and path.is_relative_to(self.host_root):
            return "/" + str(path.relative_to(self.host_root)) if path != self.host_root else "/"
        return str(path)

    def base(self, working_dir: str | None) -> Path:
        """The resolved working directory: given, or the first allowed root; it must be an allowed directory."""
        if working_dir is None or not working_dir.strip():
            base = self.roots[0]
        else:
            if "\0" in working_dir:
                raise ToolError("working_dir contains a NUL byte")
            base = self._real(self.absolute(working_dir, self.roots[0]))
            self.check(base, working_dir)
        with _os_errors("use", working_dir or str(base)):
            is_dir = base.is_dir()
        if not is_dir:
            raise ToolError(f"working_dir {self.display(base)!r} is not an existing directory")
        return base

    def resolve(self, path: str, working_dir: str | None = None, *, must_exist: bool = True) -> Path:
        """Resolve `path` (relative to working_dir), following every symlink, and check it is allowed."""
        if not path or "\0" in path:
            raise ToolError("path is empty or contains a NUL byte")
        real = self._real(self.absolute(path, self.base(working_dir)))
        self.check(real, path)
        with _os_errors("resolve", path):  # e.g. a name longer than the system allows
            exists = real.exists()
        if must_exist and not exists:
            raise ToolError(f"{path!r} does not exist")
        if not exists:
            self._check_parent_chain(real, path)
        return real

    def resolve_new(self, path: str, working_dir: str | None = None) -> Path:
        """Resolve a path that may not exist yet; its nearest existing ancestor must be a real allowed folder."""
        return self.resolve(path, working_dir, must_exist=False)

    def resolve_entry(self, path: str, base: Path) -> Path:
        """Resolve the parent folder but keep the last component as named (a symlink stays a symlink)."""
        candidate = self.absolute(path, base)
        if candidate.name in ("", ".", ".."):
            return self._real(candidate)
        return self._real(candidate.parent) / candidate.name

    def locate(self, path: str, working_dir: str | None = None) -> Path:
        """Resolve `path` with realpath and check it is allowed; whether it exists is left to the open that follows.

        The result is a hint, not a promise: `opened` re-walks it below the root and refuses any symlink on the way.
        """
        if not path or "\0" in path:
            raise ToolError("path is empty or contains a NUL byte")
        return self.check(self._real(self.absolute(path, self.base(working_dir))), path)

    @contextlib.contextmanager
    def opened(self, real: Path, flags: int, shown: str | None = None) -> Iterator[int]:
        """Open an allowed, resolved path below its root's fd, never through a symlink; judge the fd, not the path."""
        fd = self.open_fd(real, flags, shown)
        try:
            yield fd
        finally:
            os.close(fd)

    def open_fd(self, real: Path, flags: int, shown: str | None = None, mode: int = 0) -> int:
        """`opened` without the context: the caller closes the returned descriptor."""
        shown = shown or self.display(real)
        root, relative = self._root_of(real, shown)
        try:
            root_fd = os.open(root, _ROOT_FLAGS)
        except OSError as exc:
            raise ToolError(f"cannot open the allowed root {self.display(root)!r}: {exc.strerror}") from exc
        try:
            return open_beneath(root_fd, relative, flags, mode)
        except OSError as exc:
            raise self._open_error(exc, shown, flags) from exc
        finally:
            os.close(root_fd)

    def write_atomic(self, path: Path, data: bytes) -> bool:
        """Write via a temp file in the same folder and rename it over `path`; returns True if the file is new."""
        with self.open_dir(path.parent) as dir_fd, _os_errors("write", self.display(path)):
            existing = _lstat(path.name, dir_fd)
            if existing is not None and stat.S_ISLNK(existing.st_mode):
                raise ToolError(f"refusing to write through the symlink {self.display(path)!r}")
            if existing is not None and not stat.S_ISREG(existing.st_mode):
                raise ToolError(f"{self.display(path)!r} exists and is not a regular file")
            mode = stat.S_IMODE(existing.st_mode) if existing else 0o644
            tmp = f".{path.name}.{secrets.token_hex(6)}.tmp"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode, dir_fd=dir_fd)
            try:
                _keep_owner(fd, existing or os.fstat(dir_fd), mode if existing else None)
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp, path.name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            except BaseException:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp, dir_fd=dir_fd)
                raise
            return existing is None

    def make_dirs(self, path: Path) -> bool:
        """Create `path` and missing parents one component at a time from the root's fd, never through a symlink."""
        shown = self.display(path)
        root, relative = self._root_of(path, shown)
        created, here = False, root
        with _os_errors("create", shown):
            current = os.open(root, _DIR_FLAGS)
            try:
                for part in Path(relative).parts:
                    here = here / part
                    child, made = self._child_dir(current, here, shown)
                    os.close(current)
                    current, created = child, created or made
            finally:
                os.close(current)
        return created

    def _child_dir(self, parent: int, here: Path, shown: str) -> tuple[int, bool]:
        """Open (or make, then open) the folder `here` in `parent`; True when this call made it."""
        made = False
        try:
            return self._open_child_dir(parent, here, shown), made
        except FileNotFoundError:
            with contextlib.suppress(FileExistsError):  # made by someone else meanwhile: judged like any other
                os.mkdir(here.name, 0o755, dir_fd=parent)
                made = True
        child = self._open_child_dir(parent, here, shown)
        if made:
            _keep_owner(child, os.fstat(parent), None)
        return child, made

    def _open_child_dir(self, parent: int, here: Path, shown: str) -> int:
        try:
            return os.open(here.name, _DIR_FLAGS, dir_fd=parent)
        except NotADirectoryError as exc:  # O_DIRECTORY|O_NOFOLLOW reports a symlink this way too
            existing = _lstat(here.name, parent)
            if existing is not None and stat.S_ISLNK(existing.st_mode):
                raise ToolError(f"path {shown!r} goes through a symbolic link") from exc
            raise ToolError(f"{self.display(here)!r} exists and is not a directory") from exc

    @contextlib.contextmanager
    def open_dir(self, folder: Path) -> Iterator[int]:
        """Open an allowed folder below its root without following any symlink."""
        with self.opened(folder, _DIR_FLAGS) as fd:
            yield fd

    def absolute(self, path: str, base: Path) -> Path:
        """`path` made absolute against `base`, with host paths mapped under the container mount."""
        raw = Path(path)
        if not raw.is_absolute():
            return base / raw
        if self.host_root is not None and not raw.is_relative_to(self.host_root):
            return self.host_root / raw.relative_to(raw.anchor)
        return raw

    def _real(self, path: Path) -> Path:
        try:
            return Path(os.path.realpath(path))
        except OSError as exc:
            # realpath lstat()s a component and then readlink()s it; a link swapped for a folder in between
            # makes readlink fail with EINVAL, which must not reach the caller as "[Errno 22]".
            shown = self.display(path)
            raise ToolError(f"path {shown!r} changed while it was being resolved; try again") from exc

    def _root_of(self, real: Path, shown: str) -> tuple[Path, str]:
        """The allowed root that holds `real`, and `real` relative to it (string work: this runs on every open)."""
        text = str(real)
        for root in self.roots:
            base = str(root)
            if text == base:
                return root, ""
            prefix = base if base.endswith("/") else base + "/"
            if text.startswith(prefix):
                return root, text[len(prefix):]
        raise ToolError(f"path {shown!r} is outside the allowed roots ({self.roots_text()})")

    def _open_error(self, exc: OSError, shown: str, flags: int) -> ToolError:
        """A failed open below a root as a message for the caller: the reason in words, never an errno."""
        if exc.errno == errno.ELOOP:
            return ToolError(f"path {shown!r} goes through a symbolic link")
        if exc.errno == errno.EXDEV:
            return ToolError(f"path {shown!r} is outside the allowed roots ({self.roots_text()})")
        if exc.errno == errno.ENOENT:
            return MissingPathError(f"{shown!r} does not exist")
        if exc.errno == errno.ENOTDIR:
            if flags & os.O_DIRECTORY:
                return ToolError(f"{shown!r} is not a directory")
            return ToolError(f"a folder on the way to {shown!r} is not a directory")
        return ToolError(f"cannot open {shown!r}: {exc.strerror or 'system error'}")

    def _check_parent_chain(self, real: Path, shown: str) -> None:
        ancestor = real.parent
        while not ancestor.exists():
            if ancestor.is_symlink():
                raise ToolError(f"{shown!r} goes through a dangling symlink")
            ancestor = ancestor.parent
        self.check(self._real(ancestor), shown)
        if not ancestor.is_dir():
            raise ToolError(f"{shown!r}: {self.display(ancestor)!r} is not a directory")


def _within(path: str | Path, folder: str | Path) -> bool:
    """Whether `path` is `folder` or lies below it; both absolute and normalised (string prefixes by parts,
    several times quicker than PurePath.is_relative_to, and it runs per parent folder on every write)."""
    inside, outer = str(path), str(folder)
    return inside == outer or inside.startswith(outer if outer.endswith("/") else outer + "/")


@contextlib.contextmanager
def _os_errors(action: str, shown: str) -> Iterator[None]:
    """Report a failing system call as a ToolError that names the path and the reason."""
    try:
        yield
    except ToolError:
        raise
    except OSError as exc:
        raise ToolError(f"cannot {action} {shown!r}: {exc.strerror or exc}") from exc


def _lstat(name: str, dir_fd: int) -> os.stat_result | None:
    try:
        return os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _keep_owner(fd: int, like: os.stat_result, mode: int | None) -> None:
    """Give a new file the owner of what it replaces (or of its folder): a root server must not take over files."""
    if mode is not None:
        os.fchmod(fd, mode)
    if os.geteuid() == 0:
        os.fchown(fd, like.st_uid, like.st_gid)
