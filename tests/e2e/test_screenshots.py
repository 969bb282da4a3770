"""Screenshots of the app for the README: desktop (dark) and phone.

`make screenshots` (AI_SUITE_SCREENSHOTS=1) writes them to docs/screenshots/; otherwise they go to a temporary
folder and the test only checks that they show the app.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.conftest import Suite, open_app
from tests.support.procs import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.integration]

QUESTION = "How do I read a file line by line in Python?"
ANSWER = """Open it with a `with` block and loop over the file object; Python reads one line at a time:

```python
from pathlib import Path

def count_lines(path: Path) -> int:
    with path.open(encoding="utf-8") as handle:
        return sum(1 for _ in handle)
```

- the file is closed even if an error happens;
- memory stays flat, however large the file is.
"""


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", header[16:24])


def folder(tmp_path: Path) -> Path:
    if os.environ.get("AI_SUITE_SCREENSHOTS") == "1":
        target = ROOT / "docs" / "screenshots"
        target.mkdir(parents=True, exist_ok=True)
        return target
    return tmp_path


def test_screenshots_of_the_desktop_and_phone_layouts(page: Page, suite: Suite, tmp_path: Path) -> None:
    made = suite.api("POST", "/v1/conversations", {"metadata": {"title": "Reading files in Python"}, "items": [
        {"type": "message", "role": "user", "content": QUESTION},
        {"type": "message", "role": "assistant", "content": ANSWER}]})
    suite.api("POST", "/v1/conversations", {"metadata": {"title": "Trip to Jeju in May"}})
    out = folder(tmp_path)
    page.set_viewport_size({"width": 1280, "height": 800})
    open_app(page, f"/c/{made['id']}", theme="dark")
    expect(page.locator("pre code .hljs-keyword").first).to_be_visible()
    page.get_by_role("textbox", name="Message").fill("And how do I skip blank lines?")
    page.screenshot(path=str(out / "desktop-dark.png"))
    page.set_viewport_size({"width": 390, "height": 844})
    page.get_by_role("textbox", name="Message").fill("")
    page.screenshot(path=str(out / "phone.png"))
    assert png_size(out / "desktop-dark.png") == (1280, 800)
    assert png_size(out / "phone.png") == (390, 844)
