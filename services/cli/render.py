"""Show answers: live markdown on a terminal, plain streamed text into a pipe or file."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from rich.console import Console, ConsoleOptions, RenderResult

REFRESH_PER_SECOND = 10
# Control characters but tab, newline and carriage return: model output and server messages are untrusted, and
# an ESC in them would reach the terminal as a command (clear the screen, retitle the window, rewrite lines).
CONTROLS = dict.fromkeys([*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F, *range(0x80, 0xA0)])


def strip_controls(text: str) -> str:
    """`text` without terminal control characters (see CONTROLS)."""
    return text.translate(CONTROLS)


class _GrowingMarkdown:
    """A renderable whose text grows; Markdown is parsed only when Live refreshes, not per token.

    While the answer streams, only its last screenful is drawn: Live can only redraw what is still on the
    screen, so taller output would be left behind as duplicates. Once complete, all of it is drawn.
    """

    def __init__(self, code_theme: str) -> None:
        self.text = ""
        self.code_theme = code_theme
        self.complete = False

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        from rich.markdown import Markdown
        from rich.segment import Segment

        markdown = Markdown(self.text, code_theme=self.code_theme)
        if self.complete:
            yield markdown
            return
        lines = console.render_lines(markdown, options, pad=False)
        for line in lines[-max(1, console.size.height - 1) :]:
            yield from line
            yield Segment.line()


class Notes:
    """One-line messages on standard error (model choice, warnings, errors), styled only on a terminal."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        self._console: Any = None

    def _get(self) -> Any:
        if self._console is None:
            from rich.console import Console

            self._console = Console(file=self._stream or sys.stderr, highlight=False, soft_wrap=True)
        return self._console

    def say(self, message: str, style: str = "dim") -> None:
        from rich.text import Text

        self._get().print(Text(strip_controls(message), style=style))

    def warn(self, message: str) -> None:
        self.say(f"warning: {message}", "yellow")

    def error(self, message: str) -> None:
        self.say(f"error: {message}", "bold red")


def render_markdown(deltas: Iterable[str], stream: TextIO | None = None, code_theme: str = "monokai") -> str:
    """Stream into a rich Live view that re-renders the markdown as it grows; return the full text."""
    from rich.console import Console
    from rich.live import Live

    console = Console(file=stream or sys.stdout)
    view = _GrowingMarkdown(code_theme)
    with Live(view, console=console, refresh_per_second=REFRESH_PER_SECOND, transient=False):
        try:
            for delta in deltas:
                view.text += delta
        finally:
            view.complete = True  # Live's final refresh on exit then draws the whole answer
    return view.text


def render_plain(deltas: Iterable[str], stream: TextIO | None = None) -> str:
    """Write text as it arrives, so `ai ... > file` holds the answer as it was written."""
    out = stream or sys.stdout
    text = ""
    for delta in deltas:
        out.write(delta)
        out.flush()
        text += delta
    if text and not text.endswith("\n"):
        out.write("\n")
    out.flush()
    return text


def render_answer(deltas: Iterable[str], markdown: bool, stream: TextIO | None = None) -> str:
    """Pick the renderer: markdown on a terminal, plain text otherwise; control characters never pass."""
    safe = (strip_controls(delta) for delta in deltas)
    return render_markdown(safe, stream) if markdown else render_plain(safe, stream)
