"""A small bilingual test corpus (md, txt, pdf, docx with a Korean table, html, code) with questions."""

from __future__ import annotations

import datetime as dt
import io
import zipfile
from pathlib import Path

FIXED_DATE = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

# Each document is a title and its passages; every question below is answered by exactly one passage.
PYTHON_FILES_KO = (
    "파이썬 파일 입출력 안내",
    [
        "## 텍스트 파일을 읽는 방법\n파이썬에서 텍스트 파일을 읽는 방법은 open 함수를 with 문과 함께 쓰는 것이다. "
        "한글이 들어 있는 파일은 인코딩(encoding) 인자에 utf-8을 지정해야 글자가 깨지지 않는다. "
        "with 블록이 끝나면 파일은 자동으로 닫힌다.",
        "## 파일에 내용 덧붙이기\n기존 내용을 지우지 않고 파일 끝에 새 줄을 덧붙이는 경우에는 모드 'a'를 준다. "
        "모드 'w'는 파일을 새로 만들면서 예전 내용을 모두 지운다.",
        "## 디렉터리 순회\npathlib 모듈의 Path.rglob 메서드는 하위 폴더까지 돌면서 패턴에 맞는 파일 경로를 차례로 "
        "돌려준다.",
    ],
)
KIMCHI_STEW_KO = (
    "김치찌개 끓이는 법",
    [
        "잘 익은 김치와 돼지고기를 냄비에 넣고 참기름에 5분 정도 볶는다. 그다음 물을 붓고 센 불에서 끓이다가 "
        "중간 불로 줄여 20분 동안 더 끓인다. 마지막에 두부와 대파를 넣는다.",
        "남은 찌개는 완전히 식힌 뒤 뚜껑을 덮어 냉장고에 보관하고 이틀 안에 먹는 것이 좋다. 다시 데울 때는 한 번 "
        "팔팔 끓인다.",
    ],
)
PALACE_KO = (
    "경복궁 관람 안내",
    [
        "경복궁은 매주 화요일에 쉰다. 관람 시간은 오전 9시부터 오후 6시까지이며, 한복을 입은 방문객은 무료로 "
        "들어갈 수 있다.",
        "광화문 앞에서는 하루에 두 번 수문장 교대식이 열린다. 오전 10시와 오후 2시에 시작하며 약 20분 동안 "
        "이어진다.",
        "지하철 3호선 경복궁역 5번 출구로 나오면 바로 궁궐 입구에 닿는다.",
    ],
)
SOLAR_SYSTEM_EN = (
    "Notes on the Solar System",
    [
        "Jupiter is the largest planet in the solar system. Its Great Red Spot is a giant storm that has raged for "
        "centuries and is wider than the Earth.",
        "Mars is home to Olympus Mons, the tallest volcano known in the solar system, about three times the height "
        "of Mount Everest.",
        "Saturn's rings are made mostly of ice particles, with smaller amounts of rocky debris and dust.",
    ],
)
COFFEE_EN = (
    "Brewing Coffee at Home",
    [
        "Steep coarse ground coffee in a French press for four minutes before pressing the plunger down slowly.",
        "The ideal brewing water temperature is between 90 and 96 degrees Celsius; boiling water scorches the "
        "grounds and makes the cup bitter.",
        "Store whole beans in an airtight container away from light and heat, and use them within two weeks of "
        "roasting.",
    ],
)
BACKUP_EN = (
    "Backup Policy",
    [
        "Database backups run every night at 02:00 and each backup is retained for 30 days before it is deleted.",
        "A restore drill is performed on the first Monday of every month to prove that the backups can be "
        "recovered.",
        "Backup archives are encrypted with AES-256 before they leave the server.",
    ],
)
BUS_FARES_KO = (
    "서울 시내버스 요금 안내",
    "교통카드로 타면 현금보다 싸고, 30분 안에 갈아타면 환승 할인을 받는다.",
    "연령별 기본요금",
    [("구분", "교통카드", "현금"), ("어른", "1,500원", "1,600원"), ("청소년", "900원", "1,000원"),
     ("어린이", "550원", "550원")],
)
GIT_TIPS_MIXED = (
    "Git tips / 깃 사용 팁",
    [
        "Use git stash to put uncommitted changes aside temporarily, so that you can switch branches with a clean "
        "working tree.",
        "git rebase -i 명령은 여러 커밋을 하나로 합칠 때 쓴다. 편집기에서 squash로 표시한 커밋이 앞 커밋에 합쳐진다.",
    ],
)
RATE_LIMITER_PY = '''"""Token bucket rate limiter for the upload API."""

import time


class TokenBucket:
    """Allows bursts of up to `capacity` requests at once."""

    def __init__(self, capacity: int, rate: float) -> None:
        self.capacity = capacity
        self.rate = rate
        self.tokens = float(capacity)
        self.updated = time.monotonic()

    def allow(self) -> bool:
        """Take one token if one is left; the bucket refills in proportion to the monotonic time elapsed."""
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False
'''

