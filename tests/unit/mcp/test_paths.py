"""PathGuard: containment by components, symlink re-checks, parent chains, host mapping and atomic writes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from fastmcp.exceptions import ToolError

from services.mcp_server.guards.paths import PathGuard
from services.mcp_server.settings import McpSettings


def settings_for(*roots: Path, **extra: str) -> McpSettings:
    env = {"MCP_ALLOWED_ROOTS": ",".join(str(root) for root in roots), **extra}
    return McpSettings(_env_file=None, **env)  # type: ignore[call-arg]


@pytest.fixture()
def tree(tmp_path: Path) -> dict[str, Path]:
    """allowed/ (the root), allowed-evil/ (a prefix twin) and outside/ with a secret."""
    allowed, evil, outside = tmp_path / "allowed", tmp_path / "allowed-evil", tmp_path / "outside"
    for folder in (allowed / "sub", evil, outside):
        folder.mkdir(parents=True)
    (allowed / "sub" / "a.txt").write_text("inside")
    (evil / "secret.txt").write_text("evil")
    (outside / "secret.txt").write_text("secret")
    (allowed / "escape").symlink_to(outside, target_is_directory=True)
    (allowed / "inner").symlink_to(allowed / "sub", target_is_directory=True)
    return {"allowed": allowed, "evil": evil, "outside": outside}


@pytest.fixture()
def guard(tree: dict[str, Path]) -> PathGuard:
    return PathGuard(settings_for(tree["allowed"]))


def test_relative_paths_resolve_against_working_dir_and_default_to_the_first_root(guard, tree):
    assert guard.resolve("sub/a.txt") == tree["allowed"] / "sub" / "a.txt"
    assert guard.resolve("a.txt", working_dir="sub") == tree["allowed"] / "sub" / "a.txt"
    assert guard.resolve("a.txt", working_dir=str(tree["allowed"] / "sub")) == tree["allowed"] / "sub" / "a.txt"


@pytest.mark.parametrize("path", ["../outside/secret.txt", "sub/../../outside/secret.txt", "/etc/passwd", ".."])
def test_traversal_and_absolute_paths_outside_the_roots_are_refused(guard, path):
    with pytest.raises(ToolError, match="outside the allowed roots"):
        guard.resolve(path)


def test_a_prefix_twin_of_a_root_is_not_inside_it(guard, tree):
    """CVE-2025-53110: /allowed-evil must not pass a string-prefix check for /allowed."""
    with pytest.raises(ToolError, match="outside the allowed roots"):
        guard.resolve(str(tree["evil"] / "secret.txt"))
    with pytest.raises(ToolError, match="outside the allowed roots"):
        guard.resolve("../allowed-evil/secret.txt")
    with pytest.raises(ToolError, match="outside the allowed roots"):
        guard.base(str(tree["evil"]))


def test_symlinks_are_rechecked_after_resolution(guard, tree):
    """CVE-2025-53109: a link inside a root that points outside is refused, for reads and for new files."""
    with pytest.raises(ToolError, match="outside the allowed roots"):
        guard.resolve("escape/secret.txt")
    with pytest.raises(ToolError, match="outside the allowed roots"):
        guard.resolve_new("escape/new.txt")
    with pytest.raises(ToolError, match="outside the allowed roots"):
        guard.base("escape")
    assert guard.resolve("inner/a.txt") == tree["allowed"] / "sub" / "a.txt"


def test_a_dangling_symlink_to_outside_is_refused(guard, tree):
    (tree["allowed"] / "planted").symlink_to(tree["outside"] / "not-yet.txt")
    with pytest.raises(ToolError, match="outside the allowed roots"):
        guard.resolve_new("planted")
    (tree["allowed"] / "deep").symlink_to(tree["outside"] / "missing-dir")
    with pytest.raises(ToolError, match="outside the allowed roots"):
        guard.resolve_new("deep/x/y.txt")


def test_new_paths_need_an_allowed_existing_ancestor(guard, tree):
    assert guard.resolve_new("new/deeper/file.txt") == tree["allowed"] / "new" / "deeper" / "file.txt"
    (tree["allowed"] / "afile").write_text("x")
    with pytest.raises(ToolError, match="not a directory"):
        guard.resolve_new("afile/child.txt")
    with pytest.raises(ToolError, match="does not exist"):
        guard.resolve("missing.txt")


def test_the_open_resolves_nothing_itself_and_refuses_a_link_met_on_the_way_in_words(guard, tree):
    """locate() follows in-root links to the real place; opened() then takes no link at all, as after a swap."""
    real = guard.locate("inner/a.txt")
    assert real == tree["allowed"] / "sub" / "a.txt"
    with guard.opened(real, os.O_RDONLY) as fd:
        assert os.read(fd, 100) == b"inside"
    for unresolved in ("escape/secret.txt", "inner/a.txt"):
        with pytest.raises(ToolError, match="goes through a symbolic link") as refused:
            guard.open_fd(tree["allowed"] / unresolved, os.O_RDONLY, unresolved)
        assert "Errno" not in str(refused.value)
    with pytest.raises(ToolError, match="does not exist"):
        guard.open_fd(tree["allowed"] / "sub" / "gone.txt", os.O_RDONLY)
    with pytest.raises(ToolError, match="is not a directory"):
        guard.open_fd(tree["allowed"] / "sub" / "a.txt", os.O_RDONLY | os.O_DIRECTORY)
    with pytest.raises(ToolError, match="outside the allowed roots"):
        guard.open_fd(tree["outside"] / "secret.txt", os.O_RDONLY)


def test_atomic_write_replaces_content_keeps_mode_and_leaves_no_temp_file(guard, tree):
    target = tree["allowed"] / "sub" / "a.txt"
    target.chmod(0o600)
    assert guard.write_atomic(target, b"new") is False
    assert target.read_text() == "new"
    assert oct(target.stat().st_mode & 0o777) == oct(0o600)
    assert guard.write_atomic(tree["allowed"] / "sub" / "b.txt", b"b") is True
    assert sorted(p.name for p in (tree["allowed"] / "sub").iterdir()) == ["a.txt", "b.txt"]


def test_a_symlink_planted_at_the_target_is_replaced_never_written_through(guard, tree):
    """Even if a link appears after the check, the write refuses it and the file outside stays unchanged."""
    link = tree["allowed"] / "sub" / "late-link"
    link.symlink_to(tree["outside"] / "secret.txt")
    with pytest.raises(ToolError, match="through the symlink"):
        guard.write_atomic(link, b"pwned")
    assert (tree["outside"] / "secret.txt").read_text() == "secret"
    assert link.is_symlink()
    assert not [p for p in (tree["allowed"] / "sub").iterdir() if p.name.endswith(".tmp")]


def test_a_folder_swapped_for_a_symlink_is_refused_at_write_time(guard, tree):
    swapped = tree["allowed"] / "swapped"
    swapped.symlink_to(tree["outside"], target_is_directory=True)
    with pytest.raises(ToolError):
        guard.write_atomic(swapped / "x.txt", b"pwned")
    with pytest.raises(ToolError):
        guard.make_dirs(swapped / "made")
    assert sorted(os.listdir(tree["outside"])) == ["secret.txt"]


def test_make_dirs_creates_the_missing_chain(guard, tree):
    assert guard.make_dirs(tree["allowed"] / "x" / "y" / "z") is True
    assert (tree["allowed"] / "x" / "y" / "z").is_dir()
    assert guard.make_dirs(tree["allowed"] / "x") is False


def test_host_paths_map_under_the_container_mount(tmp_path):
    host = tmp_path / "mnt-host"
    (host / "home" / "dev" / "proj").mkdir(parents=True)
    (host / "home" / "dev" / "proj" / "f.txt").write_text("x")
    guard = PathGuard(settings_for(Path("/home/dev"), MCP_HOST_ROOT=str(host)))
    real = guard.resolve("/home/dev/proj/f.txt")
    assert real == host / "home" / "dev" / "proj" / "f.txt"
    assert guard.display(real) == "/home/dev/proj/f.txt"
    assert guard.resolve("f.txt", working_dir="/home/dev/proj") == real
    with pytest.raises(ToolError, match="outside the allowed roots"):
        guard.resolve("/etc/passwd")


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can hand files to another owner")
def test_a_root_server_keeps_the_owner_of_replaced_files_and_folders(guard, tree):
    target = tree["allowed"] / "sub" / "a.txt"
    os.chown(target, 12345, 12345)
    os.chown(tree["allowed"] / "sub", 23456, 23456)
    guard.write_atomic(target, b"x")
    guard.write_atomic(tree["allowed"] / "sub" / "fresh.txt", b"y")
    guard.make_dirs(tree["allowed"] / "sub" / "d1" / "d2")
    assert (target.stat().st_uid, target.stat().st_gid) == (12345, 12345)
    assert (tree["allowed"] / "sub" / "fresh.txt").stat().st_uid == 23456
    assert (tree["allowed"] / "sub" / "d1" / "d2").stat().st_uid == 23456
