"""``AsyncEventLog``: the store's methods as coroutines, for asyncio programs.

A call that may wait (for a server, an fsync, a lock another process holds) runs in one of
the store's own worker threads (``_workers``: a queue drained by the threads, results
handed back to the loop a batch at a time), so the event loop never waits for it. Writes
are never abandoned half-way: a cancelled write that has not begun never runs; one that
has begun finishes in its thread, and the cancellation is raised once it has (a write that
landed after the caller moved on would reorder its history). ``events``,
``events_reversed`` and ``follow`` are async iterators that read in batches.

On a local store (files, memory: ``Backend.inline_appends``) the calls that cannot wait
long run on the loop's own thread instead: a non-durable append (a ``write`` into the page
cache, tens of microseconds) whose session lock is free, and the async iterators' reads,
in slices of at most ``INLINE_SLICE``. A worker thread running Python holds the GIL for up
to the interpreter's switch interval (5 ms) each time the loop wants it back, and on a
busy machine for as long as the kernel leaves that thread off a CPU while holding it: the
``busy`` control of ``tools/bench_async.py`` (a plain thread, no eventlog) stopped the
loop 26-60 ms. No second thread, no handoff: the loop's pauses are the slices themselves.
An append whose lock is taken gives up before writing anything (``WouldBlock``) and goes
to a worker; so does every durable one.

The loop's worst pause is what an asyncio program feels. Measured with
``tools/bench_async.py``: the long pauses were the garbage collector, not the reads. A
read that builds thousands of containers (events, message dicts) while a collection runs
has them promoted to the oldest generation, and every few reads a full collection walks
every object in the process (hundreds of thousands with a framework imported), in the
reading thread, holding the GIL: 56-75 ms (up to 300 on a loaded machine) with the loop
stopped. So each worker call runs with automatic collection paused (process-wide, counted, so
overlapping calls keep it paused until the last ends, for at most ``MAX_PAUSE``): what a
read builds and hands over dies young, collected by the next young-generation pass, and
no read sets off a full one. Collection resumes as soon as no call is running. A read on
the loop's thread pauses it while it reads a slice, never while the caller's code runs, and
for a whole read only where eventlog's own code keeps what it reads (``collector_paused``,
ended by a watchdog thread after ``READ_PAUSE`` whatever the loop does).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import heapq
import os
import threading
import time
import weakref
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

from ..backends._base import WouldBlock, nonblocking
from ..core._checkpoint import Checkpoint
from ..core._errors import InvalidInputError, StoreClosedError
from ..core._records import ChatMessage, ChatSession, CompactionReport, Event, VerifyReport
from ._catalog import SessionPage
from ._inputs import Durability
from ._log import EventLog
from ._open import open as open_store
from ._search import SearchPage
from ._workers import WorkerPool

T = TypeVar("T")

WORKERS = 2
"""Worker threads per store. Each is one more thread contending with the loop for the GIL:
with 1,000 sessions appending at once, 4 workers made the loop's 99th-percentile pause
56 ms against 5 ms with 1 or 2 (``tools/bench_async.py``). More help a store whose calls
wait on a server (Redis) rather than compute."""
INLINE_BATCH = 1000
"""Most events an inline slice reads (it ends sooner at ``INLINE_SLICE``)."""
BATCH = 100
"""Most events an async iterator reads per worker call; fewer once the call has made half a
young generation's worth of tracked objects (see ``_take``). A worker holds the GIL while it
reads a batch: 100 rather than 500 took the loop's 99th-percentile pause (less its CPU
waits) from 13-28 ms to 7-10 on a loaded machine, for 2% more instructions per event read."""
INLINE_SLICE = 0.002
"""Longest an async iterator reads on the loop's thread (a local store: see the module doc)
before it lets the loop run other tasks."""
READ_PAUSE = 0.5
"""Longest the collector stays paused for one inline read (see ``batches``)."""
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

    def hold(self, longest: float) -> _Held:
        """The pause, held across awaits (``collector_paused``) until ``release()``, and at
        most ``longest`` seconds: the watchdog thread ends it then, whatever the loop does
        (a timer on the loop never fired once the loop was closed with the read unfinished,
        and the collector stayed off for good)."""
        self.__enter__()
        held = _Held(self)
        _watchdog.watch(held, time.monotonic() + longest)
        return held


class _Held:
    """One held pause; ``release`` is idempotent and may come from any thread."""

    __slots__ = ("_lock", "_pause")

    def __init__(self, pause: _CollectorPause) -> None:
        self._lock = threading.Lock()
        self._pause: _CollectorPause | None = pause

    def release(self) -> None:
        with self._lock:
            pause, self._pause = self._pause, None
        if pause is not None:
            pause.__exit__()


class _Watchdog:
    """A daemon thread that releases each held pause at its deadline (started on first use)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._due: list[tuple[float, int, _Held]] = []
        self._count = 0
        self._thread: threading.Thread | None = None

    def watch(self, held: _Held, deadline: float) -> None:
        with self._cond:
            self._count += 1
            # Held strongly: a pause whose holder was dropped must still end.
            heapq.heappush(self._due, (deadline, self._count, held))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="eventlog-gc-watchdog",
                                                daemon=True)
                self._thread.start()
            self._cond.notify()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._due:
                    self._cond.wait()
                deadline, _, held = self._due[0]
                wait = deadline - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                heapq.heappop(self._due)
            held.release()


