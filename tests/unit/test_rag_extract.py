"""Text extraction with real markitdown on files written by the test corpus, and refusals with reasons."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.rag.extract import UnreadableFile, extract_bytes, extract_text
from tests.support.corpus import write_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("corpus")
    return folder, write_corpus(folder)


@pytest.mark.parametrize(
    "name",
    ["python_files_ko.md", "kimchi_stew_ko.txt", "palace_ko.docx", "solar_system.pdf", "coffee.txt",
     "backup_policy.docx", "bus_fares_ko.docx", "git_tips.html", "rate_limiter.py"],
)
def test_every_corpus_document_round_trips(corpus: tuple[Path, dict], name: str) -> None:
    folder, written = corpus
    text = extract_text(folder / name)
    for passage in written["documents"][name]:
        # markdown may escape or re-wrap; compare whitespace-normalised text of each passage
        plain = " ".join(passage.replace("## ", "").split())
        assert plain in " ".join(text.split()), (name, plain)


def test_questions_point_at_text_in_their_document(corpus: tuple[Path, dict]) -> None:
    folder, written = corpus
    questions = written["questions"]
    assert 10 <= len(questions) <= 16 and {q["lang"] for q in questions} == {"ko", "en"}
    assert any(q["inflection"] for q in questions)
    texts = {name: " ".join(extract_text(folder / name).split()) for name in written["documents"]}
    for question in questions:
        text = texts[question["expected_document"]]
        assert question["passage"] in text
        others = [name for name in texts if name != question["expected_document"]]
        assert all(question["passage"] not in texts[name] for name in others)
        if question["inflection"]:
            in_document, in_question = question["inflection"]
            assert in_document in text and in_document not in question["question"]
            assert in_question in question["question"] and in_question not in text


def test_pdf_lines_wrapped_by_the_layout_are_joined(corpus: tuple[Path, dict]) -> None:
    text = extract_text(corpus[0] / "solar_system.pdf")
    assert "raged for centuries" in text


def test_html_is_converted_to_markdown() -> None:
    html = b"<html><body><h1>Title</h1><p>Hello <b>world</b></p><script>var x = 1;</script></body></html>"
    text = extract_bytes("page.html", html)
    assert text.startswith("# Title") and "Hello **world**" in text and "var x" not in text


def test_korean_legacy_encodings_are_decoded() -> None:
    korean = "파일을 읽는 방법"
    assert extract_bytes("notes.txt", korean.encode("cp949")) == korean
    assert extract_bytes("notes.md", korean.encode("euc-kr")) == korean
    assert extract_bytes("notes.txt", "\ufeff".encode() + korean.encode()) == korean
    assert extract_bytes("notes.txt", korean.encode("utf-16")) == korean


def test_source_code_and_extensionless_text() -> None:
    assert extract_bytes("main.go", b"package main\r\n\r\nfunc main() {}\r\n") == "package main\n\nfunc main() {}"
    assert extract_bytes("Dockerfile", b"FROM python:3.11\n") == "FROM python:3.11"
    assert extract_bytes("notes.unknownext", b"plain words") == "plain words"


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("empty.txt", b"", "empty"),
        ("blank.md", b"  \n\t\n", "empty"),
        ("image.png", b"\x89PNG\r\n\x1a\n" + bytes(range(256)), "PNG image"),
        ("image.txt", b"\x89PNG\r\n\x1a\n" + bytes(range(256)), "PNG image"),
        ("blob.bin", b"abc\x00def" * 10, "binary"),
        ("notes.txt", b"abc\x00def", "binary"),
        ("legacy.doc", b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(100), "legacy Office"),
        ("slides.pptx", b"PK\x03\x04" + bytes(100), "ZIP archive"),
        ("fake.pdf", b"this is not a pdf at all", "not a valid .pdf"),
        ("broken.pdf", b"%PDF-1.4\n garbage", "could not read .pdf"),
        ("broken.docx", b"PK\x03\x04 garbage", "could not read .docx"),
        ("latin.txt", bytes(range(0x80, 0x100)) * 4, "not valid UTF-8"),
        ("controls.txt", b"\x01\x02\x03\x04 text \x05\x06\x07", "control characters"),
    ],
)
def test_unreadable_files_say_why(name: str, data: bytes, reason: str) -> None:
    with pytest.raises(UnreadableFile) as caught:
        extract_bytes(name, data)
    assert reason in caught.value.reason


def test_size_limit_and_missing_files(tmp_path: Path) -> None:
    big = tmp_path / "big.txt"
    big.write_text("a" * 2000)
    with pytest.raises(UnreadableFile, match="over the limit of 1000 bytes"):
        extract_text(big, max_bytes=1000)
    assert extract_text(big, max_bytes=2000) == "a" * 2000
    with pytest.raises(UnreadableFile, match="cannot open"):
        extract_text(tmp_path / "missing.txt")
    with pytest.raises(UnreadableFile, match="not a regular file"):
        extract_text(tmp_path)
    empty = tmp_path / "empty.md"
    empty.write_bytes(b"")
    with pytest.raises(UnreadableFile, match="empty"):
        extract_text(empty)


def test_image_only_pdf_has_no_text(tmp_path: Path) -> None:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.rect(10, 10, 50, 50, style="F")
    with pytest.raises(UnreadableFile, match="no text"):
        extract_bytes("scan.pdf", bytes(pdf.output()))
