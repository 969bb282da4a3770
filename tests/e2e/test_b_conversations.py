"""The conversation sidebar: new, rename, delete, Ctrl+K search, /c/{id} links, and hostile stored answers."""

from __future__ import annotations

import re
import uuid

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import Suite, open_app

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def stored_conversation(suite: Suite, title: str, answer: str, question: str = "What is this?") -> str:
    made = suite.api("POST", "/v1/conversations", {"metadata": {"title": title}, "items": [
        {"type": "message", "role": "user", "content": question},
        {"type": "message", "role": "assistant", "content": answer}]})
    return made["id"]


def test_a_link_opens_its_conversation_and_an_unknown_one_says_so(page: Page, suite: Suite) -> None:
    conversation = stored_conversation(suite, "Linked chat", "The **answer** is _here_.")
    open_app(page, f"/c/{conversation}")
    expect(page.get_by_role("heading", level=1)).to_have_text("Linked chat")
    expect(page.get_by_role("article", name="Assistant message")).to_contain_text("The answer is here.")
    expect(page.get_by_role("article", name="Assistant message").locator("strong")).to_have_text("answer")
    expect(page.get_by_role("link", name="Linked chat")).to_have_attribute("aria-current", "page")
    page.goto("/c/conv_doesnotexist000000000000000000000000000000000")
    expect(page.get_by_role("heading", level=1)).to_have_text("Conversation not found")


def test_new_rename_and_delete_from_the_sidebar(page: Page, suite: Suite) -> None:
    title = f"Sidebar {uuid.uuid4().hex[:6]}"
    conversation = stored_conversation(suite, title, "Fine.")
    open_app(page, f"/c/{conversation}")
    sidebar = page.get_by_role("navigation", name="Conversations")
    sidebar.get_by_role("button", name=f"Rename {title}").click()
    field = sidebar.get_by_role("textbox", name="New title")
    field.fill(f"{title} renamed")
    field.press("Enter")
    expect(sidebar.get_by_role("link", name=f"{title} renamed")).to_be_visible()
    assert suite.api("GET", f"/v1/conversations/{conversation}")["title"] == f"{title} renamed"
    expect(page.get_by_role("heading", level=1)).to_have_text(f"{title} renamed")

    page.once("dialog", lambda dialog: dialog.accept())
    sidebar.get_by_role("button", name=f"Delete {title} renamed").click()
    expect(sidebar.get_by_role("link", name=f"{title} renamed")).to_have_count(0)
    expect(page).to_have_url(re.compile(r"/$"))
    listed = [c["id"] for c in suite.api("GET", "/v1/conversations?limit=100")["data"]]
    assert conversation not in listed

    page.get_by_role("button", name="New chat").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("New chat")
    expect(page.get_by_role("article")).to_have_count(0)


def test_ctrl_k_searches_the_conversations(page: Page, suite: Suite) -> None:
    word = f"zebrafinch{uuid.uuid4().hex[:5]}"
    found = stored_conversation(suite, "Birds", f"The {word} sings at dawn.", question="Which bird sings?")
    stored_conversation(suite, "Fish", "Salmon swim upstream.")
    open_app(page)
    page.get_by_role("textbox", name="Message").click()
    page.keyboard.press("Control+k")
    search = page.get_by_role("searchbox", name="Search conversations")
    expect(search).to_be_focused()
    page.keyboard.type(word)
    results = page.get_by_role("list", name="Conversation list").get_by_role("link")
    # best match first, with the message that matched under its title
    expect(results.first).to_contain_text("Birds")
    expect(results.first).to_contain_text(word)
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(f"/c/{found}$"))
    expect(page.get_by_role("article", name="Assistant message")).to_contain_text(word)


XSS_ANSWER = """Here you go.

<img src="x" onerror="window.__xss = 'img'">

<script>window.__xss = 'script'</script>

[click me](javascript:window.__xss='link') and <a href="javascript:window.__xss='a'">this</a>
and <a href="JaVaScRiPt&colon;window.__xss='encoded'">that</a>

<svg onload="window.__xss='svg'"></svg><iframe src="javascript:window.__xss='iframe'"></iframe>
<div style="background:url(javascript:window.__xss='css')" onmouseover="window.__xss='hover'">hover me</div>
"""


def test_hostile_html_in_a_stored_answer_never_runs(page: Page, suite: Suite) -> None:
    conversation = stored_conversation(suite, "Hostile", XSS_ANSWER)
    violations: list[str] = []
    page.on("console", lambda message: violations.append(message.text) if "Content Security" in message.text else None)
    open_app(page, f"/c/{conversation}")
    answer = page.get_by_role("article", name="Assistant message")
    expect(answer).to_contain_text("Here you go.")
    # raw HTML from a model is shown as text
    expect(answer).to_contain_text("<script>window.__xss = 'script'</script>")
    answer.get_by_text("hover me").hover()
    for link in answer.get_by_role("link").all():
        link.click(modifiers=["Control"])
    page.wait_for_timeout(300)
    assert page.evaluate("window.__xss") is None
    body = answer.locator(".message-body")
    assert body.locator("script, iframe, svg, [onerror], [onload], [onmouseover], [style]").count() == 0
    hrefs = [body.locator("a").nth(i).get_attribute("href") or "" for i in range(body.locator("a").count())]
    assert not any(href.strip().lower().startswith("javascript") for href in hrefs)
    # Sanitising removes them before the browser sees them: CSP never had to block anything.
    assert violations == []
