"""Approval rules that depend on a call's arguments, named per tool in the catalog.

An `escalate` rule says why one call of a tool below HIGH risk still needs another user's approval. A `bind` rule
names the state an approval covers besides the arguments; the call runs under that approval only while it holds.
Imports stay inside the functions: the catalog is read by light clients (the `ai` command) too.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from services.mcp_server.guards.paths import PathGuard
    from services.mcp_server.settings import McpSettings

# Files that tell git which drivers and filters apply, or which repositories to fetch, wherever they lie.
GIT_CONTROL_FILES = frozenset({".gitattributes", ".gitmodules", ".gitconfig"})


def git_control_write(settings: McpSettings, args: dict[str, Any]) -> str | None:
    """Why a write to `args["path"]` needs approval: it lands where git reads what makes it run programs."""
    from fastmcp.exceptions import ToolError

    from services.mcp_server.guards.paths import PathGuard

    path, working_dir = args.get("path"), args.get("working_dir")
    if not isinstance(path, str) or not path or "\0" in path:
        return None  # the tool refuses it with its own message
    guard = PathGuard.shared(settings)
    try:
        base = guard.base(working_dir if isinstance(working_dir, str) else None)
    except ToolError:
        return None
    # Plain strings rather than Path objects: the rule runs on every write, on the server's event loop.
    lexical = os.path.normpath(guard.absolute(path, base))
    real = os.path.realpath(lexical)
    for candidate in (lexical, real):
        # casefold: on a case-insensitive file system `.GIT/config` is `.git/config`.
        parts = candidate.casefold().split(os.sep)
        if ".git" in parts:
            return "writes inside a .git folder, whose config and hooks make git run programs"
        if parts[-1] in GIT_CONTROL_FILES:
            return f"writes {os.path.basename(candidate)}, which names the filters and drivers git runs"
        if any(parts[i:i + 2] == [".config", "git"] for i in range(len(parts) - 1)):
            return "writes inside git's own config folder (.config/git), which names programs git runs"
    if _git_folder_above(real, guard) is not None:
        return "writes inside a git folder, whose config and hooks make git run programs"
    return None


def _git_folder_above(path: str, guard: PathGuard) -> str | None:
    """The nearest folder at or above `path`, inside the allowed roots, that git would take for a git folder."""
    root = next((str(root) for root in guard.roots if guard.contains(root, path)), None)
    if root is None or guard.is_own_data(Path(path)):
        return None
    # Every folder between an allowed path and its root is allowed too (the suite's own data lies in no
    # allowed path's parents), so the walk only needs to stop at the root.
    folder = path
    while True:
        if _looks_like_git_folder(folder):
            return folder
        parent = os.path.dirname(folder)
        if parent == folder or not guard.contains(root, parent):
            return None
        folder = parent


def _looks_like_git_folder(folder: str) -> bool:
    """What git itself checks: a HEAD file beside objects/ and refs/, or a commondir file (a worktree's)."""
    if not os.path.isfile(os.path.join(folder, "HEAD")):
        return False
    return ((os.path.isdir(os.path.join(folder, "objects")) and os.path.isdir(os.path.join(folder, "refs")))
            or os.path.isfile(os.path.join(folder, "commondir")))


def staged_tree(settings: McpSettings, args: dict[str, Any]) -> dict[str, str]:
    """An approved git_commit covers the tree staged when it was asked for."""
    from services.mcp_server.tools.git import bind_staged_tree

    return bind_staged_tree(settings, args)
