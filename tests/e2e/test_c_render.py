"""Markdown and code: highlighting, copy buttons and the clipboard, themes, and a phone-sized screen."""

from __future__ import annotations

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import Suite, open_app
from tests.e2e.test_b_conversations import stored_conversation

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

CODE_ANSWER = """Two snippets:

```python
def add(a, b):
    return a + b
```

```bash
echo "done"
```

A table:

| name | value |
|------|-------|
| alpha | 1 |
"""


def test_code_blocks_are_highlighted_and_each_copy_button_fills_the_clipboard(page: Page, suite: Suite) -> None:
    conversation = stored_conversation(suite, "Code", CODE_ANSWER)
    open_app(page, f"/c/{conversation}")
    answer = page.get_by_role("article", name="Assistant message")
    python = answer.locator("pre code").first
    expect(python.locator("span.hljs-keyword").first).to_have_text("def")
    expect(answer.get_by_role("table")).to_be_visible()
    copies = answer.get_by_role("button", name="Copy code")
    expect(copies).to_have_count(2)
    copies.nth(0).click()
    assert page.evaluate("navigator.clipboard.readText()") == "def add(a, b):\n    return a + b\n"
    copies.nth(1).click()
    assert page.evaluate("navigator.clipboard.readText()") == 'echo "done"\n'


def test_copy_answer_puts_the_whole_markdown_on_the_clipboard(page: Page, suite: Suite) -> None:
    conversation = stored_conversation(suite, "Copy all", CODE_ANSWER)
    open_app(page, f"/c/{conversation}")
    page.get_by_role("button", name="Copy answer").click()
    expect(page.get_by_role("button", name="Copied")).to_be_visible()
    assert page.evaluate("navigator.clipboard.readText()") == CODE_ANSWER


def test_the_light_theme_switches_colours_and_code_style_and_is_remembered(page: Page, suite: Suite) -> None:
    conversation = stored_conversation(suite, "Themes", CODE_ANSWER)
    open_app(page, f"/c/{conversation}", theme="dark")
    background = "getComputedStyle(document.body).backgroundColor"
    dark = page.evaluate(background)
    code = page.locator("pre code").first
    dark_code = code.evaluate("el => getComputedStyle(el).backgroundColor")
    page.get_by_role("button", name="Switch between dark and light theme").click()
    expect(page.locator("html")).to_have_attribute("data-theme", "light")
    assert page.evaluate(background) != dark
    assert code.evaluate("el => getComputedStyle(el).backgroundColor") != dark_code
    page.reload()
    expect(page.locator("html")).to_have_attribute("data-theme", "light")


LONG = "x" * 400


def test_a_phone_sized_screen_never_scrolls_sideways(page: Page, suite: Suite) -> None:
    answer = f"A long word {LONG}\n\n```text\n{LONG}\n```\n\n| a | b |\n|---|---|\n| {LONG} | {LONG} |\n"
    conversation = stored_conversation(suite, f"Wide {LONG}", answer)
    page.set_viewport_size({"width": 390, "height": 844})
    open_app(page, f"/c/{conversation}")
    expect(page.get_by_role("article", name="Assistant message")).to_contain_text("A long word")
    wide = "document.scrollingElement.scrollWidth > document.scrollingElement.clientWidth"
    assert page.evaluate(wide) is False
    expect(page.get_by_role("navigation", name="Conversations")).to_be_hidden()
    page.get_by_role("button", name="Open the sidebar").click()
    expect(page.get_by_role("searchbox", name="Search conversations")).to_be_visible()
    assert page.evaluate(wide) is False
    page.get_by_role("button", name="Close the sidebar").click()
    for path in ("/settings", "/status", "/approvals"):
        page.goto(path)
        page.get_by_role("heading", level=1).wait_for()
        assert page.evaluate(wide) is False, path
