"""``AsyncEventLog``: the store's methods as coroutines, for asyncio programs.

Every call runs in one of the store's own worker threads (``_workers``: a queue drained by
the threads, results handed back to the loop a batch at a time), so the event loop never
waits for the disk, a lock or a server. Writes are never abandoned half-way: a cancelled
write that has not begun never runs; one that has begun finishes in its thread, and the
cancellation is raised once it has (a write that landed after the caller moved on would
reorder its history). ``events``, ``events_reversed`` and
``follow`` are async iterators that read in batches.

The loop's worst pause is what an asyncio program feels. Measured with
``tools/bench_async.py``: the long pauses were the garbage collector, not the reads. A
read that builds thousands of containers (events, message dicts) while a collection runs
has them promoted to the oldest generation, and every few reads a full collection walks
every object in the process (hundreds of thousands with a framework imported), in the
reading thread, holding the GIL: 56-75 ms (up to 300 on a loaded machine) with the loop
stopped. So each worker call runs with automatic collection paused (process-wide, counted, so
overlapping calls keep it paused until the last ends, for at most ``MAX_PAUSE``): what a
read builds and hands over dies young, collected by the next young-generation pass, and
no read sets off a full one. Collection resumes as soon as no call is running.
"""

from __future__ import annotations

import asyncio
import gc
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from ..core._errors import InvalidInputError
from ..core._records import ChatMessage, ChatSession, CompactionReport, Event, VerifyReport
from ._inputs import Durability
from ._log import EventLog
from ._open import open as open_store
from ._workers import WorkerPool

T = TypeVar("T")

WORKERS = 2
"""Worker threads per store. Each is one more thread contending with the loop for the GIL:
with 1,000 sessions appending at once, 4 workers made the loop's 99th-percentile pause
56 ms against 5 ms with 1 or 2 (``tools/bench_async.py``). More help a store whose calls
wait on a server (Redis) rather than compute."""
BATCH = 100
"""Most events an async iterator reads per worker call; fewer once the call has made half a
young generation's worth of tracked objects (see ``_take``). A worker holds the GIL while it
reads a batch: 100 rather than 500 took the loop's 99th-percentile pause (less its CPU
waits) from 13-28 ms to 7-10 on a loaded machine, for 2% more instructions per event read."""
MAX_PAUSE = 0.1
"""Longest the collector stays paused while reads keep overlapping (see ``_CollectorPause``)."""
FOLLOW_POLL = 0.25
"""Longest a ``follow`` worker call waits for new events before handing back (so a
cancelled follower's thread is free again within this)."""


