"""Prompts for the serving benchmark: story requests of about 96 tokens, and ~800-token conversations."""

from __future__ import annotations

import random
from dataclasses import dataclass

TOPICS = ("a lighthouse keeper", "a robot gardener", "a lost violin", "a desert caravan", "a clockmaker's apprentice",
          "a whale that sings", "a mountain library", "a night train")

STORY = ("Write a long and detailed story about {topic}. Give the main character a name, a home and a reason to "
         "travel. Describe the weather, the smells and the sounds of every place they visit, the people they meet "
         "on the way and what each of them wants. Use plain words and complete sentences, and do not stop before "
         "the journey has ended.")

NOUNS = ("river", "garden", "engine", "market", "letter", "bridge", "window", "forest", "harbour", "village", "ladder",
         "candle", "meadow", "tunnel", "kitchen", "orchard", "station", "compass", "blanket", "workshop")
VERBS = ("carried", "painted", "repaired", "watched", "followed", "measured", "opened", "visited", "crossed", "found")
ADJECTIVES = ("quiet", "narrow", "golden", "heavy", "ancient", "bright", "crooked", "gentle", "hidden", "wooden")


def story_prompt(i: int) -> str:
    return STORY.format(topic=TOPICS[i % len(TOPICS)])


def sentences(rng: random.Random, count: int) -> str:
    return " ".join(
        f"The {rng.choice(ADJECTIVES)} {rng.choice(NOUNS)} {rng.choice(VERBS)} the {rng.choice(ADJECTIVES)} "
        f"{rng.choice(NOUNS)} near the {rng.choice(NOUNS)}." for _ in range(count))


@dataclass(frozen=True)
class Conversation:
    """A conversation with about 800 tokens of history: a document, a summary of it, and a question."""

    tag: str
    document: str
    summary: str

    def _history(self, session: str) -> list[dict]:
        return [
            {"role": "system", "content": f"Session {session}. You are a careful assistant who answers briefly."},
            {"role": "user", "content": f"Here are my notes:\n{self.document}\nPlease read them."},
            {"role": "assistant", "content": self.summary},
            {"role": "user", "content": "Which places do the notes mention most often?"},
        ]

    def first_turn(self) -> list[dict]:
        return self._history(f"{self.tag}w")

    def next_turn(self, answer: str, fresh: bool = False) -> list[dict]:
        """The next turn; `fresh` gives the same turn in a session no cache has seen (same length)."""
        return [*self._history(f"{self.tag}{'c' if fresh else 'w'}"), {"role": "assistant", "content": answer},
                {"role": "user", "content": "Thank you. Now name one object from the notes."}]


def conversation(index: int, tag: str) -> Conversation:
    rng = random.Random(f"{tag}/{index}")
    return Conversation(f"{tag.replace('-', '')}{index}", sentences(rng, 56), "I have read them. " + sentences(rng, 8))