_collector_pause = _CollectorPause()
_watchdog = _Watchdog()


@contextlib.contextmanager
def collector_paused(longest: float | None = None) -> Iterator[None]:
    """Automatic garbage collection paused for the block (a coroutine's, across its awaits),
    and at most ``longest`` seconds (None: ``READ_PAUSE``): for a read whose caller keeps what
    it reads (see ``AsyncEventLog.batches``). Drop what you do not return before the block
    ends. Only for eventlog's own code: other tasks run while it awaits, so the pause's
    length is bounded by the watchdog, never by them."""
    held = _collector_pause.hold(READ_PAUSE if longest is None else longest)
    try:
        yield
    finally:
        held.release()


class _Pacer:
    """How much inline work (see the module doc) one event loop does before it runs anything
    else: a slice of at most ``INLINE_SLICE`` seconds per turn of the loop.

    asyncio runs every task that is ready in one turn, so 1,000 tasks each appending inline
    made one turn 1,000 appends long (a second on the loaded machine, the ticker of
    ``tools/bench_async.py`` stopped for all of it). Here the first inline call of a turn
    opens a slice; calls made once it is spent wait in line, and the next turn (``_breathe``,
    run after the loop has looked at its timers and sockets) lets about a slice's worth of
    them go, by the calls' measured cost. A woken caller that finds the slice spent after
    all goes back to the head of the line: the order is the order of the calls."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.started: float | None = None  # when this turn's slice began; None: no slice yet
        self.waiters: deque[asyncio.Future[None]] = deque()
        self.cost = 0.0001  # a call's duration, averaged (seconds)

    def room(self) -> bool:
        started = self.started
        if started is None:
            self.started = time.perf_counter()
            self.loop.call_soon(self._breathe)
            return True
        return time.perf_counter() - started < INLINE_SLICE

    async def turn(self) -> None:
        """Return when the caller may do a little inline work (a call, or a read until
        ``deadline()``); cancelled while waiting, it never does."""
        if not self.waiters and self.room():
            return
        waiter = self.loop.create_future()
        self.waiters.append(waiter)
        while True:
            await waiter
            if self.room():
                return
            waiter = self.loop.create_future()
            self.waiters.appendleft(waiter)

    def deadline(self) -> float:
        return (self.started or time.perf_counter()) + INLINE_SLICE

    def ran(self, seconds: float) -> None:
        self.cost += (seconds - self.cost) / 16

    def _breathe(self) -> None:
        self.started = None
        waiters = self.waiters
        wake = max(1, int(INLINE_SLICE / max(self.cost, 1e-6)))
        while waiters and wake:
            waiter = waiters.popleft()
            if not waiter.done():  # a cancelled caller's place is skipped
                waiter.set_result(None)
                wake -= 1


_pacers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Pacer] = weakref.WeakKeyDictionary()


def _pacer() -> _Pacer:
    """The running loop's pacer (one per loop, whatever the stores)."""
    loop = asyncio.get_running_loop()
    pacer = _pacers.get(loop)
    if pacer is None:
        pacer = _pacers[loop] = _Pacer(loop)
    return pacer


