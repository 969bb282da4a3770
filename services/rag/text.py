"""Sentence splitting and BM25 terms for Korean, English and mixed text (kiwipiepy for Korean)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kiwipiepy import Kiwi

# Hangul syllables and jamo plus CJK ideographs: text with any of these goes through kiwipiepy.
KIWI_SCRIPT = re.compile(r"[\u1100-\u11ff\u3130-\u318f\uac00-\ud7a3\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
# Everything else, which kiwipiepy need not see for terms: Latin words come from WORD, and a shorter input is faster.
NOT_KIWI_SCRIPT = re.compile(r"[^\u1100-\u11ff\u3130-\u318f\uac00-\ud7a3\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+")
HANGUL = re.compile(r"[\u1100-\u11ff\u3130-\u318f\uac00-\ud7a3]")
# Latin (and other alphabetic) words and numbers; Hangul/CJK never match, so kiwipiepy owns those.
ALPHANUMERIC = r"[0-9a-z\u00c0-\u024f\u0370-\u03ff\u0400-\u04ff]"
WORD = re.compile(rf"{ALPHANUMERIC}+(?:[.']{ALPHANUMERIC}+)*")
FENCE = re.compile(r"^[ \t]{0,3}(```|~~~)")
BLOCK_LINE = re.compile(r"^[ \t]{0,3}(#{1,6}\s|[-*+]\s|\d{1,3}[.)]\s|>|\|)")
CODE_LINE = re.compile(
    r"^(\s{2,}|\t)\S|[{}\[\]();:,=\\]\s*$|^\s*(def|class|import|from|return|if|elif|else|for|while|try|except|with|"
    r"const|let|var|function|fn|func|public|private|package|#include|SELECT|INSERT|UPDATE)\b|==|=>|->|\s=\s"
)
# Candidate English sentence ends: terminal punctuation, optional closers, whitespace, then a plausible start.
EN_BOUNDARY = re.compile(r"[.!?\u2026]+[\"')\]\u2019\u201d]*\s+(?=[\"'(\[\u2018\u201c]?[A-Z0-9\uac00-\ud7a3])")
ABBREVIATIONS = frozenset(
    "mr mrs ms dr prof sr jr st vs etc e.g i.e cf fig no vol approx dept inc ltd co corp jan feb mar apr jun jul aug "
    "sep sept oct nov dec u.s u.k".split()
)
STOP_WORDS = frozenset(
    "a an and are e.g i.e etc as at be been but by can could did do does don't for from had has have he her his how "
    "i if in into is it its it's me my no not of on or our she so than that the their them then there these they this "
    "those to too us was we were what when where which who whom why will with would you your".split()
)
# Content morphemes: general/proper nouns, numerals, verb and adjective stems, roots, hanja.
CONTENT_TAGS = frozenset({"NNG", "NNP", "NR", "VV", "VA", "XR", "SH"})
# Stems so common that they only add noise (하다, 되다, 있다, 없다, 같다, 어떻다, ...).
KOREAN_STOP_STEMS = frozenset({"하", "되", "있", "없", "같", "어떻", "그렇", "이렇"})


def english_stem(word: str) -> str:
    """Fold simple English plurals so `files` and `file` share a term."""
    if len(word) <= 3 or not word.isalpha() or word.endswith(("ss", "us", "is")):
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("sses", "xes", "zes", "ches", "shes")):
        return word[:-2]
    if word.endswith("s"):
        return word[:-1]
    return word


def word_terms(text: str) -> list[str]:
    """Lower-cased non-Korean words and numbers of `text`, stop words removed, plurals folded."""
    return [
        english_stem(word)
        for word in WORD.findall(text.lower())
        if (len(word) > 1 or word.isdigit()) and word not in STOP_WORDS
    ]


def is_code_paragraph(lines: Sequence[str]) -> bool:
    """Whether a paragraph looks like source code, so it is kept whole instead of split into sentences."""
    filled = [line for line in lines if line.strip()]
    if not filled:
        return False
    return sum(1 for line in filled if CODE_LINE.search(line)) * 2 >= len(filled)


def split_english(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Rule-based sentence spans inside text[start:end] (abbreviations such as e.g. and Dr. do not end one)."""
    spans: list[tuple[int, int]] = []
    begin = start
    for match in EN_BOUNDARY.finditer(text, start, end):
        head = text[begin:match.start() + 1].rstrip(".!?\u2026").split()
        last = head[-1].lower().lstrip("(\"'") if head else ""
        initial = len(last) == 1 and last.isalpha()  # "J. Smith"
        list_number = len(head) == 1 and last.isdigit()  # "1. item"
        if text[match.start()] == "." and (last in ABBREVIATIONS or initial or list_number):
            continue
        cut = match.end()
        spans.append((begin, _rstrip(text, begin, cut)))
        begin = cut
    if begin < end:
        spans.append((begin, _rstrip(text, begin, end)))
    return [span for span in spans if span[1] > span[0]]


