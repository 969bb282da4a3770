"""`make vendor-check`: verify desktop-app/vendor/ against its SHA256SUMS.

Every listed file must exist with its checksum, and every file under vendor/ (except the lists
themselves) must be listed, so a changed or added third-party file cannot slip in unreviewed.
Exit code 0 when all match, 1 otherwise.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

VENDOR = Path(__file__).resolve().parent.parent / "desktop-app" / "vendor"
UNLISTED = {"SHA256SUMS", "VERSIONS.md"}


def parse_sums(text: str) -> dict[str, str]:
    """Map each relative path in a sha256sum listing to its hex digest."""
    sums: dict[str, str] = {}
    for line in text.splitlines():
        if line.strip():
            digest, name = line.split(maxsplit=1)
            sums[name.lstrip("*")] = digest.lower()
    return sums


def check_vendor(vendor: Path = VENDOR) -> list[str]:
    """Return one line per problem; an empty list means every file matches."""
    sums = parse_sums((vendor / "SHA256SUMS").read_text())
    problems = []
    for name, digest in sorted(sums.items()):
        path = vendor / name
        if path.is_symlink() or not path.is_file():
            problems.append(f"missing: {name}")
        elif hashlib.sha256(path.read_bytes()).hexdigest() != digest:
            problems.append(f"checksum mismatch: {name}")
    for path in sorted(vendor.rglob("*")):
        name = path.relative_to(vendor).as_posix()
        if path.is_file() and name not in sums and name not in UNLISTED:
            problems.append(f"not listed in SHA256SUMS: {name}")
    return problems


def main() -> int:
    problems = check_vendor()
    for problem in problems:
        print(problem, file=sys.stderr)  # noqa: T201
    if not problems:
        print("desktop-app/vendor: every file matches SHA256SUMS")  # noqa: T201
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
