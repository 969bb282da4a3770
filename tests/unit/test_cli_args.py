"""`ai` pieces in process: flags, configuration, piped input, model choice, SSE parsing, failure exits."""

from __future__ import annotations

import io
import socket
from pathlib import Path

import httpx
import pytest

from services.cli import config
from services.cli.client import GatewayError, error_message, normalise_base_url, parse_sse
from services.cli.exitcodes import ExitCode
from services.cli.main import build_parser, main
from services.cli.question import build_question, choose_model, read_piped


def closed_port() -> int:
    """A port nothing listens on: bound to find a free one, then closed."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in config.KEYS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(config, "SUITE_ENV_FILE", tmp_path / "absent.env")


def test_prompt_words_are_joined_and_defaults_are_auto() -> None:
    args = build_parser().parse_args(["explain", "closures", "please"])
    assert args.prompt == ["explain", "closures", "please"]
    assert (args.mode, args.model, args.tokens, args.interactive) == ("auto", None, None, False)


@pytest.mark.parametrize(
    ("argv", "mode", "model"),
    [
        (["--code", "x"], "code", None),
        (["--chat", "x"], "chat", None),
        (["--model", "gpt-3.5-turbo", "x"], "auto", "gpt-3.5-turbo"),
    ],
)
def test_model_flags(argv: list[str], mode: str, model: str | None) -> None:
    args = build_parser().parse_args(argv)
    assert (args.mode, args.model) == (mode, model)


@pytest.mark.parametrize(
    "argv",
    [
        ["--tokens", "0", "hi"],
        ["--tokens", "-5", "hi"],
        ["--tokens", "many", "hi"],
        ["--temperature", "2.5", "hi"],
        ["--timeout", "0", "hi"],
        ["--code", "--chat", "hi"],
        ["--url", "localhost:8000", "hi"],
    ],
)
def test_bad_usage_exits_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == ExitCode.USAGE
    assert "error:" in capsys.readouterr().err


def test_nothing_to_ask_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--no-stdin"])
    assert exc.value.code == 2
    assert "nothing to ask" in capsys.readouterr().err


def test_help_lists_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for line in ("0   answered", "2   usage error", "3   the gateway is not reachable", "130 interrupted"):
        assert line in out


def test_unreachable_gateway_names_url_and_start_command(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{closed_port()}"
    assert main(["--url", url, "--no-stdin", "hello"]) == ExitCode.UNREACHABLE
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == "model: chat-7b (no coding signal)"
    assert len(err) == 2, err  # one error line, no traceback
    assert url in err[1] and "make run" in err[1] and "ai-suite up p1" in err[1]


def test_unreachable_default_url_comes_from_gateway_port(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    port = closed_port()
    monkeypatch.setenv("API_GATEWAY_PORT", str(port))
    assert main(["-q", "--no-stdin", "hello"]) == 3
    assert f"http://127.0.0.1:{port}" in capsys.readouterr().err


def test_env_file_is_read_and_environment_wins(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(
        "# comment\nAPI_GATEWAY_PORT=8123\nexport API_KEY='from-file'\nAI_TIMEOUT=30 # seconds\nOTHER=x\n"
    )
    env = config.merged_env({"API_KEY": "from-env"}, env_file)
    assert env == {"API_GATEWAY_PORT": "8123", "API_KEY": "from-env", "AI_TIMEOUT": "30"}
    resolved = config.resolve(None, None, None, env)
    assert resolved == config.CliConfig("http://127.0.0.1:8123", "from-env", 30.0, None)


def test_flags_win_over_environment() -> None:
    env = {"AI_GATEWAY_URL": "http://10.0.0.5:9000", "AI_API_KEY": "a", "API_KEY": "b", "AI_MAX_TOKENS": "64"}
    assert config.resolve(None, None, None, env) == config.CliConfig("http://10.0.0.5:9000", "a", 120.0, 64)
    assert config.resolve("http://h:1", 5.0, 9, env) == config.CliConfig("http://h:1", "a", 5.0, 9)
    with pytest.raises(ValueError, match="AI_MAX_TOKENS"):
        config.resolve(None, None, None, {"AI_MAX_TOKENS": "0"})


def test_url_normalisation() -> None:
    assert normalise_base_url("http://127.0.0.1:8000/v1/") == "http://127.0.0.1:8000"
    assert normalise_base_url("http://127.0.0.1:8000") == "http://127.0.0.1:8000"


@pytest.mark.parametrize(
    ("prompt", "context", "mode", "model", "described"),
    [
        ("write a python function", "", "auto", None, "model: code-7b (keyword 'function')"),
        ("what is the capital of France?", "", "auto", None, "model: chat-7b (no coding signal)"),
        ("review this", "", "auto", None, "model: code-7b (keyword 'review this')"),
        ("summarise", "def add(a, b):\n    return a + b\n", "auto", None,
         "model: code-7b (source code in the prompt, in piped input)"),
        ("함수를 만들어 줘", "", "auto", None, "model: code-7b (keyword '함수')"),
        ("write a function", "", "chat", None, "model: chat-7b (--chat)"),
        ("hello", "", "code", None, "model: code-7b (--code)"),
        ("hello", "", "code", "gpt-3.5-turbo", "model: gpt-3.5-turbo (--model)"),
    ],
)
def test_model_choice_and_its_display(prompt: str, context: str, mode: str, model: str | None, described: str):
    assert choose_model(prompt, context, mode, model).describe() == described


def test_question_puts_piped_text_in_an_unbreakable_fence() -> None:
    assert build_question("  hi  ", "") == "hi"
    assert build_question("", "just stdin\n") == "just stdin"
    question = build_question("review", "text with ``` and ```` inside\n")
    assert question.startswith("review\n\n`````\n") and question.endswith("\n`````")


def test_read_piped_cuts_at_the_limit_and_counts_the_rest() -> None:
    piped = read_piped(io.StringIO("x" * 25), limit=10)
    assert (piped.text, piped.truncated, piped.original_chars) == ("x" * 10, True, 25)
    assert read_piped(io.StringIO("short"), limit=10).truncated is False


def sse(*events: str) -> list[str]:
    return "".join(f"data: {e}\n\n" for e in events).split("\n")


def test_parse_sse_yields_content_and_stops_at_done() -> None:
    chunk = '{"choices":[{"index":0,"delta":{"content":"%s"}}]}'
    lines = [": ping", "", *sse('{"choices":[{"delta":{"role":"assistant"}}]}', chunk % "Hel", chunk % "lo")]
    lines += ["event: x", "", *sse("[DONE]", chunk % "ignored")]
    assert list(parse_sse(lines)) == ["Hel", "lo"]


def test_parse_sse_delivers_the_last_event_of_a_cut_stream() -> None:
    assert list(parse_sse(['data: {"choices":[{"delta":{"content":"end"}}]}'])) == ["end"]


def test_parse_sse_raises_on_error_event() -> None:
    with pytest.raises(GatewayError, match="boom"):
        list(parse_sse(sse('{"error":{"message":"boom","type":"server_error"}}')))


@pytest.mark.parametrize(
    ("response", "message"),
    [
        (httpx.Response(400, json={"error": {"message": "max_tokens must be positive", "type": "x"}}),
         "max_tokens must be positive"),
        (httpx.Response(422, json={"detail": "bad field"}), "bad field"),
        (httpx.Response(502, text="<html>Bad   Gateway\n</html>"), "<html>Bad Gateway </html>"),
        (httpx.Response(503, text=""), "Service Unavailable"),
    ],
)
def test_error_message_from_bodies(response: httpx.Response, message: str) -> None:
    assert error_message(response) == message


def test_live_view_draws_only_the_last_screenful_until_complete() -> None:
    from rich.console import Console

    from services.cli.render import _GrowingMarkdown

    console = Console(file=io.StringIO(), width=60, height=10, force_terminal=True)
    view = _GrowingMarkdown("monokai")
    view.text = "".join(f"line {n}\n\n" for n in range(30))
    streaming = [" ".join(s.text for s in line).strip() for line in console.render_lines(view, pad=False)]
    assert len(streaming) == 9 and streaming[-1] == "line 29"
    view.complete = True
    full = [" ".join(s.text for s in line).strip() for line in console.render_lines(view, pad=False)]
    assert full[0] == "line 0" and full[-1] == "line 29"
