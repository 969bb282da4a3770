"""The real `ai` command against the real gateway app (conversations in its store), with a fake model behind it."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pexpect
import pytest

from tests.support.fake_openai import Behaviour, FakeBackend
from tests.support.gateway import gateway_on_port, gateway_settings
from tests.unit.test_cli_stream import AI_COMMAND, ANSI

ANSWER = "chat:chat-7b#0 chat:chat-7b#1 chat:chat-7b#2 "


@pytest.fixture(scope="module")
def backend() -> Iterator[FakeBackend]:
    started = FakeBackend("chat").start()
    yield started
    started.stop()


@pytest.fixture
def model(backend: FakeBackend) -> Behaviour:
    backend.behaviour.__init__(name="chat")
    return backend.behaviour


@pytest.fixture
def gateway(backend: FakeBackend, model: Behaviour, tmp_path: Path) -> Iterator[str]:
    with gateway_on_port(gateway_settings(backend.api_base, backend.api_base, tmp_path / "gateway")) as url:
        yield url


@pytest.fixture
def cli_env(tmp_path: Path, gateway: str) -> dict[str, str]:
    drop = ("AI_", "API_KEY", "API_GATEWAY_PORT", "XDG_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(HOME=str(tmp_path / "home"), AI_HISTORY_FILE=str(tmp_path / "history"), TERM="xterm-256color",
               AI_GATEWAY_URL=gateway)
    return env


def spawn_ai(args: list[str], env: dict[str, str]) -> pexpect.spawn:
    return pexpect.spawn(
        AI_COMMAND[0], [*AI_COMMAND[1:], "--raw", *args], env=env, dimensions=(40, 160), encoding="utf-8",
        timeout=30, cwd="/tmp", preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def ai(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*AI_COMMAND, *args], stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env,
                          timeout=60, cwd="/tmp")


def stored(gateway: str) -> list[tuple[str, list[tuple[str, str, str]]]]:
    """Every conversation on the gateway, newest first, with its messages (role, status, text)."""
    conversations = httpx.get(f"{gateway}/v1/conversations", timeout=10).json()["data"]
    result = []
    for conversation in conversations:
        items = httpx.get(f"{gateway}/v1/conversations/{conversation['id']}/items",
                          params={"order": "asc", "limit": 100}, timeout=10).json()["data"]
        result.append((conversation["id"], [(i["role"], i["status"], i["content"][0]["text"]) for i in items]))
    return result


def finish(child: pexpect.spawn) -> str:
    child.sendline("/exit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    return ANSI.sub("", child.before or "")


def test_a_session_keeps_its_conversation_on_the_gateway(
    gateway: str, model: Behaviour, cli_env: dict[str, str], tmp_path: Path
) -> None:
    child = spawn_ai(["-i", "--chat"], cli_env)
    child.expect_exact("[chat] > ")
    child.sendline("hello there")
    child.expect_exact(ANSWER)
    child.expect_exact("[chat] > ")
    child.sendline("and the weather?")
    child.expect_exact("[chat] > ")
    # The session sends only the new question; the gateway puts the stored exchange in front.
    assert model.seen[-1]["messages"] == [{"role": "user", "content": "hello there"},
                                          {"role": "assistant", "content": ANSWER},
                                          {"role": "user", "content": "and the weather?"}]
    finish(child)
    [(conversation_id, items)] = stored(gateway)
    assert items == [("user", "completed", "hello there"), ("assistant", "completed", ANSWER),
                     ("user", "completed", "and the weather?"), ("assistant", "completed", ANSWER)]
    remembered = json.loads((tmp_path / "home/.local/state/local-ai-suite/last_conversation.json").read_text())
    assert remembered == {gateway: conversation_id}


def test_continue_resumes_the_last_conversation_and_clear_starts_a_new_one(
    gateway: str, model: Behaviour, cli_env: dict[str, str]
) -> None:
    first = spawn_ai(["-i", "--chat"], cli_env)
    first.expect_exact("[chat] > ")
    first.sendline("my name is Ada")
    first.expect_exact("[chat] > ")
    finish(first)
    [(conversation_id, _)] = stored(gateway)

    child = spawn_ai(["--continue", "--chat"], cli_env)
    child.expect_exact("continuing ")
    child.expect_exact(f"{conversation_id}  my name is Ada")
    child.expect_exact("you: my name is Ada")
    child.expect_exact("[chat] > ")
    child.sendline("what is my name?")
    child.expect_exact("[chat] > ")
    assert [m["content"] for m in model.seen[-1]["messages"]] == ["my name is Ada", ANSWER, "what is my name?"]
    child.sendline("/clear")
    child.expect_exact("the next question starts a new conversation")
    child.expect_exact("[chat] > ")
    child.sendline("a fresh start")
    child.expect_exact(ANSWER)
    child.expect_exact("[chat] > ")
    assert model.seen[-1]["messages"] == [{"role": "user", "content": "a fresh start"}]
    finish(child)
    conversations = stored(gateway)
    assert [len(items) for _, items in conversations] == [2, 4]  # the new one first, the old one kept whole
    assert conversations[1][0] == conversation_id


def test_continue_without_a_remembered_id_takes_the_newest(gateway: str, cli_env: dict[str, str]) -> None:
    older = httpx.post(f"{gateway}/v1/conversations", json={"items": [{"role": "user", "content": "older"}]})
    newer = httpx.post(f"{gateway}/v1/conversations", json={"items": [{"role": "user", "content": "newer"}]})
    assert older.status_code == newer.status_code == 200
    child = spawn_ai(["--continue"], cli_env)
    child.expect_exact(f"{newer.json()['id']}  newer")
    finish(child)


def test_history_lists_and_searches(gateway: str, cli_env: dict[str, str]) -> None:
    assert ai(["--history"], cli_env).stderr.strip() == "no conversations yet: `ai -i` starts one"
    for text in ("파일을 읽는 방법을 알려 주세요", "How do I sort a list in Python?"):
        httpx.post(f"{gateway}/v1/conversations", json={"items": [{"role": "user", "content": text}]})
    listed = ai(["--history"], cli_env)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    titles = [line.split("  ", 2)[2] for line in lines]
    assert titles == ["How do I sort a list in Python?", "파일을 읽는 방법을 알려 주세요"]
    assert all(line.split("  ")[1].startswith("conv_") for line in lines)

    found = ai(["--history", "파일이"], cli_env)
    assert found.returncode == 0, found.stderr
    assert found.stdout.splitlines()[0].endswith("파일을 읽는 방법을 알려 주세요")
    assert found.stdout.splitlines()[1].strip() == "파일을 읽는 방법을 알려 주세요"  # the matching message
    assert len(found.stdout.splitlines()) == 2 and "searched with: text" in found.stderr
    missing = ai(["--history", "nothing like this"], cli_env)
    assert missing.returncode == 0 and "no conversation matches 'nothing like this'" in missing.stderr


def test_an_unknown_conversation_is_an_api_error(cli_env: dict[str, str]) -> None:
    result = ai(["--conversation", "conv_doesnotexist"], cli_env)
    assert result.returncode == 1
    assert "error: gateway answered 404: conversation 'conv_doesnotexist' does not exist" in result.stderr


def test_an_answer_stopped_with_ctrl_c_is_kept_as_incomplete(
    gateway: str, model: Behaviour, cli_env: dict[str, str]
) -> None:
    model.chunks, model.chunk_delay_s = 300, 0.05
    child = spawn_ai(["-i", "--chat"], cli_env)
    child.expect_exact("[chat] > ")
    child.sendline("tell me a long story")
    child.expect_exact("#3 ")
    child.sendintr()
    child.expect_exact("answer interrupted (kept as far as it got)")
    child.expect_exact("[chat] > ")
    finish(child)
    deadline = time.monotonic() + 10
    while len(items := stored(gateway)[0][1]) < 2 or items[-1][1] == "in_progress":  # stored, then finalised
        assert time.monotonic() < deadline
        time.sleep(0.05)
    (_, _, user), (_, status, text) = items
    assert user == "tell me a long story" and status == "incomplete"
    assert text.startswith("chat:chat-7b#0 chat:chat-7b#1 chat:chat-7b#2 chat:chat-7b#3") and "#299" not in text


def test_the_session_says_when_old_turns_give_way(
    backend: FakeBackend, model: Behaviour, tmp_path: Path, cli_env: dict[str, str]
) -> None:
    settings = gateway_settings(backend.api_base, backend.api_base, tmp_path / "small",
                                CONVERSATION_DEFAULT_CONTEXT=400, CONVERSATION_ANSWER_RESERVE=64)
    with gateway_on_port(settings) as url:
        child = spawn_ai(["-i", "--chat", "--url", url], cli_env)
        child.logfile_read = screen = io.StringIO()
        for n in range(5):
            child.expect_exact("[chat] > ")
            child.sendline(f"question {n}: " + "lorem ipsum dolor sit amet " * 12)
        child.expect_exact("[chat] > ")
        finish(child)
    asked = [m["content"][:10] for m in model.seen[-1]["messages"] if m["role"] == "user"]
    assert asked[-1] == "question 4" and "question 0" not in asked  # the gateway did trim
    assert ANSI.sub("", screen.getvalue()).count("oldest turn(s) no longer fit the model's context") == 1
