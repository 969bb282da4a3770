"""Keyboard-only use and axe-core (vendored from npm): no serious or critical accessibility violations."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import Suite, open_app
from tests.e2e.test_b_conversations import stored_conversation
from tests.e2e.test_c_render import CODE_ANSWER

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def press_tab_until(page: Page, name: str, key: str = "Tab", limit: int = 200) -> None:
    """Press Tab (or Shift+Tab) until the focused element's accessible text is `name`."""
    for _ in range(limit):
        page.keyboard.press(key)
        focused = page.evaluate("""() => { const el = document.activeElement;
            return el.getAttribute('aria-label') || el.labels?.[0]?.textContent || el.textContent || ''; }""")
        if focused.strip() == name:
            return
    raise AssertionError(f"Tab never reached {name!r}")


def test_keyboard_only_use(page: Page, suite: Suite) -> None:
    title = "Keyboard route"
    conversation = stored_conversation(suite, title, CODE_ANSWER, question="Show me code")
    open_app(page)
    # a new chat starts with the message box focused; the skip link leads back to it from the top of the page
    expect(page.get_by_role("textbox", name="Message")).to_be_focused()
    page.get_by_role("link", name="Skip to the message box").focus()
    expect(page.get_by_role("link", name="Skip to the message box")).to_be_visible()
    page.keyboard.press("Enter")
    expect(page.get_by_role("textbox", name="Message")).to_be_focused()
    # Ctrl+K, type, arrow down to the result, Enter opens it
    page.keyboard.press("Control+k")
    page.keyboard.type("Keyboard route")
    expect(page.get_by_role("navigation", name="Conversations").get_by_role("link", name=title)).to_be_visible()
    page.keyboard.press("ArrowDown")
    expect(page.get_by_role("link", name=title)).to_be_focused()
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(f"/c/{conversation}$"))
    # Tab reaches the copy buttons and Enter/Space press them
    press_tab_until(page, "Copy code")
    page.keyboard.press("Enter")
    assert page.evaluate("navigator.clipboard.readText()") == "def add(a, b):\n    return a + b\n"
    # Tab to Settings, Enter, change the theme with the arrow keys
    press_tab_until(page, "Settings", "Shift+Tab")
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/settings$"))
    press_tab_until(page, "Theme")
    page.keyboard.press("ArrowDown")
    expect(page.locator("html")).to_have_attribute("data-theme", "light")
    # every focused control shows a visible focus ring
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline != "none"


def axe(page: Page) -> list[dict]:
    page.add_script_tag(url="/vendor/axe-core/axe.min.js")
    result = page.evaluate("""async () => {
        const found = await axe.run(document, {resultTypes: ['violations']});
        return found.violations.map(v => ({id: v.id, impact: v.impact, help: v.help,
                                           nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5)}));
    }""")
    return [v for v in result if v["impact"] in ("serious", "critical")]


@pytest.mark.parametrize(("theme", "width"), [("dark", 1280), ("light", 1280), ("dark", 390)])
def test_axe_finds_no_serious_or_critical_violations(page: Page, suite: Suite, theme: str, width: int) -> None:
    conversation = stored_conversation(suite, "Accessible", CODE_ANSWER)
    page.set_viewport_size({"width": width, "height": 844})
    open_app(page, f"/c/{conversation}", theme=theme)
    answer = page.get_by_role("article", name="Assistant message")
    expect(answer.locator("pre code .hljs-keyword").first).to_be_visible()
    found = {"chat": axe(page)}
    for path in ("/settings", "/status", "/approvals"):
        page.get_by_role("link", name=path[1:].capitalize(), include_hidden=True).dispatch_event("click")
        page.get_by_role("heading", level=1).filter(has_text=re.compile(".")).first.wait_for()
        found[path] = axe(page)
    assert found == {"chat": [], "/settings": [], "/status": [], "/approvals": []}
