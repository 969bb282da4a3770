"""Entry point of the `ai` command: parse flags, ask once or start a session, map failures to exit codes."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from services.cli.exitcodes import MEANINGS, ExitCode

if TYPE_CHECKING:
    from services.cli.config import CliConfig
    from services.cli.question import PipedInput
    from services.cli.render import Notes

# Heavy modules (httpx, rich) are imported inside functions so that `ai --help` starts fast.

EXAMPLES = """\
examples:
  ai "what is a closure?"
  ai --code "write a python function that reverses a list"
  git diff | ai "review this"
  ai < notes.txt > summary.md        piped output is plain text, ready for a file
  ai -i                              a session: /code /chat /auto /model NAME /clear /exit; the gateway
                                     keeps its conversation, fitted to the model's context as it grows
  ai --continue                      go on with the last session's conversation
  ai --history                       your conversations, newest first (id, last change, title)
  ai --history "파일 읽기"            search them (Korean-aware); ai --conversation ID continues one
  ai --index ~/notes --collection notes    index a file or folder into the RAG service (progress bar)
  ai --rag "how do I read a file?" --collection notes    answer from indexed documents, with sources
  ai --mcp-list                      the MCP server's tools, with their risk levels
  ai --mcp git_status                call a tool; file, git and command tools act on the current folder
  ai --mcp read_file --mcp-args '{"path": "README.md"}'
  ai --approvals                     your approval requests (HIGH and CRITICAL tools wait for one)

