"""docs/conversations.md stays true to the code: every conversation setting documented, its JSON examples valid."""

from __future__ import annotations

import json
import re
from pathlib import Path

from services.gateway.settings import GatewaySettings

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "conversations.md").read_text(encoding="utf-8")


def conversation_settings() -> set[str]:
    aliases = {field.alias for field in GatewaySettings.model_fields.values() if field.alias}
    return {alias for alias in aliases if alias.startswith(("CONVERSATION", "RAG_URL"))}


def test_every_conversation_setting_is_documented_here_and_in_env_example() -> None:
    names = conversation_settings()
    assert len(names) == 10
    env_example = (ROOT / ".env.example").read_text(encoding="utf-8")
    assert sorted(n for n in names if f"| `{n}` |" not in DOC) == []
    assert sorted(n for n in names if n not in env_example) == []


def test_the_json_examples_parse() -> None:
    blocks = re.findall(r"```json\n(.*?)```", DOC, re.DOTALL)
    assert len(blocks) == 3
    for block in blocks:
        json.loads(block)
