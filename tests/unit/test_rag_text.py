"""TextAnalyzer on real kiwipiepy: sentence splitting and BM25 terms for Korean, English and mixed text."""

from __future__ import annotations

import time

import pytest

from services.rag.text import TextAnalyzer, english_stem, word_terms


@pytest.fixture(scope="module")
def analyzer() -> TextAnalyzer:
    return TextAnalyzer()


def test_korean_inflections_share_the_stem(analyzer: TextAnalyzer) -> None:
    for text in ("파일을 읽는 방법", "파일 읽기", "파일을 읽었다", "파일을 읽으려면"):
        terms = analyzer.bm25_terms(text)
        assert "읽" in terms and "파일" in terms, (text, terms)
    assert "방법" in analyzer.bm25_terms("파일을 읽는 방법")


def test_particles_endings_and_common_stems_are_dropped(analyzer: TextAnalyzer) -> None:
    terms = analyzer.bm25_terms("한글이 들어 있는 파일을 읽으려면 어떻게 해야 하나요?")
    assert {"을", "이", "는", "으려면", "있", "하", "어떻", "?"}.isdisjoint(terms)
    assert {"한글", "파일", "읽"} <= set(terms)


def test_irregular_verbs_give_their_dictionary_stem(analyzer: TextAnalyzer) -> None:
    assert "듣" in analyzer.bm25_terms("음악을 들었다")
    assert "듣" in analyzer.bm25_terms("음악을 듣는 중")


def test_english_words_are_lowercased_without_stop_words(analyzer: TextAnalyzer) -> None:
    terms = analyzer.bm25_terms("Reading the Files in Python 3.14 with open()")
    assert terms == ["reading", "file", "python", "3.14", "open"]


def test_mixed_text_keeps_both_scripts_and_hanja(analyzer: TextAnalyzer) -> None:
    terms = analyzer.bm25_terms("Python에서 open() 함수로 漢字 파일을 읽는다")
    assert {"python", "open", "함수", "漢字", "파일", "읽"} <= set(terms)
    assert not any(term.startswith("python에") for term in terms)


def test_batch_matches_single_calls(analyzer: TextAnalyzer) -> None:
    texts = ["파일을 읽는 방법", "plain English files", "", "경복궁은 화요일에 쉰다 on Tuesdays"]
    assert analyzer.bm25_terms_batch(texts) == [analyzer.bm25_terms(text) for text in texts]


def test_plural_folding() -> None:
    assert [english_stem(w) for w in ("files", "queries", "boxes", "class", "status", "is")] == [
        "file", "query", "box", "class", "status", "is",
    ]
    assert word_terms("The CAT and the cats") == ["cat", "cat"]


def test_split_mixed_korean_and_english(analyzer: TextAnalyzer) -> None:
    text = "안녕하세요. 저는 학생입니다. This is e.g. a test! Dr. Smith went home. 그리고 끝."
    assert analyzer.split_sentences(text) == [
        "안녕하세요.", "저는 학생입니다.", "This is e.g. a test!", "Dr. Smith went home.", "그리고 끝.",
    ]


def test_split_english_by_rules(analyzer: TextAnalyzer) -> None:
    text = "First sentence. Another one? Yes! 3 apples were there.\nA wrapped\nline ends here."
    assert analyzer.split_sentences(text) == [
        "First sentence.", "Another one?", "Yes!", "3 apples were there.", "A wrapped\nline ends here.",
    ]


def test_fenced_code_block_stays_whole(analyzer: TextAnalyzer) -> None:
    code = "```python\ndef f(x):\n    return x. Y\n\n    z = 1. Next\n```"
    text = f"# 제목\n\n설명입니다. Intro text.\n{code}\n\nAfter the code. 끝."
    sentences = analyzer.split_sentences(text)
    assert code in sentences
    assert sentences == ["# 제목", "설명입니다.", "Intro text.", code, "After the code.", "끝."]


def test_code_paragraphs_are_not_split(analyzer: TextAnalyzer) -> None:
    text = "def g():\n    return os.path.join(a, b). strip()\n\nclass A:\n    x = 1"
    assert analyzer.split_sentences(text) == ["def g():\n    return os.path.join(a, b). strip()", "class A:\n    x = 1"]


def test_markdown_list_items_are_separate(analyzer: TextAnalyzer) -> None:
    text = "Steps:\n- open the file\n- read it\n1. 파일을 연다\n> quoted"
    assert analyzer.split_sentences(text) == ["Steps:", "- open the file", "- read it", "1. 파일을 연다", "> quoted"]


def test_spans_index_the_original_text(analyzer: TextAnalyzer) -> None:
    text = "😀 漢字 한글 문장. Second one here.\n\n  세 번째 문단이다."
    spans = analyzer.sentence_spans(text)
    assert [text[start:end] for start, end in spans] == ["😀 漢字 한글 문장.", "Second one here.", "세 번째 문단이다."]
    assert analyzer.split_sentences("") == [] and analyzer.split_sentences(" \n\n ") == []


def test_bm25_terms_are_fast(analyzer: TextAnalyzer) -> None:
    texts = ["파이썬에서 텍스트 파일을 읽는 방법은 open 함수를 with 문과 함께 쓰는 것이다. " * 4] * 50
    texts += ["The quick brown fox reads files in Python with open() and pathlib. " * 4] * 50
    analyzer.bm25_terms_batch(texts[:2])
    started = time.perf_counter()
    analyzer.bm25_terms_batch(texts)
    # ~25 KB of text; generous bound for a loaded 2-core machine (measured ~0.1 s).
    assert time.perf_counter() - started < 2.0


def test_corpus_inflection_pairs_share_a_term(analyzer: TextAnalyzer) -> None:
    from tests.support.corpus import QUESTIONS

    pairs = [inflection for *_, inflection in QUESTIONS if inflection]
    assert len(pairs) >= 3
    for document_form, question_form in pairs:
        assert set(analyzer.bm25_terms(document_form)) & set(analyzer.bm25_terms(question_form)), question_form
