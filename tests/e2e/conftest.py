"""One real `ai-suite up p4` stack and one Debian Chromium per test session, shared by every end-to-end test."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, expect, sync_playwright

from services.stack.runner import Stack
from tests.support.procs import ROOT, free_port

CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]
PORTS = ("API_GATEWAY_PORT", "INFERENCE_PORT", "INFERENCE_CODE_PORT", "EMBEDDING_PORT", "RAG_PORT", "POSTGRES_PORT",
         "MCP_PORT", "WEB_PORT")
# The web service's approval routes accept this origin (MCP_APPROVAL_ORIGINS), the app's own.
UP_TIMEOUT = 600


@dataclass
class Suite:
    """The running p4 stack: its environment, its URLs and the MCP keys of a requester and an approver."""

    env: dict[str, str]
    data: Path
    owner_key: str = ""
    approver_key: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def url(self, port_var: str) -> str:
        return f"http://127.0.0.1:{self.env[port_var]}"

    @property
    def app(self) -> str:
        return self.url("WEB_PORT")

    @property
    def stack(self) -> Stack:
        return Stack("p4", env=self.env)

    def up(self) -> None:
        """`ai-suite up p4`, up to three tries: on a loaded machine a health check can run out of time (a failed
        start leaves nothing running)."""
        for attempt in range(3):
            try:
                self.ai_suite("up", "p4")
                return
            except AssertionError:
                if attempt == 2:
                    raise

    def ai_suite(self, *args: str, timeout: float = UP_TIMEOUT) -> str:
        done = subprocess.run([sys.executable, "-m", "services.stack", *args], cwd=ROOT, env={**os.environ, **self.env},
                              capture_output=True, text=True, timeout=timeout, check=False)
        assert done.returncode == 0, f"ai-suite {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    def api(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
        """A JSON request to the app's origin (through the web service, as the page makes it)."""
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.app + path, data=data, method=method,  # noqa: S310 - loopback
                                         headers={"content-type": "application/json", **(headers or {})})
        with urllib.request.urlopen(request, timeout=120) as response:  # noqa: S310 - loopback
            return json.loads(response.read() or b"null")


@pytest.fixture(scope="session")
def suite(models_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Suite]:
    data = tmp_path_factory.mktemp("p4-data")
    work = tmp_path_factory.mktemp("p4-work")
    ports = {name: str(free_port()) for name in PORTS}
    app = f"http://127.0.0.1:{ports['WEB_PORT']}"
    env = {**ports, "DATA_DIR": str(data), "MODELS_DIR": str(models_dir), "LOG_JSON": "false",
           "N_THREADS": "1", "EMBEDDING_THREADS": "1", "N_PARALLEL": "2", "RAG_LLM_TIMEOUT": "120",
           "LLM_REQUEST_TIMEOUT": "120", "GATEWAY_COOLDOWN_SECONDS": "2", "MCP_ALLOWED_ROOTS": str(work),
           "MCP_APPROVAL_ORIGINS": app}
    alerts_port = free_port()
    alerts = subprocess.Popen(  # noqa: S603 - the suite's own alert receiver
        [sys.executable, "-m", "services.alerts"], cwd=ROOT,
        env={**os.environ, "ALERTS_PORT": str(alerts_port), "DATA_DIR": str(data), "LOG_JSON": "false"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    env["WEB_ALERTS_URL"] = f"http://127.0.0.1:{alerts_port}"
    # the Status page's charts read this Prometheus; the status tests start it when they need it
    env["WEB_PROMETHEUS_URL"] = f"http://127.0.0.1:{free_port()}"
    suite = Suite(env, data)
    suite.extra["alerts_url"] = env["WEB_ALERTS_URL"]
    try:
        suite.up()
        added = suite.ai_suite("mcp", "user", "add", "approver", "--role", "admin", timeout=60)
        suite.approver_key = added.strip().splitlines()[-1]
        suite.owner_key = (data / "security" / "owner.key").read_text().strip()
        suite.extra["work"] = work
        yield suite
    finally:
        subprocess.run([sys.executable, "-m", "services.stack", "down"], cwd=ROOT, env={**os.environ, **env},
                       capture_output=True, timeout=120, check=False)
        alerts.terminate()
        alerts.wait(10)


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as running:
        yield running


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    yield launched
    launched.close()


@pytest.fixture
def context(browser: Browser, suite: Suite) -> Iterator[BrowserContext]:
    """A fresh browser profile (empty localStorage) per test, with clipboard access for the app's origin."""
    created = browser.new_context(base_url=suite.app, viewport={"width": 1280, "height": 800})
    created.grant_permissions(["clipboard-read", "clipboard-write"], origin=suite.app)
    created.set_default_timeout(60_000)
    yield created
    created.close()


@pytest.fixture
def page(context: BrowserContext) -> Iterator[Page]:
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    yield opened
    assert errors == [], f"uncaught errors in the page: {errors}"


DEFAULT_SETTINGS = {"maxTokens": 24, "temperature": 0}


def open_app(page: Page, path: str = "/", **settings: Any) -> Page:
    """Open the app at `path` with these settings already in localStorage (short answers by default)."""
    stored = json.dumps({**DEFAULT_SETTINGS, **settings})
    page.add_init_script(f"if (!localStorage.getItem('ai-suite.settings')) "
                         f"localStorage.setItem('ai-suite.settings', {json.dumps(stored)});")
    page.goto(path)
    page.get_by_role("group", name="Model status").get_by_text("healthy").first.wait_for()
    return page


def send(page: Page, text: str) -> None:
    """Type a message and press Enter, then wait for the answer to finish streaming."""
    answers = page.get_by_role("article", name="Assistant message")
    before = answers.count()
    box = page.get_by_role("textbox", name="Message")
    box.fill(text)
    box.press("Enter")
    wait_until(lambda: answers.count() == before + 1, 60, "the answer to appear")
    expect(answers.last).not_to_have_class(re.compile(r"\bstreaming\b"), timeout=180_000)


def wait_until(check: Any, seconds: float = 60, what: str = "condition") -> Any:
    """Poll `check()` until it returns something truthy, or fail after `seconds`."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError(f"not within {seconds} s: {what}")
