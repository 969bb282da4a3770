"""Pick the chat or the code model for a prompt; shared by the gateway's `auto` and the CLI."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Kind = Literal["chat", "code"]

CODE_KEYWORDS_EN = (
    "code", "function", "class", "method", "bug", "debug", "error", "exception", "traceback", "stack trace",
    "compile", "refactor", "implement", "algorithm", "regex", "api", "sql", "query", "script", "unit test",
    "pytest", "syntax", "variable", "loop", "recursion", "python", "javascript", "typescript", "java", "rust",
    "golang", "c++", "bash", "dockerfile", "kubernetes", "git", "diff", "commit", "review this", "snippet",
)
CODE_KEYWORDS_KO = (
    "코드", "함수", "클래스", "메서드", "메소드", "버그", "디버그", "디버깅", "에러", "오류", "예외", "컴파일",
    "리팩터", "리팩토링", "구현", "알고리즘", "정규식", "쿼리", "스크립트", "테스트 코드", "변수", "반복문",
    "재귀", "프로그래밍", "코딩", "파이썬", "자바스크립트", "깃", "커밋",
)
FILE_NAME = re.compile(
    r"\b[\w./-]{1,255}\.(py|js|ts|tsx|jsx|java|go|rs|c|cc|cpp|h|hpp|cs|rb|php|sh|sql|kt|swift|scala|yml|yaml|toml|"
    r"json|dockerfile|tf|lua|r|m)\b",
    re.IGNORECASE,
)
CODE_FENCE = re.compile(r"```|^(\+\+\+|---|@@) ", re.MULTILINE)
CODE_SHAPES = re.compile(
    r"\b(def|class|import|return|const|let|var|fn|func|public|private|#include|SELECT|INSERT|UPDATE)\b"
    r"[^\n]{0,200}[(){};:=]|=>|->|\w{1,80}\([^)]{0,200}\)\s*[{:]"
)
WORD_CHAR = re.compile(r"[a-z0-9+#]")


@dataclass(frozen=True)
class Choice:
    kind: Kind
    reason: str
    signal: str  # what decided it, as a short fixed name (a metric label)


def _keyword_hit(text: str) -> str | None:
    lowered = text.lower()
    for word in CODE_KEYWORDS_EN:
        start = lowered.find(word)
        while start != -1:
            before = lowered[start - 1] if start else " "
            end = start + len(word)
            after = lowered[end] if end < len(lowered) else " "
            if not WORD_CHAR.match(before) and not WORD_CHAR.match(after):
                return word
            start = lowered.find(word, start + 1)
    return next((word for word in CODE_KEYWORDS_KO if word in text), None)


def classify(text: str) -> Choice:
    """Return the model kind for `text` and a short human-readable reason."""
    if CODE_FENCE.search(text):
        return Choice("code", "code block or diff in the prompt", "code_block")
    if match := FILE_NAME.search(text):
        return Choice("code", f"file name {match.group(0)!r}", "file_name")
    if keyword := _keyword_hit(text):
        return Choice("code", f"keyword {keyword!r}", "keyword")
    if CODE_SHAPES.search(text):
        return Choice("code", "source code in the prompt", "source_code")
    return Choice("chat", "no coding signal", "no_signal")


def classify_messages(messages: list[dict]) -> Choice:
    """Classify a chat request by its last user message (text parts only)."""
    for message in reversed(messages):
        if not isinstance(message, dict) or message.get("role") != "user":
            continue
        content = message.get("content")
        if isinstance(content, list):
            content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
        if isinstance(content, str):
            return classify(content)
    return Choice("chat", "no user message", "no_user_message")
