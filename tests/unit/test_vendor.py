"""The vendored browser libraries match desktop-app/vendor/SHA256SUMS, and a changed file is caught."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from tests.support.procs import ROOT

sys.path.insert(0, str(ROOT / "scripts"))
from vendor_check import VENDOR, check_vendor  # noqa: E402


def test_vendored_files_match_their_checksums() -> None:
    assert check_vendor() == []


def test_pinned_versions_are_the_ones_vendored() -> None:
    assert b"marked v18.3.0" in (VENDOR / "marked" / "marked.esm.js").read_bytes()[:200]
    assert b"DOMPurify 3.5.0" in (VENDOR / "dompurify" / "purify.es.js").read_bytes()[:200]
    assert b"Highlight.js v11.12.0" in (VENDOR / "highlight" / "highlight.min.js").read_bytes()[:200]
    assert b"axe v4.14.1" in (VENDOR / "axe-core" / "axe.min.js").read_bytes()[:200]
    assert b"uPlot (v1.6.32)" in (VENDOR / "uplot" / "uPlot.esm.js").read_bytes()[:300]
    for folder in ("marked", "dompurify", "highlight", "axe-core", "uplot"):
        assert (VENDOR / folder / "LICENSE").stat().st_size > 0


def test_a_changed_or_unlisted_file_is_reported(tmp_path: Path) -> None:
    copy = tmp_path / "vendor"
    shutil.copytree(VENDOR, copy)
    with (copy / "marked" / "marked.esm.js").open("ab") as handle:
        handle.write(b"\nalert(1);\n")
    (copy / "marked" / "extra.js").write_text("export {};\n")
    (copy / "dompurify" / "purify.es.js").unlink()
    assert check_vendor(copy) == [
        "missing: dompurify/purify.es.js",
        "checksum mismatch: marked/marked.esm.js",
        "not listed in SHA256SUMS: marked/extra.js",
    ]


def test_make_vendor_check_passes() -> None:
    result = subprocess.run(  # noqa: S603
        [sys.executable, "scripts/vendor_check.py"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