environment (flags win; unset values are read from the suite's .env):
  AI_GATEWAY_URL      gateway base URL (default http://127.0.0.1:${API_GATEWAY_PORT:-8000})
  AI_API_KEY, API_KEY bearer key, only needed when the gateway requires one
  AI_TIMEOUT          seconds to wait for an answer (default 120)
  AI_MAX_TOKENS       default for --tokens
  AI_CONVERSATION_FILE  where --continue finds the last conversation per gateway (default
                      ${XDG_STATE_HOME:-~/.local/state}/local-ai-suite/last_conversation.json)
  AI_RAG_URL          RAG service base URL (default http://127.0.0.1:${RAG_PORT:-8002})
  DOCUMENTS_DIR       the RAG service's document folder (default ${DATA_DIR}/documents); files under it are
                      indexed by path, other files are uploaded
  MCP_URL             MCP server (default http://127.0.0.1:${MCP_PORT:-8020}/mcp)
  MCP_API_KEY         your MCP key; unset, the local owner's key in ${DATA_DIR}/security/owner.key is used
"""


def _epilog() -> str:
    codes = "\n".join(f"  {int(code):<4}{meaning}" for code, meaning in MEANINGS.items())
    return f"{EXAMPLES}\nexit codes:\n{codes}\n"


def _number(value: str, kind: type[float] | type[int], words: str) -> float:
    try:
        return kind(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {words}, got {value!r}") from None


def _refuse(value: str, wanted: str) -> argparse.ArgumentTypeError:
    return argparse.ArgumentTypeError(f"must be {wanted}, got {value}")


def positive_int(value: str) -> int:
    number = int(_number(value, int, "a whole number"))
    if number <= 0:
        raise _refuse(str(number), "greater than 0")
    return number


def positive_float(value: str) -> float:
    number = _number(value, float, "a number")
    if not number > 0:
        raise _refuse(value, "greater than 0")
    return number


def temperature(value: str) -> float:
    number = _number(value, float, "a number")
    if not 0.0 <= number <= 2.0:
        raise _refuse(value, "between 0 and 2")
    return number


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ai",
        description="Ask the Local AI Suite from any folder. The answer streams as it is written, rendered\n"
        "as markdown on a terminal. The model (chat-7b or code-7b) is picked from the prompt and\n"
        "piped input and shown on stderr, unless --code, --chat or --model picks it.",
        epilog=_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("prompt", nargs="*", help="the question; piped standard input is sent along as context")
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument("--code", dest="mode", action="store_const", const="code", help="use the code model")
    choice.add_argument("--chat", dest="mode", action="store_const", const="chat", help="use the chat model")
    choice.add_argument("--model", metavar="NAME", help="use this gateway model (e.g. auto, gpt-3.5-turbo)")
    parser.set_defaults(mode="auto")
    parser.add_argument("-i", "--interactive", action="store_true",
                        help="start a session; the gateway keeps its conversation")
    talk = parser.add_argument_group("conversations (kept by the gateway)")
    talk.add_argument("-c", "--continue", dest="resume", action="store_true",
                      help="a session that goes on with your last conversation")
    talk.add_argument("--conversation", metavar="ID", help="a session that goes on with this conversation")
    talk.add_argument("--history", metavar="QUERY", nargs="?", const="",
                      help="list your conversations, newest first; with QUERY, search them")
    parser.add_argument("--tokens", type=positive_int, metavar="N", help="longest answer, in tokens")
    parser.add_argument("--temperature", type=temperature, metavar="T", help="sampling temperature, 0 to 2")
    parser.add_argument("--url", help="gateway base URL (default: $AI_GATEWAY_URL)")
    parser.add_argument("--timeout", type=positive_float, metavar="S", help="seconds to wait for an answer")
    parser.add_argument("--raw", action="store_true", help="print plain text even on a terminal")
    parser.add_argument("-q", "--quiet", action="store_true", help="do not show which model answers")
    parser.add_argument("--no-stdin", action="store_true", help="ignore piped standard input")
    rag = parser.add_argument_group("documents (the RAG service, phase 2)")
    rag_action = rag.add_mutually_exclusive_group()
    rag_action.add_argument("--index", metavar="PATH", type=Path, help="index a file or folder, with a progress bar")
    rag_action.add_argument("--rag", metavar="QUESTION", help="answer from indexed documents, then list the sources")
    rag.add_argument("--collection", metavar="NAME", default="default", help="collection to use (default: default)")
    tools = parser.add_argument_group("tools (the MCP server, phase 3; docs/mcp.md)")
    tool_action = tools.add_mutually_exclusive_group()
    tool_action.add_argument("--mcp", metavar="TOOL", help="call a tool and print what it returns; a call that "
                             "needs approval waits for it, then runs once")
    tool_action.add_argument("--mcp-list", action="store_true", help="list the tools with their risk levels")
    tool_action.add_argument("--approvals", action="store_true", help="list your approval requests")
    tools.add_argument("--mcp-args", metavar="JSON", help="the tool's arguments as a JSON object; working_dir "
                       "defaults to the current folder")
    return parser


def _read_stdin(args: argparse.Namespace) -> PipedInput:
    from services.cli.question import PipedInput, read_piped

    stdin = sys.stdin
    if args.no_stdin or stdin is None or stdin.closed or stdin.isatty():
        return PipedInput("")
    # errors="replace": binary or mis-encoded input must not crash the command.
    if hasattr(stdin, "reconfigure"):
        stdin.reconfigure(errors="replace")
    return read_piped(stdin)


def ask_once(
    parser: argparse.ArgumentParser, args: argparse.Namespace, config: CliConfig, notes: Notes
) -> ExitCode:
    """Answer one question built from the prompt and piped input."""
    from services.cli.ask import stream_answer
    from services.cli.client import ChatRequest, GatewayClient
    from services.cli.question import build_question, choose_model

    prompt = " ".join(args.prompt).strip()
    piped = _read_stdin(args)
    if not prompt and not piped.text.strip():
        parser.error("nothing to ask: give a prompt, pipe text in, or use --interactive")
    if piped.truncated:
        notes.warn(f"piped input cut to its first {len(piped.text):,} of {piped.original_chars:,} characters")
    choice = choose_model(prompt, piped.text, args.mode, args.model)
    if not args.quiet:
        notes.say(choice.describe())
    request = ChatRequest(
        choice.model,
        [{"role": "user", "content": build_question(prompt, piped.text)}],
        config.max_tokens,
        args.temperature,
    )
    markdown = not args.raw and sys.stdout.isatty()
    with GatewayClient(config.url, config.api_key, config.timeout) as client:
        code, _ = stream_answer(client, request, notes, markdown)
    return code


def history_command(
    parser: argparse.ArgumentParser, args: argparse.Namespace, config: CliConfig, notes: Notes
) -> ExitCode:
    """`--history [QUERY]`: list or search the gateway's conversations."""
    from services.cli.client import GatewayClient
    from services.cli.conversations import run_history

    if args.interactive or args.resume or args.conversation:
        parser.error("--history cannot be combined with --interactive, --continue or --conversation")
    query = " ".join([args.history, *args.prompt]).strip()
    with GatewayClient(config.url, config.api_key, config.timeout) as client:
        return run_history(client, query, notes)


def rag_command(
    parser: argparse.ArgumentParser, args: argparse.Namespace, config: CliConfig, notes: Notes
) -> ExitCode:
    """`--index PATH` or `--rag QUESTION` against the RAG service."""
    from services.cli import config as cli_config
    from services.cli import rag

    if args.interactive or args.resume or args.conversation or args.history is not None:
        parser.error("--index and --rag cannot be combined with --interactive or the conversation flags")
    env = cli_config.merged_env()
    url = rag.rag_url(env)
    try:
        with rag.RagClient(url, config.api_key, config.timeout) as client:
            if args.index is not None:
                if args.prompt:
                    parser.error("--index takes one PATH; quote paths that contain spaces")
                return rag.run_index(client, args.index, args.collection, rag.documents_root(env), notes)
            question = " ".join([args.rag, *args.prompt]).strip()
            if not question:
                parser.error("--rag needs a question")
            markdown = not args.raw and sys.stdout.isatty()
            return rag.run_query(client, question, args.collection, markdown, notes)
    except rag.RagUnreachable:
        notes.error(f"the RAG service is not reachable at {url}: start it with `make run` or `ai-suite up p2`")
        return ExitCode.UNREACHABLE
    except rag.RagError as exc:
        notes.error(str(exc))
        return ExitCode.API_ERROR


def mcp_command(
    parser: argparse.ArgumentParser, args: argparse.Namespace, config: CliConfig, notes: Notes
) -> ExitCode:
    """`--mcp TOOL`, `--mcp-list` or `--approvals` against the MCP server."""
    from services.cli import config as cli_config
    from services.cli import mcp

    if args.interactive or args.resume or args.conversation or args.history is not None or args.index is not None \
            or args.rag is not None:
        parser.error("--mcp, --mcp-list and --approvals cannot be combined with a session, --history, --index "
                     "or --rag")
    if args.prompt:
        parser.error("--mcp takes its arguments from --mcp-args '{...}', not from words after it")
    if args.mcp_args is not None and args.mcp is None:
        parser.error("--mcp-args needs --mcp TOOL")
    try:
        tool_args = mcp.parse_tool_args(args.mcp_args)
        target = mcp.resolve_target(cli_config.merged_env(), config.timeout)
    except ValueError as exc:
        parser.error(str(exc))
    if args.mcp_list:
        return mcp.run_list(target, notes)
    if args.approvals:
        return mcp.run_approvals(target, notes)
    return mcp.run_call(target, args.mcp, tool_args, notes)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from services.cli import config as cli_config
    from services.cli.render import Notes

    try:
        config = cli_config.resolve(args.url, args.timeout, args.tokens, cli_config.merged_env())
    except ValueError as exc:
        parser.error(str(exc))
    notes = Notes()
    try:
        if args.mcp is not None or args.mcp_list or args.approvals or args.mcp_args is not None:
            return mcp_command(parser, args, config, notes)
        if args.index is not None or args.rag is not None:
            return rag_command(parser, args, config, notes)
        if args.history is not None:
            return history_command(parser, args, config, notes)
        if args.interactive or args.resume or args.conversation:
            from services.cli.interactive import Session

            return Session(config, args, notes).run(" ".join(args.prompt).strip())
        return ask_once(parser, args, config, notes)
    except KeyboardInterrupt:
        sys.stdout.flush()
        notes.say("\ninterrupted", "yellow")
        return ExitCode.INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`ai ... | head`); point stdout at /dev/null so the final flush is quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitCode.OK
