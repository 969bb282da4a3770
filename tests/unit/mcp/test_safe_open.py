"""Opening below a root fd: openat2 and the O_NOFOLLOW walk refuse every symlink alike, and leak no descriptors."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from services.mcp_server.guards import safe_open

Opener = Callable[[int, str, int], int]


@pytest.fixture()
def tree(tmp_path: Path) -> dict[str, Path]:
    """root/ with a/b/f.txt, an in-root link, a link out, a link as the last step, and outside/ with a secret."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "a" / "b").mkdir(parents=True)
    outside.mkdir()
    (root / "a" / "b" / "f.txt").write_text("inside")
    (outside / "f.txt").write_text("secret")
    (root / "inner").symlink_to(root / "a", target_is_directory=True)
    (root / "a" / "out").symlink_to(outside, target_is_directory=True)
    (root / "a" / "link.txt").symlink_to(root / "a" / "b" / "f.txt")
    return {"root": root, "outside": outside}


@pytest.fixture(params=["openat2", "walk"])
def opener(request: pytest.FixtureRequest) -> Opener:
    if request.param == "walk":
        return safe_open.open_by_walk
    call = safe_open.openat2_call()
    if call is None:
        pytest.skip("this kernel has no openat2")
    return lambda root_fd, relative, flags: safe_open.open_by_openat2(call, root_fd, relative, flags)


@pytest.fixture()
def root_fd(tree: dict[str, Path]) -> Iterator[int]:
    fd = os.open(tree["root"], os.O_PATH | os.O_DIRECTORY)
    yield fd
    os.close(fd)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_plain_path_opens_the_file_it_names(opener, root_fd, tree):
    fd = opener(root_fd, "a/b/f.txt", os.O_RDONLY)
    try:
        assert os.path.samestat(os.fstat(fd), os.stat(tree["root"] / "a" / "b" / "f.txt"))
    finally:
        os.close(fd)


@pytest.mark.parametrize(
    ("relative", "flags", "code"),
    [
        ("a/out/f.txt", os.O_RDONLY, errno.ELOOP),  # a folder on the way links outside
        ("inner/b/f.txt", os.O_RDONLY, errno.ELOOP),  # even a link that stays inside: the guard resolves those first
        ("a/link.txt", os.O_RDONLY, errno.ELOOP),  # the last step is a link
        ("a/out", os.O_RDONLY | os.O_DIRECTORY, errno.ELOOP),  # a link where a folder is wanted
        ("a/missing/f.txt", os.O_RDONLY, errno.ENOENT),
        ("a/b/f.txt/x", os.O_RDONLY, errno.ENOTDIR),
        ("a/b/f.txt", os.O_RDONLY | os.O_DIRECTORY, errno.ENOTDIR),
    ],
)
def test_links_missing_names_and_files_as_folders_fail_with_the_same_errno_either_way(
    opener, root_fd, relative, flags, code
):
    before = _open_fds()
    with pytest.raises(OSError) as failed:
        opener(root_fd, relative, flags)
    assert failed.value.errno == code
    assert _open_fds() == before


@pytest.mark.parametrize("relative", ["../outside/f.txt", "a/../../outside/f.txt", "/etc/passwd"])
def test_open_beneath_refuses_steps_out_of_the_root(monkeypatch, root_fd, relative):
    for way in ("openat2", "walk"):
        if way == "walk":
            monkeypatch.setattr(safe_open, "openat2_call", lambda: None)
        with pytest.raises(OSError) as failed:
            safe_open.open_beneath(root_fd, relative, os.O_RDONLY)
        assert failed.value.errno == errno.EXDEV


def test_the_walk_keeps_no_descriptor_open_after_success_or_failure(root_fd):
    before = _open_fds()
    for _ in range(50):
        os.close(safe_open.open_by_walk(root_fd, "a/b/f.txt", os.O_RDONLY))
        with pytest.raises(OSError):
            safe_open.open_by_walk(root_fd, "a/out/f.txt", os.O_RDONLY)
    assert _open_fds() == before


def test_walk_tree_goes_depth_first_in_order_and_never_enters_a_link(tree):
    root = tree["root"]
    (root / "a" / "node_modules").mkdir()
    (root / "a" / "node_modules" / "skipped.js").write_text("x")
    (root / "z").mkdir()
    (root / "z" / "last.txt").write_text("z")
    top = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        before = _open_fds()
        seen = [(prefix, files) for prefix, _fd, files in safe_open.walk_tree(top, frozenset({"node_modules"}))]
        assert _open_fds() == before
        walk = safe_open.walk_tree(top, frozenset())
        next(walk), next(walk)
        walk.close()  # a search that stops early closes the folders it had open
        assert _open_fds() == before
    finally:
        os.close(top)
    assert seen == [
        ("", ["inner"]), ("a/", ["link.txt", "out"]), ("a/b/", ["f.txt"]), ("z/", ["last.txt"]),
    ]