QUESTIONS = [
    ("한글이 들어 있는 파일을 읽으려면 인코딩을 어떻게 지정해야 하나요?", "python_files_ko.md", "ko",
     "utf-8을 지정해야", ("읽는", "읽으려면")),
    ("기존 내용을 지우지 않고 파일 끝에 덧붙이려면 어떤 모드를 써야 하나요?", "python_files_ko.md", "ko",
     "모드 'a'를 준다", ("덧붙이는", "덧붙이려면")),
    ("돼지고기와 김치는 참기름에 얼마나 볶아야 하나요?", "kimchi_stew_ko.txt", "ko", "5분 정도 볶는다",
     ("볶는다", "볶아야")),
    ("경복궁이 쉬는 요일은 언제인가요?", "palace_ko.docx", "ko", "화요일에 쉰다", ("쉰다", "쉬는")),
    ("수문장 교대식은 하루에 몇 번 열리나요?", "palace_ko.docx", "ko", "수문장 교대식이 열린다",
     ("열린다", "열리나요")),
    ("여러 커밋을 하나로 합치려면 어떤 명령을 쓰나요?", "git_tips.html", "ko", "하나로 합칠 때", ("합칠", "합치려면")),
    ("Which planet has the tallest volcano?", "solar_system.pdf", "en", "Olympus Mons", None),
    ("What are Saturn's rings made of?", "solar_system.pdf", "en", "ice particles", None),
    ("How long should coffee steep in a French press?", "coffee.txt", "en", "four minutes", None),
    ("How should whole coffee beans be stored?", "coffee.txt", "en", "airtight container", None),
    ("청소년과 어린이는 버스 요금을 얼마 내나요?", "bus_fares_ko.docx", "ko", "| 청소년 | 900원 | 1,000원 |",
     None),
    ("How many days is each database backup retained?", "backup_policy.docx", "en", "retained for 30 days", None),
    ("When is the restore drill performed?", "backup_policy.docx", "en", "first Monday", None),
    ("How do I set uncommitted changes aside before switching branches?", "git_tips.html", "en", "git stash", None),
    ("How does the token bucket refill its tokens?", "rate_limiter.py", "en", "refills in proportion", None),
]