class AsyncEventLog:
    """An ``EventLog`` for asyncio: the same methods as coroutines (``follow``, ``events``
    and ``events_reversed`` as async iterators). Get one with ``eventlog.open_async``, or
    wrap a store you opened: ``AsyncEventLog(log)`` (closing it closes the store)."""

    def __init__(self, log: EventLog, *, workers: int = WORKERS, inline: bool | None = None) -> None:
        if not isinstance(log, EventLog):
            raise InvalidInputError(f"AsyncEventLog wraps an EventLog, not {type(log).__name__}")
        if type(workers) is not int or workers < 1:
            raise InvalidInputError(f"workers must be a positive int, not {workers!r}")
        if inline is not None and type(inline) is not bool:
            raise InvalidInputError(f"inline must be True, False or None, not {inline!r}")
        self.sync = log
        self.inline = log.backend.inline_appends if inline is None else inline
        """Whether short calls run on the loop's thread (see the module doc); False sends
        every call to a worker thread. Only a local store can be True."""
        if self.inline and not log.backend.inline_appends:
            raise InvalidInputError(f"inline=True needs a local store (files, memory), not "
                                    f"{type(log.backend).__name__}")
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

    async def _append(self, durability: Durability | None, func: Callable[..., T], /, *args: Any,
                      **kwargs: Any) -> T:
        """A write that appends: on the loop's thread if it cannot wait long (see the module
        doc), else in a worker."""
        if self.inline and not self.sync._durable(durability):
            # In line behind the other inline calls if this turn's slice is spent (so one
            # task appending in a loop lets the others run); cancelled there, it never runs.
            pacer = _pacer()
            await pacer.turn()
            if self._pool.closed:
                raise StoreClosedError("the store is closed")
            began = time.perf_counter()
            try:
                with nonblocking():
                    return func(*args, **kwargs)
            except WouldBlock:
                pass  # its session's lock is taken: nothing was written; wait in a worker
            finally:
                pacer.ran(time.perf_counter() - began)
        return await self.run_write(func, *args, **kwargs)

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
        return await self._append(durability, self.sync.add_message, message,
                                  expected_seq=expected_seq, durability=durability)

    async def add_messages(self, messages: Sequence[ChatMessage], *, expected_seq: int | None = None,
                           durability: Durability | None = None) -> list[ChatMessage]:
        return await self._append(durability, self.sync.add_messages, list(messages),
                                  expected_seq=expected_seq, durability=durability)

    async def append(self, session_id: str, type: str, data: Any = None, *,
                     expected_seq: int | None = None, durability: Durability | None = None,
                     idempotency_key: str | None = None) -> Event:
        return await self._append(durability, self.sync.append, session_id, type, data,
                                  expected_seq=expected_seq, durability=durability,
                                  idempotency_key=idempotency_key)

    async def append_many(self, session_id: str, events: Iterable[tuple[str, Any]], *,
                          expected_seq: int | None = None, durability: Durability | None = None,
                          idempotency_key: str | None = None) -> list[Event]:
        return await self._append(durability, self.sync.append_many, session_id, list(events),
                                  expected_seq=expected_seq, durability=durability,
                                  idempotency_key=idempotency_key)

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

    async def list_sessions(  # noqa: PLR0913 - EventLog.list_sessions' filters
            self, *, participant: str | None = None, metadata: dict[str, Any] | None = None,
            prefix: str | None = None, active_after: float | None = None,
            active_before: float | None = None, order: str = "session_id",
            descending: bool = False, limit: int | None = None) -> list[ChatSession]:
        return await self.run(self.sync.list_sessions, participant=participant, metadata=metadata,
                              prefix=prefix, active_after=active_after,
                              active_before=active_before, order=order, descending=descending,
                              limit=limit)

    async def page_sessions(  # noqa: PLR0913 - EventLog.page_sessions' filters
            self, limit: int = 100, cursor: str | None = None, *, participant: str | None = None,
            metadata: dict[str, Any] | None = None, prefix: str | None = None,
            active_after: float | None = None, active_before: float | None = None,
            order: str = "session_id", descending: bool = False) -> SessionPage:
        return await self.run(self.sync.page_sessions, limit, cursor, participant=participant,
                              metadata=metadata, prefix=prefix, active_after=active_after,
                              active_before=active_before, order=order, descending=descending)

    async def count_sessions(
            self, *, participant: str | None = None, metadata: dict[str, Any] | None = None,
            prefix: str | None = None, active_after: float | None = None,
            active_before: float | None = None) -> int:
        return await self.run(self.sync.count_sessions, participant=participant, metadata=metadata,
                              prefix=prefix, active_after=active_after, active_before=active_before)

    async def search(  # noqa: PLR0913 - EventLog.search's filters
            self, query: str = "", *, session_id: str | None = None, sender: str | None = None,
            recipient: str | None = None, to_everyone: bool = False,
            types: Sequence[str] | None = None, after_seq: int | None = None,
            before_seq: int | None = None, descending: bool = False, limit: int = 100,
            cursor: str | None = None, scan_limit: int | None = None) -> SearchPage:
        return await self.run(self.sync.search, query, session_id=session_id, sender=sender,
                              recipient=recipient, to_everyone=to_everyone, types=types,
                              after_seq=after_seq, before_seq=before_seq, descending=descending,
                              limit=limit, cursor=cursor, scan_limit=scan_limit)

    async def checkpoint(self, session_id: str | None = None) -> Checkpoint:
        return await self.run(self.sync.checkpoint, session_id)

    async def reindex(self) -> int:
        return await self.run_write(self.sync.reindex)

    async def fork(self, session_id: str, new_session_id: str | None = None, *,
                   at_seq: int | None = None, durability: Durability | None = None) -> ChatSession:
        return await self.run_write(self.sync.fork, session_id, new_session_id, at_seq=at_seq,
                                    durability=durability)

    async def rewind(self, session_id: str, to_seq: int, *, reason: str | None = None,
                     expected_seq: int | None = None) -> Event:
        return await self.run_write(self.sync.rewind, session_id, to_seq, reason=reason,
                                    expected_seq=expected_seq)

    async def redact(self, session_id: str, seqs: Iterable[int], *, reason: str) -> Event:
        return await self.run_write(self.sync.redact, session_id, list(seqs), reason=reason)

    async def session_ids(self) -> list[str]:
        return await self.run(self.sync.session_ids)

    async def session_exists(self, session_id: str) -> bool:
        return await self.run(self.sync.session_exists, session_id)

    async def size(self, session_id: str) -> int:
        return await self.run(self.sync.size, session_id)

    async def verify(self, session_id: str | None = None, *,
                     checkpoint: Checkpoint | None = None) -> VerifyReport:
        return await self.run(self.sync.verify, session_id, checkpoint=checkpoint)

    async def events(self, session_id: str, after_seq: int = 0) -> AsyncIterator[Event]:
        """Every event after ``after_seq``, in order, read a batch at a time."""
        async for batch in self.batches(self.sync.events, session_id, after_seq):
            for event in batch:
                yield event

    async def events_reversed(self, session_id: str) -> AsyncIterator[Event]:
        """The events from the newest back; stop whenever you have enough."""
        async for batch in self.batches(self.sync.events_reversed, session_id):
            for event in batch:
                yield event

    async def batches(self, open_source: Callable[..., Iterator[T]], *args: Any
                      ) -> AsyncGenerator[list[T], None]:
        """The items of the iterator ``open_source(*args)`` returns (a blocking read of the
        store), a list at a time, never empty: read on the loop's thread in slices of at
        most ``INLINE_SLICE`` on a local store, else ``BATCH`` per worker call. The source is
        closed when the caller stops early (break out, or ``aclose()``).

        On a local store the collector is paused while a slice is read, never while the
        caller has it. A caller of eventlog's own that keeps what it reads (a list it
        returns) holds ``collector_paused()`` around the whole read, so what it keeps is not
        promoted a batch at a time (each promotion brings a full collection nearer)."""
        inline = self.inline
        if not inline:
            source = await self.run(open_source, *args)
            try:
                ended = False
                while not ended:
                    batch, ended = await self.run(_take, source, BATCH)
                    if batch:
                        yield batch
            finally:
                # A generator left open holds files: close it in a worker (it may block).
                close = getattr(source, "close", None)
                if close is not None:
                    await self.run(close)
            return
        pacer = _pacer()
        await pacer.turn()
        if self._pool.closed:
            raise StoreClosedError("the store is closed")
        source = open_source(*args)
        try:
            ended = False
            while not ended:
                # Paused while the slice is read, never across the yield: the caller's own
                # code runs there, for as long as it likes, and must not run with the
                # collector off (a body without an await grew by 622 MiB of cyclic garbage).
                with _collector_pause:
                    batch, ended = _take(source, INLINE_BATCH, until=pacer.deadline(), budget=False)
                if batch:
                    yield batch
                if not ended:
                    batch = []
                    await pacer.turn()
        finally:
            batch = []
            close = getattr(source, "close", None)
            if close is not None:
                close()

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
            if self.inline:
                pacer = _pacer()
                await pacer.turn()
                batch, _ = _take(log._follow(sid, seq, 0, life), INLINE_BATCH, close=True,
                                 until=pacer.deadline())
            else:
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


