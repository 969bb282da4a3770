"""The asyncio side of generation: N_PARALLEL slots, a bounded wait queue, streaming and cancellation."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from starlette.types import Receive

from services.common.errors import ServiceUnavailable, SuiteError
from services.inference.batch import BatchLoop
from services.inference.engine import Generation, ModelEngine, Sampling
from services.inference.metrics import InferenceMetrics
from services.inference.slots import Task

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


@dataclass(eq=False)
class Job:
    """A generation that holds a slot until `done` resolves."""

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
    """Hands requests to the batch loop, one per free slot; refuses work once `max_queue` requests wait, and a
    request that has waited `max_wait` seconds for a slot (0: no limit)."""

    def __init__(
        self, engine: ModelEngine, max_queue: int, metrics: InferenceMetrics, stream_interval: float = 0.0,
        max_wait: float = 0.0,
    ) -> None:
        self.engine = engine
        self.max_queue = max_queue
        self.max_wait = max_wait
        self.stream_interval = stream_interval
        self.metrics = metrics
        self._slots = asyncio.Semaphore(engine.n_parallel)
        self._waiting = 0
        self._running: set[Job] = set()
        self._closed = False
        self._batches = BatchLoop(engine, metrics)
        metrics.waiting_limit.set(max_queue)

    @property
    def waiting(self) -> int:
        return self._waiting

    @property
    def running(self) -> int:
        return len(self._running)

    @property
    def last_tokens_per_second(self) -> float | None:
        """Decode speed of the last generation that finished with more than one token (None before one)."""
        return self._batches.last_tokens_per_second

    async def submit(self, prompt: list[int], sampling: Sampling, receive: Receive, stream: bool,
                     arrived: float | None = None) -> Job:
        """Wait for a free slot (or the client leaving) and start generating in it.

        `arrived` (perf_counter) is when the request came in; queue wait and time to first token count from it.
        """
        arrived = time.perf_counter() if arrived is None else arrived
        if self._closed:
            raise ServiceUnavailable("the service is shutting down", retry_after=5, code="shutting_down")
        if not self._slots.locked() and not self._waiting:
            await self._slots.acquire()  # free: returns at once, without a disconnect watcher
            return self._start(prompt, sampling, stream, arrived)
        if self._waiting >= self.max_queue:
            self.metrics.rejected.inc()
            raise ServiceUnavailable(
                f"every slot is busy and {self._waiting} request(s) are already waiting "
                f"(MAX_QUEUE={self.max_queue})",
                retry_after=2, code="queue_full",
            )
        gone = asyncio.ensure_future(wait_for_disconnect(receive))
        try:
            await self._wait_turn(gone)
        finally:
            gone.cancel()
        if self._closed:
            self._slots.release()
            raise ServiceUnavailable("the service is shutting down", retry_after=5, code="shutting_down")
        return self._start(prompt, sampling, stream, arrived)

    async def _wait_turn(self, gone: asyncio.Future[None]) -> None:
        self._waiting += 1
        self.metrics.waiting.set(self._waiting)
        turn: asyncio.Future[bool] = asyncio.ensure_future(self._slots.acquire())
        try:
            await asyncio.wait(_pair(turn, gone), timeout=self.max_wait or None,
                               return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            self._give_up(turn)
            raise
        finally:
            self._waiting -= 1
            self.metrics.waiting.set(self._waiting)
        if gone.done():
            self._give_up(turn)
            raise ClientGone("the client disconnected while queued")
        if not turn.done():
            self._give_up(turn)
            self.metrics.rejected.inc()
            raise ServiceUnavailable(
                f"no slot came free within {self.max_wait:g} s (MAX_QUEUE_WAIT); every slot is still busy",
                retry_after=max(1, round(self.max_wait / 10)), code="queue_timeout",
            )

    def _give_up(self, turn: asyncio.Future[bool]) -> None:
        """Hand back a slot that was granted, or withdraw a request still pending."""
        if turn.done() and not turn.cancelled() and turn.exception() is None:
            self._slots.release()
        else:
            turn.cancel()

    def _start(self, prompt: list[int], sampling: Sampling, stream: bool, arrived: float) -> Job:
        loop = asyncio.get_running_loop()
        relay = TextRelay(loop, self.stream_interval) if stream else None
        done: asyncio.Future[Generation] = loop.create_future()
        job = Job(threading.Event(), done, relay.queue if relay else None)

        def settle(result: Generation | BaseException) -> None:
            if not done.done():
                if isinstance(result, BaseException):
                    done.set_exception(result)
                else:
                    done.set_result(result)

        def finish(result: Generation | BaseException) -> None:  # on the batch thread
            try:
                if relay:
                    relay.close()
                loop.call_soon_threadsafe(settle, result)
            except RuntimeError:  # the event loop has closed: nobody is left to tell
                log.warning("a generation finished after its event loop closed")

        self._running.add(job)
        # The slot stays taken until the batch loop has let go of it, whatever happened to the request.
        done.add_done_callback(lambda _: self._finish(job))
        self._batches.submit(Task(prompt, sampling, job.cancel, relay.push if relay else None, finish,
                                  arrived))
        return job

    def _finish(self, job: Job) -> None:
        self._running.discard(job)
        self._slots.release()

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
        """Refuse new work, stop the running generations and wait for the batch thread to let go."""
        self._closed = True
        running = list(self._running)
        for job in running:
            job.cancel.set()
        if running:
            await asyncio.wait([asyncio.shield(job.done) for job in running], timeout=timeout)
        await asyncio.to_thread(self._batches.close)
