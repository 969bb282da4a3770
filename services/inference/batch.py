"""Continuous batching: the one thread that runs the model, decoding every busy slot in each step."""

from __future__ import annotations

import logging
import threading
from collections import deque

import llama_cpp

from services.inference.engine import Generation, ModelEngine
from services.inference.metrics import InferenceMetrics
from services.inference.slots import Slot, Task, pick_slot

log = logging.getLogger(__name__)


class DecodeError(RuntimeError):
    """llama_decode refused a batch (no room in the KV cache, or an internal failure)."""


def cancelled_before_start(task: Task) -> Generation:
    return Generation("", "cancelled", len(task.prompt), 0, 0.0, 0.0)


class BatchLoop:
    """Admits tasks into free slots (longest cached prefix first) and decodes all busy slots together.

    Each step carries one token for every generating slot plus as much of waiting prompts as fits in
    N_BATCH, so a new request joins at the next step and a long prompt never stalls the others for more
    than one step. Only this thread touches the llama.cpp context.
    """

    def __init__(self, engine: ModelEngine, metrics: InferenceMetrics) -> None:
        self.engine = engine
        self.metrics = metrics
        self.slots = [Slot(seq_id, engine.llm) for seq_id in range(engine.n_parallel)]
        self.last_tokens_per_second: float | None = None  # decode speed of the last finished generation
        self._ctx = engine.context.ctx
        self._memory = engine.context.memory
        self._capacity = engine.n_batch
        self._batch = llama_cpp.llama_batch_init(self._capacity, 0, 1)
        self._incoming: deque[Task] = deque()
        self._wake = threading.Condition()
        self._stopping = False
        metrics.slots_total.set(len(self.slots))
        self._thread = threading.Thread(target=self._run, name="llama-batch", daemon=True)
        self._thread.start()

    def submit(self, task: Task) -> None:
        """Queue `task` for the next step; the caller guarantees a free slot (one task per slot)."""
        with self._wake:
            if self._stopping:
                raise RuntimeError("the batch loop has stopped")
            self._incoming.append(task)
            self._wake.notify()

    def close(self) -> None:
        """Stop after the current step; running and queued tasks finish as cancelled."""
        with self._wake:
            self._stopping = True
            self._wake.notify()
        self._thread.join()
        llama_cpp.llama_batch_free(self._batch)

    def _run(self) -> None:
        while True:
            with self._wake:
                while not (self._stopping or self._incoming or any(slot.busy for slot in self.slots)):
                    self._wake.wait()
                if self._stopping:
                    break
                # At most one task per free slot (the asyncio side submits only when one is free).
                free = sum(1 for slot in self.slots if not slot.busy)
                incoming = [self._incoming.popleft() for _ in range(min(free, len(self._incoming)))]
            try:
                for task in incoming:
                    self._admit(task)
                self._step()
            except Exception as exc:  # a failed step must not leave its clients waiting forever
                log.exception("batch step failed")
                self._fail_all(exc)
        for slot in self.slots:
            if slot.busy:
                self._complete(slot, slot.finish("cancelled"))
        for task in self._incoming:
            task.finish(cancelled_before_start(task))
        self._update_gauges()

    def _admit(self, task: Task) -> None:
        if task.cancel.is_set():
            task.finish(cancelled_before_start(task))
            return
        slot, reuse = pick_slot(self.slots, task.prompt)
        # Positions past the shared prefix are dropped; a model whose cache cannot be cut (recurrent) starts over.
        if not llama_cpp.llama_memory_seq_rm(self._memory, slot.seq_id, reuse, -1):
            llama_cpp.llama_memory_seq_rm(self._memory, slot.seq_id, -1, -1)
            reuse = 0
        slot.start(task, reuse)
        m = self.metrics
        m.queue_wait.observe(slot.started - (task.arrived or slot.started))
        m.cached_prompt_tokens.inc(reuse)
        if reuse * 2 >= len(task.prompt):
            m.prompt_cache_hits.inc()
        self._update_gauges()

    def _step(self) -> None:
        for slot in self.slots:
            if slot.busy and slot.task is not None and slot.task.cancel.is_set():
                self._complete(slot, slot.finish("cancelled"))
        in_batch = self._fill()
        if not in_batch:
            return
        code = llama_cpp.llama_decode(self._ctx, self._batch)
        if code != 0:
            for slot in in_batch:
                self._forget(slot)
                self._complete(slot, DecodeError(f"llama_decode returned {code}"))
            return
        for slot in in_batch:
            if slot.logits_at < 0:
                continue  # a prompt chunk that is not the last one
            slot.sample(self._ctx)
            result = slot.accept()
            if result is not None:
                self._complete(slot, result)

    def _fill(self) -> list[Slot]:
        """Put this step's tokens into the batch: generating slots first, then prompt chunks, oldest first."""
        batch = self._batch
        n = 0
        used: list[Slot] = []

        def add(slot: Slot, token: int, logits: bool) -> None:
            nonlocal n
            batch.token[n] = token
            batch.pos[n] = len(slot.cached)
            batch.n_seq_id[n] = 1
            batch.seq_id[n][0] = slot.seq_id
            batch.logits[n] = logits
            slot.cached.append(token)
            n += 1

        for slot in self.slots:
            if slot.busy and slot.next_token is not None:
                slot.logits_at = n
                add(slot, slot.next_token, True)
                used.append(slot)
        prefilling = sorted((s for s in self.slots if s.busy and s.pending), key=lambda s: s.started)
        for slot in prefilling:
            room = self._capacity - n
            if room <= 0:
                break
            chunk = slot.take_prompt(room)
            for token in chunk[:-1]:
                add(slot, token, False)
            last = not slot.pending
            slot.logits_at = n if last else -1
            add(slot, chunk[-1], last)
            used.append(slot)
        batch.n_tokens = n
        return used

    def _forget(self, slot: Slot) -> None:
        """Drop a slot's whole cache (after a failed step its contents are unknown)."""
        llama_cpp.llama_memory_seq_rm(self._memory, slot.seq_id, -1, -1)
        slot.cached.clear()

    def _fail_all(self, exc: Exception) -> None:
        for slot in self.slots:
            if slot.busy:
                self._forget(slot)
                self._complete(slot, exc)

    def _complete(self, slot: Slot, result: Generation | BaseException) -> None:
        task = slot.task
        assert task is not None
        slot.release()
        if isinstance(result, Generation):
            self._record(result, slot.started - (task.arrived or slot.started))
        self._update_gauges()
        task.finish(result)

    def _record(self, result: Generation, queued: float) -> None:
        """Count a finished generation; `queued` is the time it waited for its slot."""
        m = self.metrics
        m.prompt_tokens.inc(result.prompt_tokens)
        m.generation_tokens.inc(result.completion_tokens)
        m.request_duration.observe(queued + result.prompt_seconds + result.decode_seconds)
        m.context_usage.observe((result.prompt_tokens + result.completion_tokens) / self.engine.n_ctx)
        cancelled = result.finish_reason == "cancelled"
        if cancelled:
            m.cancelled.inc()
            log.info("generation cancelled after %d tokens", result.completion_tokens)
        if result.completion_tokens or not cancelled:  # a first token was sampled (an end of text counts)
            m.time_to_first_token.observe(queued + result.prompt_seconds)
        if result.completion_tokens > 1 and result.decode_seconds > 0:
            m.time_per_output_token.observe(result.decode_seconds / (result.completion_tokens - 1))
            self.last_tokens_per_second = (result.completion_tokens - 1) / result.decode_seconds

    def _update_gauges(self) -> None:
        busy = [slot for slot in self.slots if slot.busy]
        self.metrics.running.set(len(busy))
        self.metrics.slots_prefilling.set(sum(1 for slot in busy if slot.pending))
