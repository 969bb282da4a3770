"""Deterministic bilingual filler text for the RAG benchmarks: varied English and Korean sentences and queries.

The words are drawn from topic vocabularies with a seeded RNG, so every run writes the same files; numbers and
code-like names keep the BM25 vocabulary wide, and Korean particles follow the final consonant as they should.
"""

from __future__ import annotations

import random
from pathlib import Path

EN_SUBJECTS = (
    "researcher operator engineer chef student librarian pilot nurse gardener auditor courier designer "
    "analyst farmer teacher technician merchant captain archivist baker"
).split()
EN_ADJECTIVES = (
    "careful tired senior junior patient curious busy quiet experienced local remote new"
).split()
EN_VERBS = (  # (third person, base form)
    ("inspects", "inspect"), ("installs", "install"), ("analyses", "analyse"), ("stores", "store"),
    ("deploys", "deploy"), ("measures", "measure"), ("repairs", "repair"), ("records", "record"),
    ("reviews", "review"), ("requests", "request"), ("prepares", "prepare"), ("sorts", "sort"),
    ("encrypts", "encrypt"), ("compresses", "compress"), ("translates", "translate"), ("ships", "ship"),
)
EN_OBJECTS = (
    "servers reports samples recipes tickets books invoices sensors containers backups manuscripts engines "
    "seedlings batteries antennas spreadsheets turbines lenses pipelines certificates maps vaccines"
).split()
EN_PLACES = (
    "warehouse laboratory station market library harbour greenhouse clinic datacenter bakery observatory "
    "workshop airport museum factory archive"
).split()
EN_TIMES = (
    "Every Monday", "Before sunrise", "After the audit", "During the storm", "Late at night", "On Friday",
    "Twice a week", "In early spring", "After lunch", "Once a month", "Before the release", "In winter",
)
EN_TAILS = (
    "to keep the schedule", "because the old ones failed", "with a checklist", "using batch {code}",
    "for customer {code}", "before the deadline", "under supervision", "at {num} degrees",
    "in groups of {num}", "without stopping", "for the quarterly review", "near gate {num}",
)

KO_SUBJECTS = (
    "연구팀 관리자 학생 요리사 기술자 운영팀 간호사 정원사 감사관 택배 기사 디자이너 분석가 농부 교사 "
    "상인 선장 사서 제빵사 조종사"
).split()
KO_OBJECTS = (
    "서버 보고서 표본 조리법 기차표 도서 목록 청구서 센서 컨테이너 백업 원고 엔진 모종 배터리 안테나 "
    "장부 터빈 렌즈 배관 인증서 지도 백신"
).split()
KO_ACTIONS = "점검 설치 분석 저장 배포 측정 수리 기록 검토 요청 준비 정리 암호화 압축 번역 발송".split()
KO_ENDINGS = ("한다", "했다", "합니다", "했습니다", "하는 중이다", "할 예정이다", "하곤 했다", "해야 한다")
KO_PLACES = "창고 연구소 기차역 시장 도서관 항구 온실 병원 데이터센터 빵집 천문대 작업장 공항 박물관 공장".split()
KO_TIMES = ("매주 월요일", "해 뜨기 전에", "감사가 끝난 뒤", "폭풍이 치는 동안", "밤늦게", "금요일에", "일주일에 두 번",
            "이른 봄에", "점심 식사 후", "한 달에 한 번", "출시 직전에", "겨울에")
KO_ADVERBS = ("꼼꼼하게", "빠르게", "천천히", "조심스럽게", "다시", "함께", "몰래", "정확하게")


def has_final_consonant(word: str) -> bool:
    """Whether the last Hangul syllable ends in a consonant (받침), which picks 을/를, 이/가, 은/는."""
    last = word[-1]
    return "가" <= last <= "힣" and (ord(last) - 0xAC00) % 28 != 0


def particle(word: str, with_final: str, without_final: str) -> str:
    return word + (with_final if has_final_consonant(word) else without_final)


