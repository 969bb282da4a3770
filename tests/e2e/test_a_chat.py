"""Chatting in the app: streaming answers with the model and the reason, Stop, Regenerate, keys, models."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import Suite, open_app, send, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.integration]


def items(suite: Suite, conversation_id: str) -> list[dict]:
    return suite.api("GET", f"/v1/conversations/{conversation_id}/items?order=asc&limit=100")["data"]


def current_id(page: Page) -> str:
    # expect() asks the browser; page.url alone only changes while some Playwright call runs
    expect(page).to_have_url(re.compile(r"/c/conv_\w+$"), timeout=30_000)
    return page.url.rsplit("/", 1)[1]


def test_an_answer_streams_in_and_shows_the_model_and_why_auto_chose_it(page: Page, suite: Suite) -> None:
    open_app(page, model="auto")
    send(page, "Say hello to the moon.")
    answer = page.get_by_role("article", name="Assistant message").last
    expect(answer).to_contain_text(re.compile(r"Answered by \S+"))
    expect(answer).to_contain_text(re.compile(r"Why: \S+"))
    text = answer.locator(".message-body").inner_text().strip()
    assert text
    conversation = current_id(page)
    stored = items(suite, conversation)
    assert [item["role"] for item in stored] == ["user", "assistant"]
    assert stored[0]["content"][0]["text"] == "Say hello to the moon."
    assert stored[1]["model"] in answer.inner_text()


def test_a_chosen_model_answers_and_the_gateways_models_are_offered(page: Page, suite: Suite) -> None:
    open_app(page, model="auto")
    offered = page.get_by_role("combobox", name="Model").locator("option").all_inner_texts()
    listed = [model["id"] for model in suite.api("GET", "/v1/models")["data"]]
    assert offered[:3] == ["auto", "chat-7b", "code-7b"] and set(listed) <= set(offered)
    page.get_by_role("combobox", name="Model").select_option("code-7b")
    send(page, "Write a Python function that adds two numbers.")
    answer = page.get_by_role("article", name="Assistant message").last
    expect(answer).to_contain_text("Answered by code-7b")
    expect(answer).not_to_contain_text("Why:")


def test_shift_enter_adds_a_line_and_enter_sends(page: Page, suite: Suite) -> None:
    open_app(page)
    box = page.get_by_role("textbox", name="Message")
    box.type("first line")
    box.press("Shift+Enter")
    box.type("second line")
    expect(box).to_have_value("first line\nsecond line")
    expect(page.get_by_role("article", name="You message")).to_have_count(0)
    box.press("Enter")
    expect(page.get_by_role("article", name="You message")).to_contain_text("first line\nsecond line")
    expect(box).to_have_value("")
    expect(page.get_by_role("article", name="Assistant message").last).not_to_have_class(
        re.compile(r"\bstreaming\b"), timeout=180_000)
    assert items(suite, current_id(page))[0]["content"][0]["text"] == "first line\nsecond line"


def test_escape_stops_an_answer_mid_stream_and_keeps_it_marked_incomplete(page: Page, suite: Suite) -> None:
    open_app(page, maxTokens=400, model="chat-7b")
    page.get_by_role("textbox", name="Message").fill("Tell a very long story about a lighthouse keeper and the sea.")
    page.get_by_role("textbox", name="Message").press("Enter")
    answer = page.get_by_role("article", name="Assistant message").last
    expect(page.get_by_role("button", name="Stop")).to_be_visible()
    wait_until(lambda: len(answer.locator(".message-body").inner_text()) > 20, 120, "some streamed text")
    page.keyboard.press("Escape")
    expect(page.get_by_role("button", name="Stop")).to_be_hidden()
    expect(answer).to_contain_text("Stopped")
    shown = answer.locator(".message-body").inner_text().strip()
    conversation = current_id(page)
    stored = wait_until(lambda: [i for i in items(suite, conversation)
                                 if i["role"] == "assistant" and i["status"] != "in_progress"], 30,
                        "the stopped answer to be stored and finalised")
    assert stored[0]["status"] == "incomplete"
    stored_text = stored[0]["content"][0]["text"]
    assert stored_text.strip() and len(stored_text) < 2000
    assert shown[:10] in stored_text or stored_text[:10] in shown


def test_the_address_names_the_new_conversation_once_it_answers_and_not_after_leaving_it(
        page: Page, suite: Suite) -> None:
    open_app(page, maxTokens=400, model="chat-7b")
    page.get_by_role("textbox", name="Message").fill("Tell a very long story about a lighthouse keeper and the sea.")
    page.get_by_role("textbox", name="Message").press("Enter")
    answer = page.get_by_role("article", name="Assistant message").last
    wait_until(lambda: answer.locator(".message-body").inner_text().strip(), 120, "the first streamed text")
    conversation = current_id(page)  # set while the answer still streams
    expect(page.get_by_role("button", name="Stop")).to_be_visible()
    # leaving mid-stream stops the answer; its end must not put the old address back
    page.get_by_role("button", name="New chat").click()
    expect(page.get_by_role("button", name="Stop")).to_be_hidden()
    page.wait_for_timeout(500)
    assert page.url.endswith("/"), page.url
    assert items(suite, conversation)[0]["role"] == "user"


def test_regenerate_replaces_the_last_answer(page: Page, suite: Suite) -> None:
    open_app(page, temperature=1.2)
    send(page, "Name a colour.")
    conversation = current_id(page)
    first = wait_until(lambda: [i for i in items(suite, conversation) if i["role"] == "assistant"], 30, "stored")
    page.get_by_role("button", name="Regenerate").click()
    answer = page.get_by_role("article", name="Assistant message")
    expect(answer).to_have_count(1)
    expect(answer.last).not_to_have_class(re.compile(r"\bstreaming\b"), timeout=180_000)
    def replaced() -> list[dict] | None:
        got = items(suite, conversation)
        return got if len(got) == 2 and got[1]["id"] != first[0]["id"] else None

    stored = wait_until(replaced, 30, "one question and one new answer")
    assert [item["role"] for item in stored] == ["user", "assistant"]
    assert stored[1]["id"] != first[0]["id"]
    assert stored[0]["content"][0]["text"] == "Name a colour."
    expect(page.get_by_role("article", name="You message")).to_have_count(1)
