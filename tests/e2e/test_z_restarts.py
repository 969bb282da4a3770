"""The stack under the app restarts: a killed backend turns red and then green; conversations outlive down and up.

These run last in the session: they take the shared stack down and bring it back.
"""

from __future__ import annotations

import os
import re
import signal

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import Suite, open_app, wait_until
from tests.e2e.test_b_conversations import stored_conversation

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def test_a_killed_backend_turns_down_and_comes_back_healthy_without_a_reload(page: Page, suite: Suite) -> None:
    open_app(page)
    strip = page.get_by_role("group", name="Model status")
    expect(strip).not_to_contain_text(": down")
    rows = {row.name: row for row in suite.stack.status()}
    victim = rows["inference-chat"]
    assert victim.pid and victim.health == "healthy"
    page.evaluate("window.__marker = 'same page'")
    os.kill(victim.pid, signal.SIGKILL)
    expect(strip).to_contain_text(re.compile(r": down"), timeout=20_000)
    down = strip.locator(".state-down")
    expect(down.first).to_be_visible()
    # the runner's supervisor restarts it; the page sees it healthy again by polling alone
    wait_until(lambda: (lambda row: row.pid != victim.pid and row.health == "healthy")(
        {r.name: r for r in suite.stack.status()}["inference-chat"]), 180, "the supervisor to restart inference-chat")
    expect(strip).not_to_contain_text(": down", timeout=30_000)
    expect(strip.locator(".state-healthy")).to_have_count(len(suite.api("GET", "/v1/status")["backends"]))
    assert page.evaluate("window.__marker") == "same page"


def test_conversations_are_still_there_after_down_and_up(page: Page, suite: Suite) -> None:
    conversation = stored_conversation(suite, "Survivor", "I am still here after a restart.")
    suite.ai_suite("down", timeout=180)
    suite.up()
    open_app(page, f"/c/{conversation}")
    expect(page.get_by_role("heading", level=1)).to_have_text("Survivor")
    expect(page.get_by_role("article", name="Assistant message")).to_contain_text("I am still here after a restart.")
    expect(page.get_by_role("navigation", name="Conversations").get_by_role("link", name="Survivor")).to_be_visible()
