"""`ai-suite mcp ...` and `ai-suite audit verify`: wired into ai-suite, with the native mcp-server's environment."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.stack import cli


@pytest.fixture
def clean_environ(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """`ai-suite mcp` exports the service's environment; put the test process's back afterwards."""
    saved = dict(os.environ)
    for name in ("DATA_DIR", "SECURITY_DB_PATH", "MCP_ALLOWED_ROOTS"):
        os.environ.pop(name, None)
    monkeypatch.chdir(tmp_path)  # a folder that is not the repository, as when Claude Desktop starts it
    yield
    os.environ.clear()
    os.environ.update(saved)


def test_help_lists_the_mcp_commands() -> None:
    text = cli._parser().format_help()
    assert "mcp" in text and "audit" in text
    assert "ai-suite mcp --stdio" in cli.EXAMPLES and "ai-suite audit verify" in cli.EXAMPLES


def test_mcp_environment_is_the_native_services(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "d"))
    monkeypatch.setenv("MCP_ALLOWED_ROOTS", str(tmp_path / "work"))
    args = cli._parser().parse_args(["audit", "verify"])
    env = cli.mcp_environment(args)
    assert env["DATA_DIR"] == str(tmp_path / "d")
    assert env["MCP_ALLOWED_ROOTS"] == str(tmp_path / "work")
    assert env["MCP_HOST_ROOT"] == "/"  # no container: host paths are themselves
    assert env["BIND_HOST"] == "127.0.0.1"


def test_commands_use_the_data_dir_of_the_suite_from_any_folder(tmp_path: Path, clean_environ: None,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "suite-data"
    env_file = tmp_path / "suite.env"
    env_file.write_text(f"DATA_DIR={data}\n")
    # no database yet: nothing was checked (exit 2), and it says where it looked
    assert cli.main(["--env-file", str(env_file), "audit", "verify"]) == 2
    assert str(data / "security" / "security.db") in capsys.readouterr().out.replace("\n", "")
    assert cli.main(["--env-file", str(env_file), "mcp", "user", "list"]) == 0
    assert (data / "security" / "security.db").is_file() and (data / "security" / "owner.key").is_file()
    assert not (tmp_path / "data").exists()  # not the current folder's ./data
    assert cli.main(["--env-file", str(env_file), "audit", "verify"]) == 0
    assert "intact" in capsys.readouterr().out