def _take(source: Iterator[T], count: int, close: bool = False,
          until: float | None = None, budget: bool = True) -> tuple[list[T], bool]:
    """Up to ``count`` items of ``source``, and whether ``source`` has ended; ``close``:
    close the generator after; ``until``: stop at that ``time.perf_counter()`` too;
    ``budget``: stop at the young-generation budget below (not needed while the collector
    stays paused until the batch has been used).

    The batch also ends once reading it has made half a young generation's worth of tracked
    objects (``gc.get_count``): a batch still alive when a young collection runs (in the
    worker, or on the loop as it hands the events out) is promoted, and what is promoted
    piles up into full collections, each walking every object in the process with the
    loop stopped. Reading 100,000 small events 500 at a time ran 181 young, 17 middle and 2
    full collections (``tools/bench_async.py``); with this budget, 8-12 young, 1 middle, no
    full; 100 at a time, 1 young and none else. Counting objects rather than events keeps
    that true of events with big nested data."""
    threshold = gc.get_threshold()[0]
    most = gc.get_count()[0] + threshold // 2 if threshold and budget else None
    batch: list[T] = []
    clock = time.perf_counter
    try:
        for event in source:
            batch.append(event)
            if len(batch) >= count or (most is not None and gc.get_count()[0] >= most) or (
                    until is not None and clock() >= until):
                return batch, False
        return batch, True
    finally:
        if close:
            getattr(source, "close", lambda: None)()


def open_async(url: str | os.PathLike[str], **options: Any) -> AsyncEventLog:
    """``eventlog.open(url, **options)``, as an ``AsyncEventLog``. ``workers`` (2) sets its
    number of worker threads; ``inline`` (None: True for a local store) whether short calls
    run on the loop's thread (see ``AsyncEventLog.inline``)."""
    workers = options.pop("workers", WORKERS)
    inline = options.pop("inline", None)
    return AsyncEventLog(open_store(url, **options), workers=workers, inline=inline)
