"""The chat app in a native window (pywebview): Qt WebEngine on Linux, WebView2 on Windows, WebKit on macOS.

Run as its own process by `ai-suite desktop`, so that a GUI toolkit that cannot start (no display, a missing
system library; Qt aborts the process then) is seen as an exit code and the command falls back to a browser.
Exit codes: 0 the window was closed, NO_TOOLKIT no toolkit could open one, 1 anything else.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

NO_TOOLKIT = 3
LOADED = "loaded"  # printed on stdout once the page has loaded
RESULT_PREFIX = "result: "  # then --eval's result as JSON
TITLE = "Local AI Suite"


def has_display() -> bool:
    """Whether a window can be shown: always on Windows and macOS; on Linux a display, or Qt offscreen."""
    if not sys.platform.startswith("linux"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
                or os.environ.get("QT_QPA_PLATFORM") == "offscreen")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m services.stack.window", description=__doc__)
    parser.add_argument("url")
    parser.add_argument("--storage", type=Path, help="where the page keeps localStorage (its settings)")
    parser.add_argument("--screenshot", type=Path, help="save a PNG of the window once the page has loaded")
    parser.add_argument("--close-after-load", action="store_true", help="close once loaded (and shot)")
    parser.add_argument("--size", default="1280x840", help="WIDTHxHEIGHT")
    parser.add_argument("--eval", dest="script", metavar="JS",
                        help="once loaded, run JS in the page as is (the app's CSP forbids the eval that "
                             "evaluate_js wraps code in) and print its JSON result after RESULT_PREFIX")
    return parser


def grab(window: Any, path: Path) -> bool:
    """A PNG of the window's contents, taken on the GUI thread (Qt only)."""
    from qtpy.QtCore import QCoreApplication, QObject, Signal, Slot

    class Grabber(QObject):  # type: ignore[misc]
        request = Signal(str)

        def __init__(self) -> None:
            super().__init__()
            self.done = threading.Event()
            self.saved = False
            self.request.connect(self.take)

        @Slot(str)
        def take(self, target: str) -> None:
            try:
                self.saved = bool(window.native.grab().save(target, "PNG"))
            finally:
                self.done.set()

    grabber = Grabber()
    app = QCoreApplication.instance()
    assert app is not None
    grabber.moveToThread(app.thread())  # the slot then runs on the GUI thread
    grabber.request.emit(str(path))
    return grabber.done.wait(30) and grabber.saved


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not has_display():
        sys.stderr.write("no display to open a window on (DISPLAY and WAYLAND_DISPLAY are unset)\n")
        return NO_TOOLKIT
    try:
        import webview
    except ImportError as exc:
        sys.stderr.write(f"pywebview is not installed ({exc}); install the desktop extra\n")
        return NO_TOOLKIT
    linux = sys.platform.startswith("linux")
    if linux and hasattr(os, "geteuid") and os.geteuid() == 0:
        # Chromium (inside Qt WebEngine) refuses its sandbox to root
        flags = os.environ.get("QTWEBENGINE_CHROMIUM_FLAGS", "")
        os.environ["QTWEBENGINE_CHROMIUM_FLAGS"] = f"{flags} --no-sandbox".strip()
    width, _, height = args.size.partition("x")
    window = webview.create_window(TITLE, args.url, width=int(width), height=int(height), min_size=(390, 600))
    failed: list[str] = []

    def after_start(win: Any) -> None:
        try:
            if not win.events.loaded.wait(120):
                failed.append("the page did not load within 120 s")
                return
            sys.stdout.write(LOADED + "\n")
            if args.script:
                sys.stdout.write(RESULT_PREFIX + json.dumps(win.run_js(args.script)) + "\n")
            sys.stdout.flush()
            if args.screenshot and not grab(win, args.screenshot):
                failed.append(f"could not save a screenshot to {args.screenshot}")
        except Exception as exc:  # noqa: BLE001  # reported, and the window closes rather than hangs
            failed.append(f"{type(exc).__name__}: {exc}")
        finally:
            if args.close_after_load or failed:
                win.destroy()

    storage = args.storage
    if storage is not None:
        storage.mkdir(parents=True, exist_ok=True)
    try:
        # private_mode off: the app's settings (localStorage) survive a restart, under `storage`
        webview.start(after_start, (window,), gui="qt" if linux else None, private_mode=False,
                      storage_path=str(storage) if storage else None)
    except Exception as exc:  # pywebview raises its own WebViewException, or the toolkit's import error
        sys.stderr.write(f"no GUI toolkit could open a window: {type(exc).__name__}: {exc}\n")
        return NO_TOOLKIT
    for reason in failed:
        sys.stderr.write(reason + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
