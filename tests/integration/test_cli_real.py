"""The `ai` command against the real p1 stack (gateway + inference with the bundled model)."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest

from tests.integration.test_conversations_real import LONG_TURNS
from tests.support.procs import Service

pytestmark = pytest.mark.integration

AI = Path(sys.executable).with_name("ai")
AI_COMMAND = [str(AI)] if AI.exists() else [sys.executable, "-m", "services.cli"]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Z0-9]|\r")


@pytest.fixture
def env(gateway_url: str, tmp_path: Path) -> dict[str, str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AI_", "API_"))}
    return {**clean, "AI_GATEWAY_URL": gateway_url, "HOME": str(tmp_path), "TERM": "xterm-256color"}


def ai(args: list[str], env: dict[str, str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*AI_COMMAND, "--tokens", "48", "--temperature", "0", *args],
        input=stdin, stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True, text=True, env=env, cwd="/tmp", timeout=180,
    )


def test_say_hi_streams_real_tokens(env: dict[str, str]) -> None:
    result = ai(["say hi"], env)
    assert result.returncode == 0, result.stderr
    assert "model: chat-7b (no coding signal)" in result.stderr
    assert len(result.stdout.split()) >= 2 and "\x1b" not in result.stdout


def test_code_flag_uses_the_code_model(env: dict[str, str]) -> None:
    result = ai(["--code", "write a python function that adds two numbers"], env)
    assert result.returncode == 0, result.stderr
    assert "model: code-7b (--code)" in result.stderr
    assert len(result.stdout.split()) >= 3


def test_piped_input_reaches_the_model(env: dict[str, str]) -> None:
    diff = "--- a/add.py\n+++ b/add.py\n@@ -1,2 +1,2 @@\n def add(a, b):\n-    return a - b\n+    return a + b\n"
    result = ai(["review this"], env, stdin=diff)
    assert result.returncode == 0, result.stderr
    assert "model: code-7b" in result.stderr
    assert result.stdout.strip()


def test_unknown_model_is_an_api_error_with_the_gateway_message(env: dict[str, str]) -> None:
    result = ai(["--model", "no-such-model", "hi"], env)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("error: gateway answered 4") and "no-such-model" in lines[-1]
    assert "Traceback" not in result.stderr


def test_terminal_rendering_against_the_real_gateway(env: dict[str, str]) -> None:
    child = pexpect.spawn(
        AI_COMMAND[0], [*AI_COMMAND[1:], "--tokens", "48", "--temperature", "0", "say hi"],
        env=env, dimensions=(40, 100), encoding="utf-8", timeout=180, cwd="/tmp",
    )
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    screen = ANSI.sub("", child.before)
    assert "model: chat-7b" in screen
    answer = screen.split("model: chat-7b (no coding signal)", 1)[1]
    assert len(answer.split()) >= 2


def test_a_long_session_outlives_the_context_and_continues(own_gateway: Service, env: dict[str, str]) -> None:
    """`ai -i` on the bundled 1,024-token model: many long turns, no 400; then --history and --continue find it."""
    env = {**env, "AI_GATEWAY_URL": own_gateway.health_url.removesuffix("/health")}
    child = pexpect.spawn(
        AI_COMMAND[0], [*AI_COMMAND[1:], "-i", "--raw", "--chat", "--tokens", "16", "--temperature", "0"],
        env=env, dimensions=(40, 200), encoding="utf-8", timeout=300, cwd="/tmp",
    )
    child.logfile_read = screen = io.StringIO()
    for n in range(6):
        child.expect_exact("[chat] > ")
        child.sendline(" ".join(LONG_TURNS[n % len(LONG_TURNS)].split()))
    child.expect_exact("[chat] > ")
    child.sendline("/exit")
    child.expect(pexpect.EOF)
    child.close()
    text = ANSI.sub("", screen.getvalue())
    assert child.exitstatus == 0 and "error:" not in text and "Traceback" not in text
    assert text.count("model: chat-7b (--chat)") == 6
    assert "oldest turn(s) no longer fit the model's context" in text

    listed = ai(["--history"], env)
    assert listed.returncode == 0 and len(listed.stdout.splitlines()) == 1
    assert "Tell me about the history of the printing press" in listed.stdout
    found = ai(["--history", "printing press"], env)
    assert found.returncode == 0 and "printing press" in found.stdout.splitlines()[1]

    resumed = pexpect.spawn(AI_COMMAND[0], [*AI_COMMAND[1:], "--continue", "--raw", "--chat", "--tokens", "16"],
                            env=env, dimensions=(40, 200), encoding="utf-8", timeout=300, cwd="/tmp")
    resumed.expect_exact("continuing ")
    resumed.expect_exact("[chat] > ")
    resumed.sendline("Thanks. Summarise our talk in one line.")
    resumed.expect_exact("[chat] > ")
    resumed.sendline("/exit")
    resumed.expect(pexpect.EOF)
    resumed.close()
    assert resumed.exitstatus == 0 and "error:" not in ANSI.sub("", resumed.before)
