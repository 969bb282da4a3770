"""`ai-suite desktop`: the window process, the Chromium fallback, and starting the suite when it is down."""

from __future__ import annotations

import argparse
import os
import stat
import sys
from pathlib import Path

import pytest
import yaml

from services.stack import cli, desktop
from services.stack.desktop import browser_argv, open_app
from services.stack.window import NO_TOOLKIT
from services.stack.window import main as window_main
from tests.support.procs import free_port

NO_DISPLAY = ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")


@pytest.fixture
def fake_browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A "browser" that writes the arguments it was started with, one a line."""
    record = tmp_path / "browser-args.txt"
    script = tmp_path / "fake-chromium"
    script.write_text(f"#!{sys.executable}\nimport sys\nopen({str(record)!r}, 'w').write('\\n'.join(sys.argv[1:]))\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("CHROMIUM_PATH", str(script))
    return record


@pytest.fixture
def no_display(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in NO_DISPLAY:
        monkeypatch.delenv(name, raising=False)


def test_the_window_process_says_when_there_is_no_display(no_display: None) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("Linux only: elsewhere a window can always open")
    assert window_main(["http://127.0.0.1:9/"]) == NO_TOOLKIT


def test_without_a_toolkit_the_app_opens_in_chromium_app_mode(tmp_path: Path, no_display: None,
                                                              fake_browser: Path) -> None:
    lines: list[str] = []
    opened = open_app("http://127.0.0.1:3000", tmp_path / "data", on_line=lines.append)
    assert (opened.how, opened.code) == ("chromium", 0)
    args = fake_browser.read_text().splitlines()
    assert args[0] == "--app=http://127.0.0.1:3000"
    assert f"--user-data-dir={tmp_path / 'data' / 'desktop' / 'chromium'}" in args
    assert lines and "trying Chromium" in lines[0]


def test_window_only_does_not_fall_back(tmp_path: Path, no_display: None, fake_browser: Path) -> None:
    opened = open_app("http://127.0.0.1:3000", tmp_path, backend="window", on_line=lambda _: None)
    assert opened.how == "none" and opened.code == 1 and "no display" in opened.detail
    assert not fake_browser.exists()


def test_chromium_backend_skips_the_window(tmp_path: Path, fake_browser: Path) -> None:
    opened = open_app("http://127.0.0.1:3000", tmp_path, backend="chromium")
    assert opened.how == "chromium" and fake_browser.read_text().startswith("--app=http://127.0.0.1:3000")


def test_no_toolkit_and_no_browser_names_the_url(tmp_path: Path, no_display: None,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHROMIUM_PATH", str(tmp_path / "absent"))
    monkeypatch.setenv("PATH", str(tmp_path))
    opened = open_app("http://127.0.0.1:3000", tmp_path, on_line=lambda _: None)
    assert opened.how == "none" and "open http://127.0.0.1:3000 in a browser" in opened.detail


def test_chromium_runs_without_its_sandbox_only_as_root(tmp_path: Path) -> None:
    argv = browser_argv("/usr/bin/chromium", "http://127.0.0.1:3000", tmp_path)
    assert ("--no-sandbox" in argv) == (sys.platform.startswith("linux") and os.geteuid() == 0)


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Four phase files whose p4 names the chat app's URL on a port nothing listens on."""
    port = free_port()
    docker = tmp_path / "docker"
    docker.mkdir()
    p1 = {"x-native": {"data_dir": str(tmp_path / "data")},
          "services": {"web": {"image": "x", "command": ["python", "-m", "http.server"],
                               "ports": [f"127.0.0.1:{port}:{port}"]}}}
    (docker / "compose.p1.yml").write_text(yaml.safe_dump(p1), encoding="utf-8")
    for phase in ("p2", "p3"):
        (docker / f"compose.{phase}.yml").write_text(yaml.safe_dump({"services": {}}), encoding="utf-8")
    p4 = {"x-native": {"urls": {"Chat app": f"http://127.0.0.1:{port}"}}, "services": {}}
    (docker / "compose.p4.yml").write_text(yaml.safe_dump(p4), encoding="utf-8")
    monkeypatch.delenv("DATA_DIR", raising=False)
    return tmp_path


def test_no_start_fails_when_the_app_is_down(root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--root", str(root), "desktop", "--no-start"]) == 1
    assert "does not answer" in capsys.readouterr().out


def test_a_suite_that_is_down_is_started_first(root: Path, monkeypatch: pytest.MonkeyPatch,
                                               tmp_path: Path) -> None:
    started: list[argparse.Namespace] = []
    opened: list[str] = []

    def fake_up(args: argparse.Namespace, console: object) -> int:
        started.append(args)
        return 0

    answers = iter([False])
    monkeypatch.setattr(cli, "cmd_up", fake_up)
    monkeypatch.setattr(desktop, "is_up", lambda url: next(answers, True))
    monkeypatch.setattr(desktop, "open_app", lambda url, data_dir, backend, on_line: (
        opened.append(url), desktop.Opened("window", 0))[1])
    assert cli.main(["--root", str(root), "desktop"]) == 0
    assert [args.phase for args in started] == ["p4"] and started[0].monitoring is False
    assert opened and opened[0].startswith("http://127.0.0.1:")
    # up already: nothing is started
    started.clear()
    assert cli.main(["--root", str(root), "desktop"]) == 0
    assert not started