class _CollectorPause:
    """Automatic garbage collection off while any worker call runs (see the module doc).

    Calls that overlap without a gap (a busy server) would keep it off for good, and
    cyclic garbage would pile up: so a pause that has lasted ``MAX_PAUSE`` seconds ends at
    the next call that begins, and collection stays on until no call is running."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._running = 0
        self._was_enabled = False
        self._since = 0.0

    def __enter__(self) -> None:
        with self._lock:
            if self._running == 0:
                self._was_enabled = gc.isenabled()
                if self._was_enabled:
                    gc.disable()
                    self._since = time.monotonic()
            elif self._was_enabled and time.monotonic() - self._since > MAX_PAUSE:
                gc.enable()
            self._running += 1

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._running -= 1
            if self._running == 0 and self._was_enabled:
                gc.enable()


_collector_pause = _CollectorPause()


class AsyncEventLog:
    """An ``EventLog`` for asyncio: the same methods as coroutines (``follow``, ``events``
    and ``events_reversed`` as async iterators). Get one with ``eventlog.open_async``, or
    wrap a store you opened: ``AsyncEventLog(log)`` (closing it closes the store)."""

    def __init__(self, log: EventLog, *, workers: int = WORKERS) -> None:
        if not isinstance(log, EventLog):
            raise InvalidInputError(f"AsyncEventLog wraps an EventLog, not {type(log).__name__}")
        if type(workers) is not int or workers < 1:
            raise InvalidInputError(f"workers must be a positive int, not {workers!r}")
        self.sync = log
        self._pool = WorkerPool(workers, "eventlog-async", _collector_pause)

    # Running calls ---------------------------------------------------------------------

    async def run(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking read in a worker thread (what every read here does); if
        cancelled, the read is withdrawn, or its result dropped."""
        return await self._pool.call(func, args, kwargs, write=False)

    async def run_write(self, func: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking write in a worker thread; if cancelled, it is withdrawn if it has
        not begun, else waited for, and the cancellation raised once it has ended."""
        return await self._pool.call(func, args, kwargs, write=True)

    # Lifecycle -------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self.sync.closed

    async def close(self) -> None:
        """Close the store once the calls under way have finished."""
        await asyncio.get_running_loop().run_in_executor(None, self._pool.close)
        self.sync.close()

    async def __aenter__(self) -> AsyncEventLog:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # Writing ---------------------------------------------------------------------------

    async def create_session(self, session_id: str | None = None, participants: Iterable[str] | None = None,
                             metadata: dict[str, Any] | None = None, *, created_at: float | None = None,
                             exist_ok: bool = False, durability: Durability | None = None) -> ChatSession:
        return await self.run_write(self.sync.create_session, session_id, participants, metadata,
                                    created_at=created_at, exist_ok=exist_ok, durability=durability)

    async def add_message(self, message: ChatMessage, *, expected_seq: int | None = None,
                          durability: Durability | None = None) -> ChatMessage:
        return await self.run_write(self.sync.add_message, message, expected_seq=expected_seq,
                                    durability=durability)

    async def add_messages(self, messages: Sequence[ChatMessage], *, expected_seq: int | None = None,
                           durability: Durability | None = None) -> list[ChatMessage]:
        return await self.run_write(self.sync.add_messages, list(messages), expected_seq=expected_seq,
                                    durability=durability)

    async def append(self, session_id: str, type: str, data: Any = None, *,
                     expected_seq: int | None = None, durability: Durability | None = None) -> Event:
        return await self.run_write(self.sync.append, session_id, type, data,
                                    expected_seq=expected_seq, durability=durability)

    async def append_many(self, session_id: str, events: Iterable[tuple[str, Any]], *,
                          expected_seq: int | None = None,
                          durability: Durability | None = None) -> list[Event]:
        return await self.run_write(self.sync.append_many, session_id, list(events),
                                    expected_seq=expected_seq, durability=durability)

    async def add_participant(self, session_id: str, participant: str, *,
                              expected_seq: int | None = None) -> Event:
        return await self.run_write(self.sync.add_participant, session_id, participant,
                                    expected_seq=expected_seq)

    async def remove_participant(self, session_id: str, participant: str, *,
                                 expected_seq: int | None = None) -> Event:
        return await self.run_write(self.sync.remove_participant, session_id, participant,
                                    expected_seq=expected_seq)

    async def import_events(self, session_id: str, events: Iterable[Event], *,
                            durability: Durability | None = None, batch_size: int = 1000) -> ChatSession:
        return await self.run_write(self.sync.import_events, session_id, list(events),
                                    durability=durability, batch_size=batch_size)

    async def delete_session(self, session_id: str) -> None:
        await self.run_write(self.sync.delete_session, session_id)

    async def compact(self, session_id: str | None = None) -> CompactionReport:
        return await self.run_write(self.sync.compact, session_id)

    async def cleanup_old_sessions(self, days: float, *, archive_dir: str | os.PathLike[str] | None = None,
                                   dry_run: bool = False) -> list[str]:
        return await self.run_write(self.sync.cleanup_old_sessions, days, archive_dir=archive_dir,
                                    dry_run=dry_run)

    # Reading ---------------------------------------------------------------------------

    async def get_session(self, session_id: str) -> ChatSession:
        return await self.run(self.sync.get_session, session_id)

    async def get_messages(self, session_id: str, limit: int | None = None, before_seq: int | None = None,
                           after_seq: int | None = None) -> list[ChatMessage]:
        return await self.run(self.sync.get_messages, session_id, limit, before_seq, after_seq)

    async def list_sessions(self) -> list[ChatSession]:
        return await self.run(self.sync.list_sessions)

    async def session_ids(self) -> list[str]:
        return await self.run(self.sync.session_ids)

    async def session_exists(self, session_id: str) -> bool:
        return await self.run(self.sync.session_exists, session_id)

    async def size(self, session_id: str) -> int:
        return await self.run(self.sync.size, session_id)

    async def verify(self, session_id: str | None = None) -> VerifyReport:
        return await self.run(self.sync.verify, session_id)

    async def events(self, session_id: str, after_seq: int = 0) -> AsyncIterator[Event]:
        """Every event after ``after_seq``, in order, read ``BATCH`` at a time."""
        source = await self.run(self.sync.events, session_id, after_seq)
        async for event in self._drain(source):
            yield event

    async def events_reversed(self, session_id: str) -> AsyncIterator[Event]:
        """The events from the newest back; stop whenever you have enough."""
        source = await self.run(self.sync.events_reversed, session_id)
        async for event in self._drain(source):
            yield event

    async def _drain(self, source: Iterator[Event]) -> AsyncIterator[Event]:
        try:
            ended = False
            while not ended:
                batch, ended = await self.run(_take, source, BATCH)
                for event in batch:
                    yield event
        finally:
            # A generator left open holds files: close it in a worker (it may block).
            close = getattr(source, "close", None)
            if close is not None:
                await self.run(close)

    async def follow(self, session_id: str, after_seq: int | None = None,
                     timeout: float | None = None) -> AsyncIterator[Event]:
        """Events as any process appends them, in order, each once (see ``EventLog.follow``).

        The worker waits at most ``FOLLOW_POLL`` seconds per call, so breaking out of the
        loop (or cancelling its task) frees the thread soon; ``timeout`` is the idle time
        after which the iterator ends, None for never."""
        log = self.sync
        sid, seq, life = await self.run(log._follow_start, session_id, after_seq, timeout)
        loop = asyncio.get_running_loop()
        idle_since = loop.time()
        while True:
            # What is there now, without waiting; then a wait of its own, so events are
            # handed over as soon as they are read, not after the wait.
            batch, _ = await self.run(_take, log._follow(sid, seq, 0, life), BATCH, close=True)
            for event in batch:
                yield event
                seq = event.seq
            if batch:
                idle_since = loop.time()
                continue
            left = None if timeout is None else idle_since + timeout - loop.time()
            if left is not None and left <= 0:
                return
            wait = FOLLOW_POLL if left is None else min(FOLLOW_POLL, left)
            await self.run(log.backend.wait, sid, seq, wait, incarnation=life)


def _take(source: Iterator[Event], count: int, close: bool = False) -> tuple[list[Event], bool]:
    """Up to ``count`` events of ``source``, and whether ``source`` has ended; ``close``:
    close the generator after.

    The batch also ends once reading it has made half a young generation's worth of tracked
    objects (``gc.get_count``): a batch still alive when a young collection runs (in the
    worker, or on the loop as it hands the events out) is promoted, and what is promoted
    piles up into full collections, each walking every object in the process with the
    loop stopped. Reading 100,000 small events 500 at a time ran 181 young, 17 middle and 2
    full collections (``tools/bench_async.py``); with this budget, 8-12 young, 1 middle, no
    full; 100 at a time, 1 young and none else. Counting objects rather than events keeps
    that true of events with big nested data."""
    threshold = gc.get_threshold()[0]
    budget = gc.get_count()[0] + threshold // 2 if threshold else None
    batch: list[Event] = []
    try:
        for event in source:
            batch.append(event)
            if len(batch) >= count or (budget is not None and gc.get_count()[0] >= budget):
                return batch, False
        return batch, True
    finally:
        if close:
            getattr(source, "close", lambda: None)()


def open_async(url: str | os.PathLike[str], **options: Any) -> AsyncEventLog:
    """``eventlog.open(url, **options)``, as an ``AsyncEventLog``. ``workers`` (4) sets its
    number of worker threads."""
    workers = options.pop("workers", WORKERS)
    return AsyncEventLog(open_store(url, **options), workers=workers)
