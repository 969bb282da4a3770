"""Slots: one KV sequence each, the generation running in it, and the choice of slot for a prompt."""

from __future__ import annotations

import codecs
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import llama_cpp
from llama_cpp._internals import LlamaModel, LlamaSampler

from services.inference.engine import Generation, Sampling, split_at_stop

# llama-cpp-python's own window for repeat and presence penalties (Llama.last_n_tokens_size).
PENALTY_LAST_N = 64


@dataclass
class Task:
    """A generation handed to the batch loop; `finish` is called once, on the loop's thread."""

    prompt: list[int]
    sampling: Sampling
    cancel: threading.Event
    emit: Callable[[str], None] | None
    finish: Callable[[Generation | BaseException], None]
    arrived: float = 0.0  # perf_counter() when the request arrived; 0: when the batch loop takes it


def make_sampler(sampling: Sampling) -> LlamaSampler:
    """The request's own sampler chain, built as `Llama.generate` builds it, so answers stay the same."""
    sampler = LlamaSampler()
    sampler.add_penalties(0, PENALTY_LAST_N, sampling.repeat_penalty, sampling.frequency_penalty,
                          sampling.presence_penalty)
    if sampling.temperature == 0:
        sampler.add_greedy()
        return sampler
    seed = sampling.seed if sampling.seed is not None else random.getrandbits(32)
    sampler.add_top_k(sampling.top_k)
    sampler.add_typical(1.0, 1)
    sampler.add_top_p(sampling.top_p, 1)
    sampler.add_min_p(sampling.min_p, 1)
    sampler.add_temp(sampling.temperature)
    sampler.add_dist(seed % 2**32)
    return sampler


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


class Slot:
    """One KV sequence: the tokens it holds (its prompt cache) and the generation using it, if any."""

    def __init__(self, seq_id: int, model: LlamaModel) -> None:
        self.seq_id = seq_id
        self._model = model
        self.cached: list[int] = []  # tokens whose KV the sequence holds, position i at index i
        self.last_used = 0.0
        self.task: Task | None = None
        self.pending: list[int] = []  # prompt tokens still to evaluate
        self.next_token: int | None = None  # sampled, not yet in the KV cache
        self.logits_at = -1  # this step's batch index whose logits belong to this slot
        self.started = 0.0
        self._sampler: LlamaSampler | None = None

    @property
    def busy(self) -> bool:
        return self.task is not None

    def reusable(self, prompt: Sequence[int]) -> int:
        """How many of `prompt`'s tokens this slot's cache already holds (the last one is always evaluated)."""
        return max(0, min(common_prefix(self.cached, prompt), len(prompt) - 1))

    def start(self, task: Task, reuse: int) -> None:
        """Take `task`, keeping the first `reuse` cached tokens; the caller has trimmed the KV to match."""
        self.task = task
        del self.cached[reuse:]
        self.pending = task.prompt[reuse:]
        self.next_token = None
        self._sampler = make_sampler(task.sampling)
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._parts: list[str] = []
        self._held = ""
        self._count = 0
        self._reused = reuse
        self.started = self._first = time.perf_counter()

    def take_prompt(self, room: int) -> list[int]:
        """The next chunk of the prompt, at most `room` tokens."""
        chunk, self.pending = self.pending[:room], self.pending[room:]
        return chunk

    def sample(self, ctx: llama_cpp.llama_context_p) -> None:
        assert self._sampler is not None
        self.next_token = llama_cpp.llama_sampler_sample(self._sampler.sampler, ctx, self.logits_at)

    def accept(self) -> Generation | None:
        """Take the sampled token: the finished generation when it ends here, else None."""
        token = self.next_token
        assert token is not None and self.task is not None
        if self._count == 0:
            self._first = time.perf_counter()
        if llama_cpp.llama_vocab_is_eog(self._model.vocab, token):
            return self.finish("stop")
        self._count += 1
        sampling = self.task.sampling
        text, self._held, stop_hit = split_at_stop(
            self._held + self._decoder.decode(self._model.detokenize([token])), sampling.stop)
        self._send(text)
        if stop_hit:
            return self.finish("stop", stopped=True)
        if self._count >= sampling.max_tokens:
            return self.finish("length")
        return None

    def finish(self, reason: str, stopped: bool = False) -> Generation:
        """The generation's result as it ends here; the caller then releases the slot."""
        task = self.task
        assert task is not None
        # Text after a stop sequence, and anything of a cancelled run, is never sent.
        if reason != "cancelled" and not stopped:
            self._send(self._held + self._decoder.decode(b"", final=True))
        now = time.perf_counter()
        first = self._first if self._count else now
        return Generation("".join(self._parts), reason, len(task.prompt), self._count, first - self.started,
                          now - first, self._reused)

    def release(self) -> None:
        """Forget the task; whatever reached the KV cache stays there as this slot's prompt cache."""
        self.task = None
        self.pending = []
        self.next_token = None
        self.logits_at = -1
        if self._sampler is not None:
            self._sampler.close()
            self._sampler = None
        self.last_used = time.monotonic()

    def _send(self, text: str) -> None:
        if text:
            self._parts.append(text)
            assert self.task is not None
            if self.task.emit:
                self.task.emit(text)


def pick_slot(slots: Sequence[Slot], prompt: Sequence[int]) -> tuple[Slot, int]:
    """The free slot for `prompt`, and how many of its cached tokens it reuses.

    A slot continues the prompt when the prompt extends its cache (a conversation's next turn: at most a
    quarter of the cache is lost, which allows for an answer re-tokenized a little differently) or when
    the whole prompt is already cached (a repeat); the longest such prefix wins. Otherwise the least
    recently used free slot is taken, empty ones first, so a shared system prompt alone never evicts a
    conversation that is likely to come back.
    """
    free = [slot for slot in slots if not slot.busy]
    best: tuple[int, Slot] | None = None
    for slot in free:
        reuse = slot.reusable(prompt)
        continues = reuse > 0 and ((len(slot.cached) - reuse) * 4 <= len(slot.cached) or reuse == len(prompt) - 1)
        if continues and (best is None or reuse > best[0]):
            best = (reuse, slot)
    if best is not None:
        return best[1], best[0]
    oldest = min(free, key=lambda slot: slot.last_used)
    return oldest, oldest.reusable(prompt)
