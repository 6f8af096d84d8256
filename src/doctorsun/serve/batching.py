"""Dynamic batching: requests that arrive together are answered by one ``Engine.generate`` call.

A worker thread owns the model. It waits for a request, keeps collecting for ``wait_ms`` (or until
``max_batch_size``), groups what it has by decoding settings, and runs one batched generation per group;
requests that arrive meanwhile wait for the next round. Each job streams its text deltas back to the
asyncio loop that submitted it, so the API and the web UI (and streaming and non-streaming requests)
share batches.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from doctorsun.model.generate import Engine, GenerationSettings, isolate_failures
from doctorsun.serve.streaming import DeltaStreamer, GenerationCancelled, streamer_for

log = logging.getLogger(__name__)


@dataclass
class Result:
    """The answer to one job."""

    text: str
    """The whole answer (what the streamed deltas join up to)."""
    prompt_tokens: int
    """Prompt length in tokens, visual tokens included."""
    completion_tokens: int
    """Generated tokens, the end-of-turn token excluded."""
    finish_reason: str
    """``stop`` or ``length``."""


@dataclass
class Job:
    """One conversation to answer; its events go to ``events`` on the submitting loop."""

    messages: list[dict[str, Any]]
    images: list[Any]
    settings: GenerationSettings
    loop: asyncio.AbstractEventLoop
    events: asyncio.Queue = field(default_factory=asyncio.Queue)
    cancelled: bool = False
    released: bool = False
    pixels: int = 0

    def key(self) -> tuple:
        s = self.settings
        return (s.max_new_tokens, s.temperature, s.top_p, tuple(s.stop), s.seed)

    def send(self, kind: str, value: Any) -> None:
        """Hand an event to the submitting loop (safe from any thread)."""
        if not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.events.put_nowait, (kind, value))


@dataclass
class BatchStats:
    """Counters for /health: how well batching works."""

    requests: int = 0
    batches: int = 0
    largest_batch: int = 0
    failed: int = 0


class Busy(Exception):
    """Raised by ``submit`` when ``max_pending`` jobs are already waiting or running."""


class Batcher:
    """Owns the engine; ``submit`` from any asyncio loop, ``stream`` or ``result`` to get the answer."""

    def __init__(self, engine: Engine, max_batch_size: int = 8, wait_ms: float = 10.0,
                 max_pending: int | None = None, max_pixels: int | None = None):
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, not {max_batch_size}")
        self.engine = engine
        self.max_batch_size = max_batch_size
        self.wait_s = max(0.0, wait_ms) / 1000
        self.stats = BatchStats()
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.max_pending = max_pending
        """Most jobs waiting or running at once (``None``: no limit); one more is refused with ``Busy``."""
        self.pending = 0
        self.max_pixels = max_pixels
        """Most decoded image pixels held by waiting or running jobs together (``None``: no limit)."""
        self.pixels = 0

    def start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._work, name="doctorsun-batcher", daemon=True)
                self._thread.start()

    def stop(self, timeout: float = 30.0) -> None:
        with self._lock:
            if self._thread is not None:
                self._queue.put(None)
                self._thread.join(timeout)
                self._thread = None

    def submit(self, messages, images, settings: GenerationSettings) -> Job:
        """Queue a conversation; call from a coroutine (the job reports to its running loop)."""
        self.start()
        pixels = sum(im.width * im.height for im in images)
        with self._lock:
            self.check_room(pixels)
            self.pending += 1
            self.pixels += pixels
        job = Job(list(messages), list(images), settings, asyncio.get_running_loop(), pixels=pixels)
        self._queue.put(job)
        return job

    def check_room(self, pixels: int = 0) -> None:
        """Raise ``Busy`` when one more job (holding ``pixels`` decoded pixels) would not fit; callers may
        ask before decoding a request's images, ``submit`` asks again."""
        if self.max_pending is not None and self.pending >= self.max_pending:
            raise Busy(f"{self.pending} requests are already waiting or running")
        if self.max_pixels is not None and self.pixels + pixels > self.max_pixels and self.pending:
            raise Busy(f"the waiting requests already hold {self.pixels} image pixels")

    def release(self, job: Job) -> None:
        """The job's consumer is done with it (answered, failed or gone): its slot is free."""
        with self._lock:
            if not job.released:
                job.released = True
                self.pending -= 1
                self.pixels -= job.pixels
        job.images = []  # the decoded pixels go with the slot

    async def stream(self, job: Job) -> AsyncIterator[str | Result]:
        """The job's text deltas, then its ``Result``; raises what generation raised. Leaving early
        cancels the job (its batch stops once every job in it has gone)."""
        try:
            while True:
                kind, value = await job.events.get()
                if kind == "delta":
                    yield value
                elif kind == "done":
                    yield value
                    return
                else:
                    raise value
        finally:
            job.cancelled = True
            self.release(job)

    async def result(self, job: Job) -> Result:
        events = self.stream(job)
        try:
            async for item in events:
                if isinstance(item, Result):
                    return item
        finally:
            await events.aclose()  # frees the job's slot now, not when the generator is collected
        raise RuntimeError("generation ended without a result")  # unreachable: stream ends with one

    # -- worker thread ---------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            jobs = [first]
            deadline = time.monotonic() + self.wait_s
            while len(jobs) < self.max_batch_size:
                try:
                    job = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if job is None:
                    self._queue.put(None)  # stop after this round
                    break
                jobs.append(job)
            groups: dict[tuple, list[Job]] = {}
            for job in jobs:
                if not job.cancelled:
                    groups.setdefault(job.key(), []).append(job)
            for group in groups.values():
                self._run(group)

    def _run(self, jobs: list[Job]) -> None:
        streamers: list[DeltaStreamer] = []

        def generate(group: list[Job]) -> list[tuple[Job, DeltaStreamer, int, str]]:
            self.stats.batches += 1
            self.stats.largest_batch = max(self.stats.largest_batch, len(group))
            streamer = streamer_for(
                self.engine,
                group[0].settings,
                on_delta=lambda row, text: group[row].send("delta", text),
                cancelled=lambda: all(j.cancelled for j in group),
            )
            streamers.append(streamer)
            texts = self.engine.generate(
                [j.messages for j in group], [j.images for j in group], group[0].settings, streamer=streamer
            )
            pairs = enumerate(zip(group, texts, strict=True))
            return [(job, streamer, row, text) for row, (job, text) in pairs]

        def retry(exc: BaseException) -> bool:
            # One bad request must not sink the others: answer them one by one, unless text has been
            # streamed already (a retry would send it twice) or every client has gone.
            if isinstance(exc, GenerationCancelled) or (streamers and any(streamers[-1].sent)):
                return False
            log.warning("a batch of %d failed (%s); answering its requests one by one", len(jobs), exc)
            return True

        results = isolate_failures(generate, jobs, retry)
        self.stats.requests += len(jobs)
        for job, result in zip(jobs, results, strict=True):
            if isinstance(result, GenerationCancelled):
                continue
            if isinstance(result, Exception):
                log.error("generation failed: %s", result, exc_info=result)
                self.stats.failed += 1
                job.send("error", result)
                continue
            _, streamer, row, text = result
            rest = streamer.finish(row, text)
            if rest:
                job.send("delta", rest)
            job.send(
                "done",
                Result(
                    text,
                    streamer.prompt_tokens[row] if streamer.prompt_tokens else 0,
                    streamer.completion_tokens(row),
                    streamer.finish_reason(row),
                ),
            )
