"""install.sh end to end: a fresh venv, the editable install, and commands usable from another folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def test_fresh_install_into_new_venv_puts_working_commands_on_path(tmp_path: Path) -> None:
    venv, prefix = tmp_path / "venv", tmp_path / "prefix"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin"}
    args = ["bash", str(ROOT / "install.sh"), "--venv", str(venv), "--extras", "cli", "--prefix", str(prefix),
            "--python", sys.executable]
    first = subprocess.run(args, capture_output=True, text=True, env=env, cwd="/tmp", timeout=600)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert f"creating the virtual environment {venv}" in first.stdout

    again = subprocess.run(args, capture_output=True, text=True, env=env, cwd="/tmp", timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "using the virtual environment" in again.stdout

    for name in ("ai", "ai-suite"):
        link = prefix / "bin" / name
        assert link.resolve() == (venv / "bin" / name).resolve()
        shown = subprocess.run([str(link), "--help"], capture_output=True, text=True, cwd="/tmp", timeout=60)
        assert shown.returncode == 0 and "usage:" in shown.stdout
