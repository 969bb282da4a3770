"""The pieces behind conversation memory and search: turns, fitting, estimates, overflow answers, SSE assembly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.gateway.conversations.context import parse_overflow
from services.gateway.conversations.memory import PER_PROMPT, estimate_message, fit_history, split_turns
from services.gateway.conversations.textsearch import query_terms
from services.gateway.conversations.turns import StreamAnswer


def msg(role: str, content: str) -> dict:
    return {"role": role, "content": content}


def test_turns_start_at_each_user_message() -> None:
    messages = [msg("assistant", "welcome"), msg("user", "a"), msg("assistant", "b"), msg("assistant", "b2"),
                msg("user", "c"), msg("user", "d"), msg("assistant", "e")]
    assert [[m["content"] for m in t] for t in split_turns(messages)] == [
        ["welcome"], ["a", "b", "b2"], ["c"], ["d", "e"]]


def test_fit_keeps_instructions_and_new_messages_and_drops_the_oldest_turns() -> None:
    instructions = [msg("system", "be kind")]
    turns = split_turns([m for n in range(6) for m in (msg("user", f"q{n} " * 40), msg("assistant", f"a{n} " * 40))])
    new = [msg("user", "now")]
    full = fit_history(instructions, turns, new, budget=100_000)
    assert full.omitted_turns == 0 and full.messages == [*instructions, *[m for t in turns for m in t], *new]
    per_turn = sum(estimate_message(m) for m in turns[0])
    fixed = PER_PROMPT + estimate_message(instructions[0]) + estimate_message(new[0])
    two = fit_history(instructions, turns, new, budget=int(fixed + 2.5 * per_turn))
    assert (two.kept_turns, two.omitted_turns) == (2, 4)
    assert [m["content"].split()[0] for m in two.messages] == ["be", "q4", "a4", "q5", "a5", "now"]
    assert fit_history(instructions, turns, new, budget=int(fixed + 2.5 * per_turn), ratio=2.0).kept_turns == 1
    assert fit_history(instructions, turns, new, budget=100_000, max_turns=3).kept_turns == 3
    nothing = fit_history(instructions, turns, new, budget=10)
    assert nothing.messages == [*instructions, *new] and nothing.omitted_turns == 6


def test_the_estimate_tracks_the_bundled_models_tokenizer(gguf_path: Path) -> None:
    """Whole chat prompts, template included: prose, Korean and markdown are never under-counted; code and
    digits by at most 10% (the margin's job, and the backend's overflow answer corrects the rest)."""
    llama_cpp = pytest.importorskip("llama_cpp")
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    llm = llama_cpp.Llama(str(gguf_path), vocab_only=True, verbose=False)
    special = lambda token: llm.detokenize([token], special=True).decode()  # noqa: E731
    template = Jinja2ChatFormatter(template=llm.metadata["tokenizer.chat_template"],
                                   bos_token=special(llm.token_bos()), eos_token=special(llm.token_eos()))
    texts = {
        "prose": ("The quick brown fox jumps over the lazy dog. Reading files in Python is easy.", 1.0),
        "korean": ("파일을 읽는 방법을 알려 주세요. 오늘 날씨가 정말 좋네요. 한국어 문장은 길어질까요?", 1.0),
        "mixed": ("Python의 open() 함수로 파일을 읽습니다. with open('a.txt') as f: data = f.read()", 1.0),
        "markdown": ("# Title\n\n- item one\n- item two\n\n**bold** and `code` and [link](http://x.org).", 1.0),
        "code": ("def add(a, b):\n    return a + b\n\nfor i in range(10):\n    print(f'{i}: {add(i, i)}')\n", 0.9),
        "digits": ("My numbers are 1234567890 and 9876543210, then 31415926535.", 0.9),
    }
    for name, (text, floor) in texts.items():
        for count in (1, 10):
            messages = [msg("user" if n % 2 == 0 else "assistant", text) for n in range(count)]
            prompt = template(messages=messages)
            real = len(llm.tokenize(prompt.prompt.encode(), add_bos=not prompt.added_special, special=True))
            estimate = PER_PROMPT + sum(estimate_message(m) for m in messages)
            assert estimate >= floor * real, (name, count, estimate, real)


@pytest.mark.parametrize(("body", "expected"), [
    ({"error": {"code": "context_length_exceeded", "message":
                "the prompt is 1100 tokens but the context window is 1024 tokens"}}, (1100, 1024)),
    ({"error": {"code": "context_length_exceeded", "message": "max_tokens (200) plus the prompt (900 tokens) "
                "exceeds the context window of 1024 tokens; at most 124 fit"}}, (900, 1024)),
    ({"error": {"type": "exceed_context_size_error", "message": "the request exceeds the available context size",
                "n_prompt_tokens": 5000, "n_ctx": 4096}}, (5000, 4096)),
    ({"error": {"code": "context_length_exceeded", "message": "too long"}}, (None, None)),
])
def test_overflow_answers_are_understood(body: dict, expected: tuple) -> None:
    overflow = parse_overflow(400, json.dumps(body).encode())
    assert overflow is not None and (overflow.prompt_tokens, overflow.n_ctx) == expected


@pytest.mark.parametrize(("status", "body"), [
    (400, b'{"error": {"code": "invalid_request", "message": "the prompt is 5 tokens"}}'),
    (503, b'{"error": {"code": "context_length_exceeded"}}'),
    (400, b"not json"),
    (400, b'["error"]'),
])
def test_other_answers_are_not_overflows(status: int, body: bytes) -> None:
    assert parse_overflow(status, body) is None


def event(payload: dict) -> bytes:
    return b"data: " + json.dumps(payload).encode() + b"\n\n"


def delta(text: str, finish: str | None = None) -> dict:
    return {"choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}]}


def test_the_answer_is_assembled_from_events_cut_anywhere() -> None:
    stream = event(delta("Hel")) + event(delta("lo, 세계")) + event(delta("", "stop")) + \
        event({"choices": [], "usage": {"prompt_tokens": 42}}) + b"data: [DONE]\n\n"
    answer = StreamAnswer()
    for at in range(0, len(stream), 7):  # pieces that cut events, and UTF-8 characters, in the middle
        answer.feed(stream[at:at + 7])
    assert (answer.text, answer.status, answer.prompt_tokens, answer.done) == ("Hello, 세계", "completed", 42, True)


@pytest.mark.parametrize(("stream", "status"), [
    (event(delta("cut", "length")) + b"data: [DONE]\n\n", "incomplete"),
    (event(delta("half")) + event({"error": {"message": "broke"}}) + b"data: [DONE]\n\n", "incomplete"),
    (event(delta("no end yet")), "incomplete"),
    (event(delta("crlf")).replace(b"\n", b"\r\n") + b"data: [DONE]", "completed"),
])
def test_the_answer_status(stream: bytes, status: str) -> None:
    answer = StreamAnswer()
    answer.feed(stream)
    answer.flush()
    assert answer.status == status


def test_query_terms() -> None:
    assert query_terms("파일을 읽는 방법으로") == ["파일", "읽는", "방법"]
    assert query_terms('"Files", files! 고양이') == ["Files", "고양"]
    assert query_terms("을 이") == ["을", "이"]  # too short to lose a particle
    assert query_terms("a\x00b \x1f\t파일을") == ["a", "b", "파일"]  # control characters part words
    assert len(query_terms(" ".join(f"w{n}" for n in range(20)))) == 8
