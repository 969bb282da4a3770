"""Reading Dockerfiles statically (no Docker engine here): their stages, and what a target is built from."""

from __future__ import annotations

import re
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "services" / "Dockerfile"


def stages(dockerfile: Path) -> dict[str, list[str]]:
    """Stage name -> its lines, the FROM line first."""
    found: dict[str, list[str]] = {}
    current = ""
    for line in dockerfile.read_text(encoding="utf-8").splitlines():
        match = re.match(r"FROM\s+\S+(?:\s+AS\s+(\S+))?", line, re.IGNORECASE)
        if match:
            current = match.group(1) or f"stage{len(found)}"
            found[current] = []
        if current:
            found[current].append(line)
    return found


def lineage(found: dict[str, list[str]], target: str) -> list[str]:
    """The lines that make `target`: those of the stages it is built FROM first, then its own."""
    base = found[target][0].split()[1]
    return (lineage(found, base) if base in found else []) + found[target]


def target_text(target: str, dockerfile: Path = SHARED) -> str:
    """What builds `target`: the stages it is built FROM and, where it copies from one, that stage too."""
    found = stages(dockerfile)
    lines = lineage(found, target)
    copied = {match.group(1) for line in lines for match in [re.match(r"COPY\s+--from=(\S+)", line)] if match}
    return "\n".join([line for name in sorted(copied & found.keys()) for line in found[name]] + lines)
