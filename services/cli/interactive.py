"""`ai --interactive`: a session that keeps the conversation and switches models with slash commands."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from services.cli.ask import stream_answer
from services.cli.client import ChatRequest, GatewayClient
from services.cli.config import CliConfig
from services.cli.exitcodes import ExitCode
from services.cli.question import choose_model
from services.cli.render import Notes

HELP = "commands: /code /chat /auto /model NAME /clear /help /exit (Ctrl-D or Ctrl-C at the prompt also exit)"
HISTORY_LINES = 1000


def history_file() -> Path:
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(os.environ.get("AI_HISTORY_FILE") or Path(state) / "local-ai-suite" / "ai_history")


class _LineHistory:
    """Arrow-key editing and history through readline, kept across sessions when the file is writable."""

    def __init__(self) -> None:
        self.readline = None
        if not sys.stdin.isatty():
            return
        try:
            import readline
        except ImportError:  # not every Python build has it (e.g. Windows)
            return
        self.readline = readline
        try:
            readline.read_history_file(history_file())
        except OSError:
            pass  # first session, or an unreadable file: start with an empty history

    def save(self) -> None:
        if self.readline is None:
            return
        path = history_file()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.readline.set_history_length(HISTORY_LINES)
            self.readline.write_history_file(path)
        except OSError:
            pass  # losing the history of a session is not worth an error


class Session:
    """The conversation so far, the current mode and the connection to the gateway."""

    def __init__(self, config: CliConfig, args: argparse.Namespace, notes: Notes) -> None:
        self.config = config
        self.notes = notes
        self.mode: str = args.mode
        self.model: str | None = args.model
        self.flag = "--"  # how the current mode was set, shown as the reason for the model choice
        self.quiet: bool = args.quiet
        self.temperature: float | None = args.temperature
        self.markdown = not args.raw and sys.stdout.isatty()
        self.messages: list[dict[str, str]] = []

    def prompt(self) -> str:
        return f"[{self.model or self.mode}] > "

    def run(self, first_question: str = "") -> int:
        history = _LineHistory()
        self.notes.say(f"ai session with {self.config.url}; {HELP}")
        try:
            with GatewayClient(self.config.url, self.config.api_key, self.config.timeout) as client:
                if first_question:
                    self.ask(client, first_question)
                while True:
                    try:
                        line = input(self.prompt()).strip()
                    except (EOFError, KeyboardInterrupt):
                        sys.stdout.write("\n")
                        return ExitCode.OK
                    if not line:
                        continue
                    if line.startswith("/"):
                        if not self.command(line):
                            return ExitCode.OK
                        continue
                    self.ask(client, line)
        finally:
            history.save()

    def command(self, line: str) -> bool:
        """Apply a slash command; False means the session ends."""
        name, _, arg = line.partition(" ")
        if name in ("/exit", "/quit"):
            return False
        if name in ("/code", "/chat", "/auto"):
            self.mode, self.model, self.flag = name[1:], None, "/"
        elif name == "/model":
            if arg.strip():
                self.model, self.flag = arg.strip(), "/"
            else:
                self.notes.say("usage: /model NAME (for example /model gpt-3.5-turbo)")
        elif name == "/clear":
            self.messages.clear()
            self.notes.say("history cleared")
        else:
            self.notes.say(HELP if name == "/help" else f"unknown command {name}; {HELP}")
        return True

    def ask(self, client: GatewayClient, text: str) -> None:
        """Send the question with the history; keep the exchange only when the answer arrived."""
        choice = choose_model(text, mode=self.mode, model=self.model, flag=self.flag)
        if not self.quiet:
            self.notes.say(choice.describe())
        self.messages.append({"role": "user", "content": text})
        request = ChatRequest(choice.model, list(self.messages), self.config.max_tokens, self.temperature)
        try:
            code, answer = stream_answer(client, request, self.notes, self.markdown)
        except KeyboardInterrupt:
            sys.stdout.write("\n")
            self.notes.say("answer interrupted", "yellow")
            code, answer = ExitCode.INTERRUPTED, ""
        if code == ExitCode.OK:
            self.messages.append({"role": "assistant", "content": answer})
            return
        self.messages.pop()
        if code == ExitCode.API_ERROR and self.messages:
            self.notes.say("hint: /clear starts a new conversation, if this one grew too long for the model")
