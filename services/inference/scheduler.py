"""One generation at a time on a dedicated thread, a bounded wait queue, and cancellation."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from starlette.types import Receive

from services.common.errors import ServiceUnavailable, SuiteError
from services.inference.engine import Generation, ModelEngine, Sampling
from services.inference.metrics import InferenceMetrics

log = logging.getLogger(__name__)


class ClientGone(SuiteError):
    """The client disconnected; nobody reads this answer, it only shows in metrics and logs."""

    status = 499
    type = "invalid_request_error"
    code = "client_closed_request"


async def wait_for_disconnect(receive: Receive) -> None:
    """Return once the client has gone; the request body must already have been read."""
    while (await receive())["type"] != "http.disconnect":
        pass


def _pair(*futures: asyncio.Future[Any]) -> list[asyncio.Future[Any]]:
    return list(futures)


@dataclass
class Job:
    """A generation that owns the model until `done` resolves."""

    cancel: threading.Event
    done: asyncio.Future[Generation]
    pieces: asyncio.Queue[str | None] | None


class TextRelay:
    """Hands text from the model thread to the event loop, waking the loop at most once per interval.

    Each wake-up costs the model a slice of CPU (the loop competes with llama.cpp's threads), so fast
    generations send a few tokens per chunk; the first piece always goes out at once.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, interval: float) -> None:
        self.queue: asyncio.Queue[str | None] = asyncio.Queue()
        self._loop = loop
        self._interval = interval
        self._buffer: list[str] = []
        self._last = -interval

    def push(self, text: str) -> None:
        self._buffer.append(text)
        now = time.perf_counter()
        if now - self._last >= self._interval:
            self._flush(now)

    def close(self) -> None:
        self._flush(time.perf_counter())
        self._loop.call_soon_threadsafe(self.queue.put_nowait, None)

    def _flush(self, now: float) -> None:
        if self._buffer:
            text = "".join(self._buffer)
            self._buffer.clear()
            self._loop.call_soon_threadsafe(self.queue.put_nowait, text)
        self._last = now


class GenerationQueue:
    """Serialises access to the model; refuses work once `max_queue` requests are waiting."""

    def __init__(
        self, engine: ModelEngine, max_queue: int, metrics: InferenceMetrics, stream_interval: float = 0.0
    ) -> None:
        self.engine = engine
        self.max_queue = max_queue
        self.stream_interval = stream_interval
        self.metrics = metrics
        self._lock = asyncio.Lock()
        self._waiting = 0
        self._current: Job | None = None
        self._closed = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llama")

    @property
    def waiting(self) -> int:
        return self._waiting

    async def submit(self, prompt: list[int], sampling: Sampling, receive: Receive, stream: bool) -> Job:
        """Wait for the model (or the client leaving) and start generating on the model thread."""
        if self._closed:
            raise ServiceUnavailable("the service is shutting down", retry_after=5, code="shutting_down")
        if not self._lock.locked() and not self._waiting:
            await self._lock.acquire()  # free: returns at once, without a disconnect watcher
            return self._start(prompt, sampling, stream)
        if self._waiting >= self.max_queue:
            self.metrics.rejected.inc()
            raise ServiceUnavailable(
                f"the model is busy and {self._waiting} request(s) are already waiting (MAX_QUEUE={self.max_queue})",
                retry_after=2, code="queue_full",
            )
        gone = asyncio.ensure_future(wait_for_disconnect(receive))
        try:
            await self._wait_turn(gone)
        finally:
            gone.cancel()
        if self._closed:
            self._lock.release()
            raise ServiceUnavailable("the service is shutting down", retry_after=5, code="shutting_down")
        return self._start(prompt, sampling, stream)

    async def _wait_turn(self, gone: asyncio.Future[None]) -> None:
        self._waiting += 1
        self.metrics.queue_depth.set(self._waiting)
        turn: asyncio.Future[bool] = asyncio.ensure_future(self._lock.acquire())
        try:
            await asyncio.wait(_pair(turn, gone), return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            self._give_up(turn)
            raise
        finally:
            self._waiting -= 1
            self.metrics.queue_depth.set(self._waiting)
        if gone.done():
            self._give_up(turn)
            raise ClientGone("the client disconnected while queued")

    def _give_up(self, turn: asyncio.Future[bool]) -> None:
        """Hand back a turn that was granted, or withdraw one still pending."""
        if turn.done() and not turn.cancelled() and turn.exception() is None:
            self._lock.release()
        else:
            turn.cancel()

    def _start(self, prompt: list[int], sampling: Sampling, stream: bool) -> Job:
        loop = asyncio.get_running_loop()
        relay = TextRelay(loop, self.stream_interval) if stream else None
        cancel = threading.Event()

        def work() -> Generation:
            try:
                return self._run(prompt, sampling, cancel, relay.push if relay else None)
            finally:
                if relay:
                    relay.close()

        done = loop.run_in_executor(self._executor, work)
        job = Job(cancel, done, relay.queue if relay else None)
        self._current = job
        self.metrics.active.set(1)
        # The model stays locked until the thread has really stopped, whatever happened to the request.
        done.add_done_callback(lambda _: self._finish(job))
        return job

    def _finish(self, job: Job) -> None:
        if self._current is job:
            self._current = None
            self.metrics.active.set(0)
        self._lock.release()

    def _run(
        self, prompt: list[int], sampling: Sampling, cancel: threading.Event, emit: Callable[[str], None] | None
    ) -> Generation:
        result = self.engine.run(prompt, sampling, cancel, emit)
        m = self.metrics
        m.prompt_tokens.inc(result.prompt_tokens)
        m.completion_tokens.inc(result.completion_tokens)
        m.generation_seconds.observe(result.prompt_seconds + result.decode_seconds)
        if result.finish_reason == "cancelled":
            m.cancelled.inc()
            log.info("generation cancelled after %d tokens", result.completion_tokens)
        elif result.completion_tokens > 1:
            m.tokens_per_second.set(result.tokens_per_second())
        return result

    async def complete(self, job: Job, receive: Receive) -> Generation:
        """Wait for a non-streamed job; a client that leaves stops it."""
        gone = asyncio.ensure_future(wait_for_disconnect(receive))
        try:
            await asyncio.wait(_pair(job.done, gone), return_when=asyncio.FIRST_COMPLETED)
        finally:
            gone.cancel()
            if not job.done.done():
                job.cancel.set()
        if not job.done.done():
            raise ClientGone("the client disconnected during generation")
        return job.done.result()

    async def close(self, timeout: float = 10.0) -> None:
        """Refuse new work, stop the running generation and wait for the model thread to let go."""
        self._closed = True
        job = self._current
        if job is not None:
            job.cancel.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(job.done), timeout)
        self._executor.shutdown(wait=True)
