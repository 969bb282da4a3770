"""Settings that survive a reload and a browser restart, documents (upload with progress, sources), approvals."""

from __future__ import annotations

import asyncio
import re
from concurrent.futures import ThreadPoolExecutor

import pytest
from playwright.sync_api import Browser, Page, expect

from tests.e2e.conftest import Suite, open_app, send, wait_until
from tests.support.mcp_http import session

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def test_settings_persist_across_a_reload_and_a_browser_restart(page: Page, suite: Suite, browser: Browser) -> None:
    open_app(page, "/settings")
    form = page.get_by_role("main")
    form.get_by_role("combobox", name="Model mode").select_option("code-7b")
    form.get_by_role("spinbutton", name="Temperature").fill("0.3")
    form.get_by_role("spinbutton", name="Temperature").press("Tab")
    form.get_by_role("spinbutton", name="Max tokens").fill("77")
    form.get_by_role("spinbutton", name="Max tokens").press("Tab")
    form.get_by_role("textbox", name="System prompt").fill("Answer like a pirate.")
    form.get_by_role("textbox", name="System prompt").press("Tab")
    form.get_by_role("textbox", name="Documents collection").fill("manuals")
    form.get_by_role("textbox", name="Documents collection").press("Tab")
    form.get_by_role("combobox", name="Theme").select_option("light")
    expect(page.get_by_role("status").filter(has_text="Saved.")).to_be_visible()
    page.reload()
    expect(page.get_by_role("combobox", name="Model mode")).to_have_value("code-7b")
    expect(page.get_by_role("combobox", name="Model", exact=True)).to_have_value("code-7b")
    expect(page.get_by_role("spinbutton", name="Max tokens")).to_have_value("77")
    expect(page.locator("html")).to_have_attribute("data-theme", "light")

    # a restart: the profile's storage carried into a new browser context
    state = page.context.storage_state()
    restarted = browser.new_context(base_url=suite.app, storage_state=state)
    again = restarted.new_page()
    again.goto("/settings")
    expect(again.get_by_role("spinbutton", name="Temperature")).to_have_value("0.3")
    expect(again.get_by_role("textbox", name="System prompt")).to_have_value("Answer like a pirate.")
    expect(again.get_by_role("textbox", name="Documents collection")).to_have_value("manuals")
    expect(again.get_by_role("combobox", name="Theme")).to_have_value("light")
    restarted.close()


def test_the_settings_are_what_a_chat_request_sends(page: Page, suite: Suite) -> None:
    open_app(page, model="chat-7b", temperature=0.4, maxTokens=9, systemPrompt="Be terse.")
    with page.expect_request(re.compile(r"/v1/chat/completions$")) as caught:
        send(page, "Hello")
    body = caught.value.post_data_json
    assert body["model"] == "chat-7b" and body["temperature"] == 0.4 and body["max_tokens"] == 9
    assert body["messages"] == [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hello"}]
    assert body["stream"] is True and body["conversation"].startswith("conv_")


DOC = ("# Orbital notes\n\nThe moon Phobos orbits Mars three times a day. "
       "Its name means fear. Deimos is the smaller, outer moon.\n") * 40


def drop_file(page: Page, name: str, text: str) -> None:
    """Drag a file from outside the page and drop it on the chat, as a person does from a file manager."""
    transfer = page.evaluate_handle("""([name, text]) => {
        const transfer = new DataTransfer();
        transfer.items.add(new File([text], name, {type: 'text/markdown'}));
        return transfer;
    }""", [name, text])
    target = page.get_by_role("region", name=re.compile("New chat|Phobos"))
    for event in ("dragenter", "dragover", "drop"):
        target.dispatch_event(event, {"dataTransfer": transfer})


def test_a_dropped_file_is_indexed_with_progress_and_answers_cite_numbered_sources(page: Page, suite: Suite) -> None:
    collection = "e2edocs"
    open_app(page, collection=collection, maxTokens=32)
    page.evaluate("""() => { window.__progress = [];
        new MutationObserver(() => window.__progress.push(document.getElementById('upload-progress').value))
          .observe(document.getElementById('upload-progress'), {attributes: true}); }""")
    drop_file(page, "phobos.md", DOC)
    status = page.get_by_role("status").filter(has_text="phobos.md")
    expect(status).to_contain_text(f"Indexed phobos.md into {collection}", timeout=120_000)
    progress = page.get_by_role("progressbar", name="Upload progress")
    expect(progress).to_have_attribute("value", "100")
    assert 100 in page.evaluate("window.__progress")
    documents = suite.api("GET", f"/rag/collections/{collection}/documents")
    assert any("phobos" in str(doc).lower() for doc in documents.get("documents", []))

    page.get_by_role("checkbox", name="Documents").check()
    send(page, "What does the name Phobos mean?")
    answer = page.get_by_role("article", name="Assistant message").last
    sources = answer.get_by_role("region", name="Sources")
    expect(sources.get_by_role("listitem").first).to_contain_text(re.compile(r"^\[1\] \S*phobos\.md"))
    passage = sources.locator("blockquote").first
    expect(passage).to_be_hidden()
    sources.get_by_text(re.compile(r"^\[1\] ")).first.click()
    expect(passage).to_be_visible()
    expect(passage).to_contain_text("Phobos")


def request_approval(suite: Suite, word: str) -> str:
    """The owner (a developer) asks to run a HIGH-risk tool; it waits for someone else's approval."""
    async def call() -> str:
        async with session(suite.url("MCP_PORT"), suite.owner_key) as client:
            result = await client.call_tool("run_command", {"command": ["echo", word],
                                                            "working_dir": str(suite.extra["work"])})
            return "".join(getattr(item, "text", "") for item in result.content)
    # its own thread: Playwright's sync API keeps an event loop in this one
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, call()).result(timeout=120)


