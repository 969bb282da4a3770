"""Send one chat request and show the answer, turning every failure into a message and an exit code."""

from __future__ import annotations

from services.cli.client import ChatRequest, GatewayClient, GatewayError, GatewayUnreachable
from services.cli.exitcodes import ExitCode
from services.cli.render import Notes, render_answer

START_HINT = "start the suite with `make run` in the repository, or `ai-suite up p1`"


def unreachable_message(url: str, detail: str) -> str:
    return f"cannot reach the AI gateway at {url} ({detail}); {START_HINT}"


def api_error_message(error: GatewayError) -> str:
    if error.status == 401:
        return f"{error.message} (set AI_API_KEY to the gateway's API key)"
    return error.message


def stream_answer(
    client: GatewayClient, request: ChatRequest, notes: Notes, markdown: bool
) -> tuple[ExitCode, str]:
    """Stream one answer to stdout; return the exit code and the answer text ("" on failure)."""
    try:
        text = render_answer(client.stream_chat(request), markdown)
    except GatewayUnreachable as exc:
        notes.error(unreachable_message(exc.url, exc.detail))
        return ExitCode.UNREACHABLE, ""
    except GatewayError as exc:
        notes.error(api_error_message(exc))
        return ExitCode.API_ERROR, ""
    if not text.strip():
        notes.warn("the model returned an empty answer")
    return ExitCode.OK, text
