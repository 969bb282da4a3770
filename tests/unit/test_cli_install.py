"""install.sh link step: links into PREFIX/bin that work from any folder, a PATH hint, safe to repeat."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INSTALL = ROOT / "install.sh"
VENV_BIN = ROOT / ".venv" / "bin"

pytestmark = pytest.mark.skipif(not (VENV_BIN / "ai").exists(), reason="needs the repo's .venv with the commands")


def install(*args: str, path: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PATH": path or "/usr/bin:/bin"}
    return subprocess.run(
        ["bash", str(INSTALL), *args], capture_output=True, text=True, env=env, cwd="/tmp", timeout=120
    )


def test_help() -> None:
    result = install("--help")
    assert result.returncode == 0
    assert "--prefix DIR" in result.stdout and "--extras LIST" in result.stdout


def test_unknown_argument_is_a_usage_error() -> None:
    result = install("--frobnicate")
    assert result.returncode == 2 and "unknown argument: --frobnicate" in result.stderr


def test_links_work_from_any_folder_and_path_hint(tmp_path: Path) -> None:
    result = install("--links-only", "--prefix", str(tmp_path))
    assert result.returncode == 0, result.stderr
    bindir = tmp_path / "bin"
    for name in ("ai", "ai-suite"):
        link = bindir / name
        assert link.is_symlink() and link.resolve() == (VENV_BIN / name).resolve()
    assert f'export PATH="{bindir}:$PATH"' in result.stderr

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AI_", "API_"))}
    ran = subprocess.run(
        [str(bindir / "ai"), "--url", f"http://127.0.0.1:{port}", "hello"],
        capture_output=True, text=True, cwd="/tmp", env=env, stdin=subprocess.DEVNULL, timeout=60,
    )
    assert ran.returncode == 3, ran.stderr
    assert f"cannot reach the AI gateway at http://127.0.0.1:{port}" in ran.stderr


def test_rerun_is_idempotent_and_quiet_when_on_path(tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    first = install("--links-only", "--prefix", str(tmp_path), path=f"{bindir}:/usr/bin:/bin")
    second = install("--links-only", f"--prefix={tmp_path}", path=f"{bindir}:/usr/bin:/bin")
    assert first.returncode == second.returncode == 0, second.stderr
    assert "warning" not in second.stderr
    assert sorted(p.name for p in bindir.iterdir()) == ["ai", "ai-suite"]


def test_refuses_to_replace_a_real_file(tmp_path: Path) -> None:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "ai").write_text("#!/bin/sh\necho mine\n")
    result = install("--links-only", "--prefix", str(tmp_path))
    assert result.returncode == 1
    assert "exists and is not a link" in result.stderr
    assert (bindir / "ai").read_text() == "#!/bin/sh\necho mine\n"
