"""The store's own search: FTS5 trigrams for words of 3+ characters, LIKE for shorter ones, all words required.

Substring matching is what makes it work for Korean without a morphological analyser: a noun is found
inside every inflected form (파일 in 파일을, 파일이). A query word loses one trailing particle for the
same reason (파일을 finds 파일이). Morphemes proper come from the RAG service when it runs (search.py).
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass

HANGUL_WORD = re.compile(r"^[\uac00-\ud7a3]+$")
# Control characters part words; FTS5 would read a NUL inside a quoted term as the end of its query string.
CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
# Longest first, so 으로 is taken whole rather than as 로.
PARTICLES = sorted(("을", "를", "이", "가", "은", "는", "에", "의", "로", "으로", "에서", "에게", "와", "과", "도",
                    "만", "까지", "부터", "처럼", "이나", "이랑", "하고", "께서"), key=len, reverse=True)
EDGE_PUNCTUATION = "\"'.,!?;:()[]{}<>\u201c\u201d\u2018\u2019"
MAX_TERMS = 8
SNIPPET_BEFORE, SNIPPET_AFTER = 40, 100
# The queries' heads; each search adds one bound condition per word (`AND ... LIKE ?`).
FTS_HITS = ("SELECT items.conversation_id, items.id, items.text FROM items_fts JOIN items "
            "ON items.seq = items_fts.rowid WHERE items_fts MATCH ?")
LIKE_HITS = "SELECT conversation_id, id, text FROM items WHERE 1"
TITLE_HITS = ("SELECT id, title FROM (SELECT id, updated_at, json_extract(metadata, '$.title') AS title "
              "FROM conversations) WHERE 1")


@dataclass(frozen=True)
class TextHit:
    conversation_id: str
    item_id: str | None  # None: the title matched
    snippet: str


def strip_particle(word: str) -> str:
    """The word without one trailing Korean particle, when at least two syllables remain."""
    if HANGUL_WORD.match(word):
        for particle in PARTICLES:
            if word.endswith(particle) and len(word) - len(particle) >= 2:
                return word[: -len(particle)]
    return word


def query_terms(query: str) -> list[str]:
    """The distinct words of a query, punctuation at their edges and Korean particles taken off."""
    terms: list[str] = []
    for word in CONTROL.sub(" ", query).split():
        term = strip_particle(word.strip(EDGE_PUNCTUATION))
        if term and term.casefold() not in {t.casefold() for t in terms}:
            terms.append(term)
    return terms[:MAX_TERMS]


def _like(term: str) -> str:
    return "%" + term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def snippet(text: str, terms: list[str]) -> str:
    """A short window of `text` around the first term found in it."""
    folded = text.casefold()
    found = [i for i in (folded.find(t.casefold()) for t in terms) if i >= 0]
    start = max(0, min(found, default=0) - SNIPPET_BEFORE)
    end = min(len(text), start + SNIPPET_BEFORE + SNIPPET_AFTER)
    piece = " ".join(text[start:end].split())
    return ("\u2026" if start else "") + piece + ("\u2026" if end < len(text) else "")


def search_items(conn: sqlite3.Connection, query: str, limit: int) -> list[TextHit]:
    """Conversations whose title or one message holds every word of `query`, best first."""
    terms = query_terms(query)
    if not terms:
        return []
    long_terms = [t for t in terms if len(t) >= 3]
    likes = [_like(t) for t in terms if len(t) < 3]
    # Each conversation counts once, so ask for more rows than conversations wanted.
    rows_wanted = limit * 5
    if long_terms:
        match = " ".join('"' + t.replace('"', '""') + '"' for t in long_terms)
        query = FTS_HITS + " AND items.text LIKE ? ESCAPE '\\'" * len(likes) + " ORDER BY bm25(items_fts) LIMIT ?"
        rows = conn.execute(query, (match, *likes, rows_wanted)).fetchall()
    else:
        query = LIKE_HITS + " AND text LIKE ? ESCAPE '\\'" * len(likes) + " ORDER BY seq DESC LIMIT ?"
        rows = conn.execute(query, (*likes, rows_wanted)).fetchall()
    # Titles the user gave; a title taken from the first message is found through that message.
    query = TITLE_HITS + " AND title LIKE ? ESCAPE '\\'" * len(terms) + " ORDER BY updated_at DESC LIMIT ?"
    titles = conn.execute(query, (*[_like(t) for t in terms], limit)).fetchall()
    hits: dict[str, TextHit] = {}
    for conversation_id, title in titles:
        hits.setdefault(conversation_id, TextHit(conversation_id, None, title))
    for conversation_id, item_id, text in rows:
        hits.setdefault(conversation_id, TextHit(conversation_id, item_id, snippet(text, terms)))
    return list(hits.values())[:limit]
