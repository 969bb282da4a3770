"""The real `ai` command against a small local server that speaks the OpenAI streaming protocol."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pexpect
import pytest

AI = Path(sys.executable).with_name("ai")
AI_COMMAND = [str(AI)] if AI.exists() else [sys.executable, "-m", "services.cli"]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\r")


def answer_chunks(model: str, user_turns: int) -> list[str]:
    """The markdown answer, split the way a model streams it; it names what the server was asked."""
    return [
        "# Answer from ", f"{model}\n\n", f"You sent {user_turns} user message(s), with **bold", "** text ",
        "and `inline code`.\n\n", "- first item\n", "- second item\n",
    ]


def expected_text(model: str, user_turns: int = 1) -> str:
    return "".join(answer_chunks(model, user_turns))


class FakeGateway(ThreadingHTTPServer):
    """Records each request body and headers; the model name picks the behaviour."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[dict[str, Any]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    @property
    def last(self) -> dict[str, Any]:
        return self.requests[-1]["body"]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FakeGateway

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence the default stderr log
        return

    def do_POST(self) -> None:  # noqa: N802 - name fixed by http.server
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append({"path": self.path, "body": body, "headers": dict(self.headers)})
        model = body.get("model")
        if self.path != "/v1/chat/completions" or model == "missing-model":
            error = {"message": f"model '{model}' not found", "type": "invalid_request_error", "code": "404"}
            return self._json(404, {"error": error})
        events: list[Any] = [{"role": "assistant", "content": ""}]
        users = sum(1 for m in body["messages"] if m["role"] == "user")
        events += [{"content": chunk} for chunk in answer_chunks(model, users)]
        if model == "broken-stream":
            events.append({"error": {"message": "backend crashed mid-answer", "type": "server_error"}})
        if model == "slow-stream":
            events += [{"content": f" word{i}"} for i in range(300)]
        try:
            self._sse(model, events)
        except OSError:
            pass  # the client hung up (Ctrl-C); a real server stops generating here too

    def _json(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _sse(self, model: str, events: list[Any]) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self._chunk(": keep-alive\n\n")
        for number, event in enumerate(events):
            if model == "slow-stream" and number > 8:
                time.sleep(0.05)  # a model that takes ~15 s to answer, so there is time to interrupt it
            if "error" in event:
                payload: dict[str, Any] = event
            else:
                choice = {"index": 0, "delta": event, "finish_reason": None}
                payload = {"id": "c1", "object": "chat.completion.chunk", "model": model, "choices": [choice]}
            self._chunk(f"data: {json.dumps(payload)}\n\n")
        self._chunk("data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")

    def _chunk(self, text: str) -> None:
        data = text.encode()
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()


@pytest.fixture
def gateway() -> Iterator[FakeGateway]:
    server = FakeGateway()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    """A clean environment: no keys or URLs from the developer's shell, history in a temp file."""
    drop = ("AI_", "API_KEY", "API_GATEWAY_PORT")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(HOME=str(tmp_path), AI_HISTORY_FILE=str(tmp_path / "history"), TERM="xterm-256color")
    return env


def run_ai(args: list[str], env: dict[str, str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*AI_COMMAND, *args],
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd="/tmp",
    )


def test_piped_diff_is_sent_as_context_and_output_is_plain(gateway: FakeGateway, cli_env: dict[str, str]):
    diff = "diff --git a/app.txt b/app.txt\n--- a/app.txt\n+++ b/app.txt\n@@ -1 +1 @@\n-old line\n+new line\n"
    result = run_ai(["--url", gateway.url, "what", "changed?"], cli_env, stdin=diff)
    assert result.returncode == 0, result.stderr
    content = gateway.last["messages"][0]["content"]
    assert content.startswith("what changed?\n\n```\n") and "+new line" in content and "-old line" in content
    # The prompt alone says nothing about code; the piped diff does, and the reason says so.
    assert gateway.last["model"] == "code-7b"
    assert "model: code-7b (code block or diff in the prompt, in piped input)" in result.stderr
    assert gateway.last["stream"] is True
    assert result.stdout == expected_text("code-7b")
    assert "\x1b" not in result.stdout


def test_stdin_alone_is_the_prompt(gateway: FakeGateway, cli_env: dict[str, str]):
    result = run_ai(["--url", gateway.url + "/v1", "-q"], cli_env, stdin="tell me about the sea\n")
    assert result.returncode == 0, result.stderr
    assert gateway.last["messages"] == [{"role": "user", "content": "tell me about the sea"}]
    assert gateway.last["model"] == "chat-7b"
    assert result.stderr == ""


def test_long_stdin_is_cut_with_a_warning(gateway: FakeGateway, cli_env: dict[str, str]):
    result = run_ai(["--url", gateway.url, "summarise"], cli_env, stdin="a" * 100_000 + "TAIL" * 10)
    assert result.returncode == 0, result.stderr
    assert "warning: piped input cut to its first 100,000 of 100,040 characters" in result.stderr
    content = gateway.last["messages"][0]["content"]
    assert "a" * 100_000 in content and "TAIL" not in content


def test_flags_reach_the_request(gateway: FakeGateway, cli_env: dict[str, str]):
    cli_env["AI_API_KEY"] = "sk-local-test"
    args = ["--url", gateway.url, "--chat", "--tokens", "7", "--temperature", "0.3", "write a python function"]
    result = run_ai(args, cli_env)
    assert result.returncode == 0, result.stderr
    assert gateway.last["model"] == "chat-7b" and "(--chat)" in result.stderr
    assert gateway.last["max_tokens"] == 7 and gateway.last["temperature"] == 0.3
    assert gateway.requests[-1]["headers"]["Authorization"] == "Bearer sk-local-test"


def test_gateway_error_message_and_exit_code_1(gateway: FakeGateway, cli_env: dict[str, str]):
    result = run_ai(["--url", gateway.url, "--model", "missing-model", "hi"], cli_env)
    assert result.returncode == 1
    assert "error: gateway answered 404: model 'missing-model' not found" in result.stderr
    assert "Traceback" not in result.stderr


def test_error_event_mid_stream_gives_exit_code_1(gateway: FakeGateway, cli_env: dict[str, str]):
    result = run_ai(["--url", gateway.url, "--model", "broken-stream", "hi"], cli_env)
    assert result.returncode == 1
    assert result.stdout.startswith("# Answer from broken-stream")
    assert result.stderr.strip().endswith("error: backend crashed mid-answer")


def test_terminal_renders_markdown_and_shows_the_model(gateway: FakeGateway, cli_env: dict[str, str]):
    child = spawn_ai(["--url", gateway.url, "write a function that adds two numbers"], cli_env)
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    raw = child.before
    assert "\x1b[" in raw  # styled output on a terminal
    screen = ANSI.sub("", raw)
    assert "model: code-7b (keyword 'function')" in screen
    assert "Answer from code-7b" in screen and "# Answer" not in screen  # the heading is rendered
    assert "• first item" in screen and "- first item" not in screen
    assert "**" not in screen and "`inline code`" not in screen


def spawn_ai(args: list[str], env: dict[str, str]) -> pexpect.spawn:
    """`ai` on a terminal; SIGINT at its default, even when the test run itself was started with it ignored."""
    return pexpect.spawn(
        AI_COMMAND[0], [*AI_COMMAND[1:], *args], env=env, dimensions=(40, 100), encoding="utf-8", timeout=30,
        cwd="/tmp", preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _expect_prompt(child: pexpect.spawn, mode: str) -> None:
    child.expect_exact(f"[{mode}] > ")


def test_interactive_session_keeps_history_and_switches_models(gateway: FakeGateway, cli_env: dict[str, str]):
    """Against a gateway that keeps no conversations (404 on /v1/conversations) the session keeps the history."""
    child = spawn_ai(["-i", "--url", gateway.url], cli_env)
    _expect_prompt(child, "auto")
    child.sendline("hello there")
    child.expect_exact("model: chat-7b (no coding signal)")
    child.expect_exact("this session keeps its history itself")
    _expect_prompt(child, "auto")
    assert gateway.requests[0]["path"] == "/v1/conversations"
    child.sendline("and the weather?")
    _expect_prompt(child, "auto")
    roles = [m["role"] for m in gateway.last["messages"]]
    assert roles == ["user", "assistant", "user"]
    assert gateway.last["messages"][1]["content"] == expected_text("chat-7b", 1)

    child.sendline("/code")
    _expect_prompt(child, "code")
    child.sendline("tell me a story")
    child.expect_exact("model: code-7b (/code)")
    _expect_prompt(child, "code")
    assert gateway.last["model"] == "code-7b" and len(gateway.last["messages"]) == 5

    child.sendline("/clear")
    child.expect_exact("history cleared")
    _expect_prompt(child, "code")
    child.sendline("/auto")
    _expect_prompt(child, "auto")
    child.sendline("fresh start")
    _expect_prompt(child, "auto")
    assert gateway.last["messages"] == [{"role": "user", "content": "fresh start"}]
    assert gateway.last["model"] == "chat-7b"

    child.sendline("/exit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert [r["path"] for r in gateway.requests] == ["/v1/conversations"] + ["/v1/chat/completions"] * 4
    assert "conversation" not in gateway.last


def test_interactive_ctrl_d_exits_cleanly_and_errors_do_not_end_the_session(
    gateway: FakeGateway, cli_env: dict[str, str]
):
    child = spawn_ai(["-i", "--model", "missing-model", "--url", gateway.url], cli_env)
    _expect_prompt(child, "missing-model")
    child.sendline("hi")
    child.expect_exact("model 'missing-model' not found")
    _expect_prompt(child, "missing-model")
    child.sendline("/chat")
    _expect_prompt(child, "chat")
    child.sendline("hi again")
    _expect_prompt(child, "chat")
    # The failed exchange was dropped, so only the new question went out.
    assert gateway.last["messages"] == [{"role": "user", "content": "hi again"}]
    child.sendeof()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert "Traceback" not in ANSI.sub("", child.before or "")


def test_ctrl_c_stops_the_answer_with_exit_code_130(gateway: FakeGateway, cli_env: dict[str, str]):
    child = spawn_ai(["--url", gateway.url, "--model", "slow-stream", "hi"], cli_env)
    child.expect("word2")
    child.sendintr()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 130
    screen = ANSI.sub("", child.before)
    assert "interrupted" in screen and "Traceback" not in screen and "word299" not in screen


def test_ctrl_c_in_a_session_drops_that_answer_and_keeps_the_session(
    gateway: FakeGateway, cli_env: dict[str, str]
):
    child = spawn_ai(["-i", "--raw", "--url", gateway.url, "--model", "slow-stream"], cli_env)
    _expect_prompt(child, "slow-stream")
    child.sendline("first")
    child.expect("word2")
    child.sendintr()
    child.expect_exact("answer interrupted")
    _expect_prompt(child, "slow-stream")
    child.sendline("/chat")
    _expect_prompt(child, "chat")
    child.sendline("second")
    _expect_prompt(child, "chat")
    assert gateway.last["messages"] == [{"role": "user", "content": "second"}]
    child.sendintr()  # Ctrl-C at the prompt ends the session cleanly
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


HOSTILE = ["Hello \x1b[2J\x1b]0;pwned\x07", " world\x1b[1A\x9b31m", "\n| a |\tb |\r\n"]


@pytest.mark.parametrize("markdown", [True, False])
def test_model_output_cannot_send_terminal_control_sequences(markdown: bool) -> None:
    import io

    from services.cli.render import render_answer

    out = io.StringIO()
    text = render_answer(iter(HOSTILE), markdown=markdown, stream=out)
    for shown in (out.getvalue(), text):
        assert not any(char in shown for char in "\x1b\x07\x9b")
        assert "Hello" in shown and "world" in shown
    assert text == "Hello [2J]0;pwned world[1A31m\n| a |\tb |\r\n"