def write_corpus(folder: Path) -> dict:
    """Write the corpus into `folder`; return {"documents": {name: [passages]}, "questions": [...]}.

    Each question is {question, expected_document, lang, passage (text from the answering passage),
    inflection ((document form, question form) for Korean questions that use another inflection, else None)}.
    """
    folder.mkdir(parents=True, exist_ok=True)
    documents = {
        "python_files_ko.md": _write_markdown(folder / "python_files_ko.md", *PYTHON_FILES_KO),
        "kimchi_stew_ko.txt": _write_text(folder / "kimchi_stew_ko.txt", *KIMCHI_STEW_KO),
        "palace_ko.docx": _write_docx(folder / "palace_ko.docx", *PALACE_KO),
        "solar_system.pdf": _write_pdf(folder / "solar_system.pdf", *SOLAR_SYSTEM_EN),
        "coffee.txt": _write_text(folder / "coffee.txt", *COFFEE_EN),
        "backup_policy.docx": _write_docx(folder / "backup_policy.docx", *BACKUP_EN),
        "bus_fares_ko.docx": _write_docx_table(folder / "bus_fares_ko.docx", *BUS_FARES_KO),
        "git_tips.html": _write_html(folder / "git_tips.html", *GIT_TIPS_MIXED),
        "rate_limiter.py": _write_code(folder / "rate_limiter.py", RATE_LIMITER_PY),
    }
    questions = [
        {"question": text, "expected_document": document, "lang": lang, "passage": passage, "inflection": inflection}
        for text, document, lang, passage, inflection in QUESTIONS
    ]
    return {"documents": documents, "questions": questions}


def _write_markdown(path: Path, title: str, passages: list[str]) -> list[str]:
    path.write_text(f"# {title}\n\n" + "\n\n".join(passages) + "\n", encoding="utf-8")
    return passages


def _write_text(path: Path, title: str, passages: list[str]) -> list[str]:
    path.write_text(f"{title}\n\n" + "\n\n".join(passages) + "\n", encoding="utf-8")
    return passages


def _write_code(path: Path, source: str) -> list[str]:
    path.write_text(source, encoding="utf-8")
    return [source]


def _write_html(path: Path, title: str, passages: list[str]) -> list[str]:
    body = "\n".join(f"<p>{passage}</p>" for passage in passages)
    path.write_text(
        f'<!DOCTYPE html>\n<html lang="ko"><head><meta charset="utf-8"><title>{title}</title></head>\n'
        f"<body><h1>{title}</h1>\n{body}\n</body></html>\n",
        encoding="utf-8",
    )
    return passages


def _write_docx(path: Path, title: str, passages: list[str]) -> list[str]:
    document = _new_docx()
    document.add_heading(title, level=1)
    for passage in passages:
        document.add_paragraph(passage)
    _save_docx(document, path)
    return passages


def _write_docx_table(path: Path, title: str, intro: str, heading: str, rows: list[tuple[str, ...]]) -> list[str]:
    """A Word file with headings, a paragraph and a table; returns the paragraph and each row as markdown."""
    document = _new_docx()
    document.add_heading(title, level=1)
    document.add_paragraph(intro)
    document.add_heading(heading, level=2)
    table = document.add_table(rows=0, cols=len(rows[0]))
    for row in rows:
        for cell, value in zip(table.add_row().cells, row, strict=True):
            cell.text = value
    _save_docx(document, path)
    return [intro, f"## {heading}", *("| " + " | ".join(row) + " |" for row in rows)]


def _new_docx():
    import docx

    document = docx.Document()
    document.core_properties.created = FIXED_DATE
    document.core_properties.modified = FIXED_DATE
    return document


def _save_docx(document, path: Path) -> None:
    buffer = io.BytesIO()
    document.save(buffer)
    _write_zip_with_fixed_times(path, buffer.getvalue())


def _write_zip_with_fixed_times(path: Path, data: bytes) -> None:
    """Rewrite a zip with fixed member times, so the same corpus gives the same bytes on every run."""
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as target:
        for member in source.infolist():
            info = zipfile.ZipInfo(member.filename, date_time=(2026, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            target.writestr(info, source.read(member))


def _write_pdf(path: Path, title: str, passages: list[str]) -> list[str]:
    # The core Helvetica font has no Hangul and no Korean TTF ships here, so the PDF is English only.
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_creation_date(FIXED_DATE)
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 16)
    pdf.multi_cell(0, 10, title, align="L")
    pdf.set_font("Helvetica", size=11)
    for passage in passages:
        pdf.ln(4)
        pdf.multi_cell(0, 6, passage, align="L")
    pdf.output(str(path))
    return passages
