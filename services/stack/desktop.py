"""`ai-suite desktop`: the chat app (phase 4) in a window of its own, starting the suite first if it is down.

The window is pywebview's (services/stack/window.py, run as a child process); where no GUI toolkit can open
one, Chromium's app mode (`chromium --app=URL`, its own profile under DATA_DIR) shows the same page.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from services.common.probe import probe
from services.stack.runner import APP_URL, Stack, StackError
from services.stack.window import LOADED, NO_TOOLKIT

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "microsoft-edge")


@dataclass
class Opened:
    """How the app was shown: "window" (pywebview), "chromium" (app mode), or "none"; and the exit code."""

    how: str
    code: int
    detail: str = ""


def app_url(stack: Stack) -> str:
    urls = stack.urls()
    if APP_URL not in urls:
        raise StackError("this phase has no chat app; use p4")
    return urls[APP_URL]


def is_up(url: str) -> bool:
    return probe(f"{url}/health", timeout=3.0)[0]


def find_browser(env: dict[str, str] | None = None) -> str | None:
    """CHROMIUM_PATH when it is a program, else the first Chromium-like browser on PATH."""
    env = dict(os.environ) if env is None else env
    configured = env.get("CHROMIUM_PATH")
    if configured and os.access(configured, os.X_OK):
        return configured
    for name in BROWSERS:
        found = shutil.which(name, path=env.get("PATH"))
        if found:
            return found
    return None


def window_argv(url: str, storage: Path, screenshot: Path | None = None, close_after_load: bool = False,
                script: str | None = None) -> list[str]:
    argv = [sys.executable, "-m", "services.stack.window", url, "--storage", str(storage)]
    argv += ["--eval", script] if script else []
    argv += ["--screenshot", str(screenshot)] if screenshot else []
    argv += ["--close-after-load"] if close_after_load else []
    return argv


def browser_argv(browser: str, url: str, profile: Path) -> list[str]:
    # a profile of its own, so --app opens a new window even while the user's browser runs
    argv = [browser, f"--app={url}", f"--user-data-dir={profile}", "--no-first-run", "--no-default-browser-check"]
    if sys.platform.startswith("linux") and hasattr(os, "geteuid") and os.geteuid() == 0:
        argv.append("--no-sandbox")  # Chromium refuses its sandbox to root
    return argv


def open_app(url: str, data_dir: Path, backend: str = "auto", *, screenshot: Path | None = None,
             close_after_load: bool = False, on_line: Callable[[str], None] = print) -> Opened:
    """Show `url` in a pywebview window, or (backend auto or chromium) in Chromium's app mode."""
    desktop_dir = data_dir / "desktop"
    if backend in ("auto", "window"):
        child = subprocess.Popen(window_argv(url, desktop_dir / "webview", screenshot, close_after_load),
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out, err = child.communicate()
        loaded = LOADED in out.split()
        if child.returncode == 0 or loaded:
            return Opened("window", child.returncode, err.strip()[-2000:])
        reason = err.strip().splitlines()[-1] if err.strip() else f"exit {child.returncode}"
        # NO_TOOLKIT, or a toolkit that aborted the process before the page showed (Qt without its libraries)
        if backend == "window" or (child.returncode != NO_TOOLKIT and child.returncode >= 0):
            return Opened("none", 1, f"the window failed: {reason}")
        on_line(f"no native window ({reason}); trying Chromium's app mode")
    browser = find_browser()
    if browser is None:
        return Opened("none", 1, f"no GUI toolkit and no Chromium: open {url} in a browser")
    profile = desktop_dir / "chromium"
    profile.mkdir(parents=True, exist_ok=True)
    return Opened("chromium", subprocess.call(browser_argv(browser, url, profile)))


def start_if_down(stack: Stack, url: str, start: Callable[[], int]) -> int:
    """0 when the app answers (after starting the suite with `start` if it did not)."""
    if is_up(url):
        return 0
    code = start()
    if code != 0:
        return code
    return 0 if is_up(url) else 1