def _rstrip(text: str, start: int, end: int) -> int:
    while end > start and text[end - 1].isspace():
        end -= 1
    return end


def paragraph_spans(text: str) -> list[tuple[int, int, bool]]:
    """Split text into (start, end, is_code) blocks: fenced code blocks, code paragraphs and prose pieces."""
    blocks: list[tuple[int, int, bool]] = []
    lines = text.splitlines(keepends=True)
    offset = 0
    current: list[tuple[int, str]] = []
    fence: str | None = None

    def flush(code: bool = False) -> None:
        if current:
            start, end = current[0][0], current[-1][0] + len(current[-1][1])
            raw = [line for _, line in current]
            blocks.extend(_prose_or_code(text, start, end, current, code or is_code_paragraph(raw)))
            current.clear()

    for line in lines:
        marker = FENCE.match(line)
        if fence is not None:
            current.append((offset, line))
            if marker and marker.group(1) == fence:
                fence = None
                flush(code=True)
        elif marker:
            flush()
            fence = marker.group(1)
            current.append((offset, line))
        elif not line.strip():
            flush()
        else:
            current.append((offset, line))
        offset += len(line)
    flush(code=fence is not None)
    return blocks


def _prose_or_code(
    text: str, start: int, end: int, lines: list[tuple[int, str]], code: bool
) -> list[tuple[int, int, bool]]:
    if code:
        return [(start, _rstrip(text, start, end), True)]
    # Markdown headings, list items, quotes and table rows start a new piece even without a blank line.
    pieces: list[tuple[int, int, bool]] = []
    piece_start = start
    for line_start, line in lines[1:]:
        if BLOCK_LINE.match(line):
            pieces.append((piece_start, _rstrip(text, piece_start, line_start), False))
            piece_start = line_start
    pieces.append((piece_start, _rstrip(text, piece_start, end), False))
    return [piece for piece in pieces if piece[1] > piece[0]]


class TextAnalyzer:
    """Holds one kiwipiepy Kiwi (slow to build, so build once per service) and splits/normalises text with it."""

    def __init__(self, kiwi: Kiwi | None = None, num_workers: int | None = None) -> None:
        if kiwi is None:
            from kiwipiepy import Kiwi

            kiwi = Kiwi(num_workers=num_workers)
        self.kiwi = kiwi

    def prewarm(self) -> None:
        """Run one analysis, so the first real request does not pay for kiwipiepy's lazy model loading."""
        self.bm25_terms("파일을 읽는 방법을 알려 주세요. Reading files.")
        self.split_sentences("첫 문장이다. 두 번째 문장이다.")

    def sentence_spans(self, text: str) -> list[tuple[int, int]]:
        """Character spans of the sentences of `text`; a code block or code paragraph is one span."""
        spans: list[tuple[int, int]] = []
        for start, end, code in paragraph_spans(text):
            while start < end and text[start].isspace():
                start += 1
            if code or start >= end:
                if end > start:
                    spans.append((start, end))
                continue
            if HANGUL.search(text, start, end):
                for sentence in self.kiwi.split_into_sents(text[start:end], return_sub_sents=False):
                    spans.extend(split_english(text, start + sentence.start, start + sentence.end))
            else:
                spans.extend(split_english(text, start, end))
        return spans

    def split_sentences(self, text: str) -> list[str]:
        """Sentences of `text` (Korean with kiwipiepy, English by rules); code blocks stay whole."""
        return [text[start:end] for start, end in self.sentence_spans(text)]

    def bm25_terms(self, text: str) -> list[str]:
        """Index/query terms: Korean content morphemes (stems, so inflections match) plus English words."""
        return self.bm25_terms_batch([text])[0]

    def bm25_terms_batch(self, texts: Iterable[str]) -> list[list[str]]:
        """`bm25_terms` for many texts, with one batched kiwipiepy call for those containing Korean or hanja."""
        items = list(texts)
        result = [word_terms(text) for text in items]
        korean = [index for index, text in enumerate(items) if KIWI_SCRIPT.search(text)]
        if korean:
            analysed = self.kiwi.tokenize([NOT_KIWI_SCRIPT.sub(" ", items[index]) for index in korean])
            for index, tokens in zip(korean, analysed, strict=True):
                result[index] = self._korean_terms(tokens) + result[index]
        return result

    @staticmethod
    def _korean_terms(tokens: Iterable[object]) -> list[str]:
        terms = []
        for token in tokens:
            tag = token.tag.split("-", 1)[0]  # type: ignore[attr-defined]
            form = token.form  # type: ignore[attr-defined]
            if tag in CONTENT_TAGS and form not in KOREAN_STOP_STEMS and KIWI_SCRIPT.search(form):
                terms.append(form)
        return terms