class TextGenerator:
    """Seeded sentence, paragraph and query generator; the same seed gives the same text."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)

    def _fill(self, template: str) -> str:
        return template.format(code=f"{self.rng.choice('abcdefghkmnpqrstuvwxyz')}{self.rng.randint(100, 9999)}",
                               num=self.rng.randint(2, 480))

    def english(self) -> str:
        r = self.rng
        verb = r.choice(EN_VERBS)[0]
        adjective = r.choice(EN_ADJECTIVES)
        article = "An" if adjective[0] in "aeiou" else "A"
        shapes = (
            f"{r.choice(EN_TIMES)}, the {adjective} {r.choice(EN_SUBJECTS)} {verb} {r.randint(2, 90)} "
            f"{r.choice(EN_OBJECTS)} at the {r.choice(EN_PLACES)}",
            f"The {r.choice(EN_SUBJECTS)} {verb} the {r.choice(EN_OBJECTS)} {self._fill(r.choice(EN_TAILS))}",
            f"{article} {adjective} {r.choice(EN_SUBJECTS)} in the {r.choice(EN_PLACES)} {verb} "
            f"{r.choice(EN_OBJECTS)} and {r.choice(EN_VERBS)[0]} {r.choice(EN_OBJECTS)}",
        )
        return r.choice(shapes) + "."

    def korean(self) -> str:
        r = self.rng
        subject, obj, action = r.choice(KO_SUBJECTS), r.choice(KO_OBJECTS), r.choice(KO_ACTIONS)
        ending = r.choice(KO_ENDINGS)
        shapes = (
            f"{r.choice(KO_TIMES)} {r.choice(KO_PLACES)}에서 {particle(subject, '이', '가')} "
            f"{particle(obj, '을', '를')} {action}{ending}",
            f"{particle(subject, '은', '는')} {r.randint(2, 90)}개의 {particle(obj, '을', '를')} "
            f"{r.choice(KO_ADVERBS)} {action}{ending}",
            f"{r.choice(KO_PLACES)}의 {particle(subject, '은', '는')} {r.choice(KO_TIMES)} "
            f"{particle(obj, '을', '를')} {action}{ending}",
        )
        return r.choice(shapes) + "."

    def sentence(self, korean_share: float) -> str:
        return self.korean() if self.rng.random() < korean_share else self.english()

    def document(self, title: str, sentences: int, korean_share: float) -> str:
        """A markdown document of paragraphs of 3 to 7 sentences."""
        parts = [f"# {title}", ""]
        left = sentences
        while left > 0:
            size = min(left, self.rng.randint(3, 7))
            parts += [" ".join(self.sentence(korean_share) for _ in range(size)), ""]
            left -= size
        return "\n".join(parts)

    def query(self, korean_share: float) -> str:
        r = self.rng
        if r.random() < korean_share:
            obj, action = r.choice(KO_OBJECTS), r.choice(KO_ACTIONS)
            return r.choice((
                f"{r.choice(KO_PLACES)}에서 {particle(obj, '을', '를')} {action}하는 사람은 누구인가요?",
                f"{particle(r.choice(KO_SUBJECTS), '은', '는')} 언제 {particle(obj, '을', '를')} {action}하나요?",
                f"{obj} {action} 방법",
            ))
        verb = r.choice(EN_VERBS)[1]
        return r.choice((
            f"Which {r.choice(EN_SUBJECTS)} {r.choice(EN_VERBS)[0]} {r.choice(EN_OBJECTS)} at the "
            f"{r.choice(EN_PLACES)}?",
            f"When does the {r.choice(EN_SUBJECTS)} {verb} the {r.choice(EN_OBJECTS)}?",
            f"how to {verb} {r.choice(EN_OBJECTS)} in a {r.choice(EN_PLACES)}",
        ))


def write_documents(folder: Path, count: int, sentences: int, seed: int, korean_share: float = 0.25) -> list[Path]:
    """`count` markdown files of `sentences` sentences each; every fourth file is mostly Korean."""
    folder.mkdir(parents=True, exist_ok=True)
    generator = TextGenerator(seed)
    paths = []
    for i in range(count):
        share = 0.8 if i % 4 == 3 else korean_share
        path = folder / f"doc_{i:03d}.md"
        path.write_text(generator.document(f"Field notes {i} / 현장 기록 {i}", sentences, share) + "\n",
                        encoding="utf-8")
        paths.append(path)
    return paths
