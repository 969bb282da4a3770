"""`ai --interactive`: a session whose conversation the gateway keeps, with slash commands to switch models.

The gateway stores the conversation (its Conversations API), so the session sends only the new question and
the conversation's id; `ai --continue` picks it up later. Against a gateway without conversations (an older
one, or the litellm engine) the session keeps its history itself, as before.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from services.cli import conversations
from services.cli.ask import api_error_message, stream_answer, unreachable_message
from services.cli.client import ChatRequest, GatewayClient, GatewayError, GatewayUnreachable
from services.cli.config import CliConfig
from services.cli.exitcodes import ExitCode
from services.cli.question import choose_model
from services.cli.render import Notes

HELP = "commands: /code /chat /auto /model NAME /clear /help /exit (Ctrl-D or Ctrl-C at the prompt also exit)"
HISTORY_LINES = 1000


def history_file() -> Path:
    return Path(os.environ.get("AI_HISTORY_FILE") or conversations.state_dir() / "ai_history")


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
    """The current conversation, the current mode and the connection to the gateway."""

    def __init__(self, config: CliConfig, args: argparse.Namespace, notes: Notes) -> None:
        self.config = config
        self.notes = notes
        self.mode: str = args.mode
        self.model: str | None = args.model
        self.flag = "--"  # how the current mode was set, shown as the reason for the model choice
        self.quiet: bool = args.quiet
        self.temperature: float | None = args.temperature
        self.markdown = not args.raw and sys.stdout.isatty()
        self.resume: bool = bool(args.resume or args.conversation)
        self.wanted: str | None = args.conversation
        self.conversation_id: str | None = None
        self.on_server = True  # until the gateway shows it keeps no conversations
        self.omitted = 0
        self.messages: list[dict[str, str]] = []  # the history, only when the gateway keeps none

    def prompt(self) -> str:
        return f"[{self.model or self.mode}] > "

    def run(self, first_question: str = "") -> int:
        history = _LineHistory()
        self.notes.say(f"ai session with {self.config.url}; {HELP}")
        try:
            with GatewayClient(self.config.url, self.config.api_key, self.config.timeout) as client:
                if self.resume and (failed := self.continue_conversation(client)) is not None:
                    return failed
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

    def continue_conversation(self, client: GatewayClient) -> ExitCode | None:
        """Pick up the named or the last conversation and show where it stood; an exit code if that failed."""
        try:
            found = conversations.to_continue(client, self.wanted)
            exchange = conversations.last_exchange(client, found["id"]) if found else []
        except GatewayUnreachable as exc:
            self.notes.error(unreachable_message(exc.url, exc.detail))
            return ExitCode.UNREACHABLE
        except GatewayError as exc:
            self.notes.error(api_error_message(exc))
            return ExitCode.API_ERROR
        if found is None:
            self.notes.say("no conversation to continue yet; the first question starts one")
            return None
        self.conversation_id = found["id"]
        conversations.remember(self.config.url, found["id"])
        self.notes.say(f"continuing {conversations.describe(found)}")
        for role, text in exchange:
            self.notes.say(f"  {'you' if role == 'user' else role}: {conversations.one_line(text)}")
        return None

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
            if self.on_server and self.conversation_id:
                self.conversation_id, self.omitted = None, 0
                self.notes.say("history cleared: the next question starts a new conversation "
                               "(the old one stays on the server: ai --history)")
            else:
                self.notes.say("history cleared")
        else:
            self.notes.say(HELP if name == "/help" else f"unknown command {name}; {HELP}")
        return True

    def _conversation(self, client: GatewayClient) -> str | None:
        """The session's conversation on the gateway, made at the first question; None when it keeps none."""
        if not self.on_server or self.conversation_id:
            return self.conversation_id
        try:
            self.conversation_id = conversations.create(client)
        except conversations.NoConversations as exc:
            self.on_server = False
            self.notes.warn(f"the gateway keeps no conversations ({exc}); this session keeps its history itself")
            return None
        conversations.remember(self.config.url, self.conversation_id)
        return self.conversation_id

    def ask(self, client: GatewayClient, text: str) -> None:
        """Send the question; the gateway adds the history (or the session does, when the gateway keeps none)."""
        choice = choose_model(text, mode=self.mode, model=self.model, flag=self.flag)
        if not self.quiet:
            self.notes.say(choice.describe())
        try:
            conversation = self._conversation(client)
        except GatewayUnreachable as exc:
            self.notes.error(unreachable_message(exc.url, exc.detail))
            return
        except GatewayError as exc:
            self.notes.error(api_error_message(exc))
            return
        question = {"role": "user", "content": text}
        messages = [question] if conversation else [*self.messages, question]
        request = ChatRequest(choice.model, messages, self.config.max_tokens, self.temperature, conversation)
        try:
            code, answer = stream_answer(client, request, self.notes, self.markdown)
        except KeyboardInterrupt:
            sys.stdout.write("\n")
            self.notes.say("answer interrupted" + (" (kept as far as it got)" if conversation else ""), "yellow")
            code, answer = ExitCode.INTERRUPTED, ""
        if conversation:
            self._note_memory(client.history_omitted if code == ExitCode.OK else self.omitted)
            return
        if code == ExitCode.OK:
            self.messages.extend([question, {"role": "assistant", "content": answer}])
        elif code == ExitCode.API_ERROR and self.messages:
            self.notes.say("hint: /clear starts a new conversation, if this one grew too long for the model")

    def _note_memory(self, omitted: int) -> None:
        """Say once when the oldest turns start to give way to the model's context."""
        if omitted and not self.omitted:
            self.notes.say(f"note: the {omitted} oldest turn(s) no longer fit the model's context; the gateway "
                           "keeps them, and the model sees the newest ones")
        self.omitted = omitted