def pending(suite: Suite) -> list[dict]:
    listed = suite.api("GET", "/mcp/approvals", headers={"authorization": f"Bearer {suite.approver_key}"})
    return [r for r in listed["requests"] if r["status"] == "pending"]


def test_the_approvals_page_approves_and_rejects_pending_requests(page: Page, suite: Suite) -> None:
    open_app(page, "/approvals")
    expect(page.get_by_role("status").filter(has_text="MCP API key")).to_be_visible()
    request_approval(suite, "approved-by-app-1")
    request_approval(suite, "approved-by-app-2")
    waiting = wait_until(lambda: (lambda found: found if len(found) >= 2 else None)(pending(suite)), 30, "2 pending")
    page.get_by_role("link", name="Settings").click()
    page.get_by_label("MCP API key (for approvals)").fill(suite.approver_key)
    page.get_by_label("MCP API key (for approvals)").press("Tab")
    page.get_by_role("link", name="Approvals").click()
    cards = page.get_by_role("article")
    expect(cards).to_have_count(len(waiting))
    expect(cards.first).to_contain_text("run_command")
    expect(cards.first).to_contain_text("approved-by-app-")
    approved = (cards.first.get_attribute("aria-label") or "").removeprefix("Approval ")
    cards.first.get_by_role("button", name=re.compile("^Approve")).click()
    expect(page.get_by_role("status").filter(has_text=f"Approved {approved}")).to_be_visible()
    expect(cards).to_have_count(len(waiting) - 1)
    rejected = (cards.first.get_attribute("aria-label") or "").removeprefix("Approval ")
    cards.first.get_by_role("textbox").fill("not today")
    cards.first.get_by_role("button", name=re.compile("^Reject")).click()
    expect(page.get_by_role("status").filter(has_text=f"Rejected {rejected}")).to_be_visible()
    decided = {r["request_id"]: r for r in suite.api("GET", "/mcp/approvals", headers={
        "authorization": f"Bearer {suite.approver_key}"})["requests"]}
    assert decided[approved]["status"] == "approved" and decided[approved]["decided_by"] == "approver"
    assert decided[rejected]["status"] == "rejected" and decided[rejected]["reason"] == "not today"


def test_a_key_whose_role_may_not_approve_is_told_so(page: Page, suite: Suite) -> None:
    open_app(page, "/approvals", mcpKey=suite.owner_key)
    expect(page.get_by_role("status").filter(has_text="Approvals unavailable")).to_contain_text("approvers")
    expect(page.get_by_role("button", name=re.compile("^Approve"))).to_have_count(0)
