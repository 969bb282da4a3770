"""`ai-suite` argument handling and the commands that start nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from services.stack.cli import main


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    doc = {"x-native": {"data_dir": "${DATA_DIR:-../data}",
                        "urls": {"OpenAI base URL": "http://127.0.0.1:${WEB_PORT:-8123}/v1"}},
           "services": {"web": {"image": "x", "command": ["python", "-m", "http.server"],
                                "ports": ["127.0.0.1:${WEB_PORT:-8123}:${WEB_PORT:-8123}"]}}}
    (tmp_path / "docker").mkdir()
    (tmp_path / "docker" / "compose.p1.yml").write_text(yaml.safe_dump(doc), encoding="utf-8")
    monkeypatch.delenv("DATA_DIR", raising=False)
    monkeypatch.delenv("WEB_PORT", raising=False)
    return tmp_path


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["--help"])
    assert caught.value.code == 0
    out = capsys.readouterr().out
    for command in ("up", "down", "status", "logs", "models", "urls", "examples:"):
        assert command in out


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["up"], ["up", "p7"], ["bogus"], ["models"]):
        with pytest.raises(SystemExit) as caught:
            main(argv)
        assert caught.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_status_and_urls_read_the_env_file(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (root / ".env").write_text("WEB_PORT=9555\n", encoding="utf-8")
    assert main(["status", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "web" in out and "stopped" in out and "9555" in out
    assert main(["--root", str(root), "urls"]) == 0
    assert "http://127.0.0.1:9555/v1" in capsys.readouterr().out
    other = root / "other.env"
    other.write_text("WEB_PORT=9666\n", encoding="utf-8")
    assert main(["urls", "p1", "--root", str(root), "--env-file", str(other)]) == 0
    assert "9666" in capsys.readouterr().out


def test_errors_are_one_line_and_exit_1(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--root", str(root), "up", "p1", "--env-file", str(root / "missing.env")]) == 1
    assert "error: env file not found" in capsys.readouterr().out
    assert main(["--root", str(root), "logs", "ghost"]) == 1
    out = capsys.readouterr().out
    assert "no log at" in out and "services: web" in out
    assert main(["--root", str(root), "down"]) == 0
    assert "nothing was running" in capsys.readouterr().out
    assert main(["--root", str(root / "nowhere"), "status"]) == 1
    assert "compose file not found" in capsys.readouterr().out
