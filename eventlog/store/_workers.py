"""The worker threads an ``AsyncEventLog``'s calls run in, and how their results reach the loop.

``loop.run_in_executor`` costs the loop, per call, a ``concurrent.futures.Future`` (with its
``Condition``), an asyncio future chained to it by two callbacks, and one wake-up of the loop
through its self-pipe; guarding a write against cancellation with ``asyncio.shield`` adds a
third future and two closures. With 1,000 writers in flight that is about 48 tracked objects
each, 48,000 the collector walks at every middle-generation pass (20-45 ms of CPU with the
loop stopped, measured with ``gc.callbacks``), and a loop iteration per completed call.

Here a call is one ``Job`` (its arguments and one asyncio future) in a queue that up to
``workers`` threads drain: a burst of calls is one executor job per thread, not one per call,
and the results a thread finishes while the loop is busy are handed over together, by one
``call_soon_threadsafe`` per batch. Each job still runs on its own, in the order calls were
made: one job's error is its caller's alone.

Cancellation: a job that has not begun is withdrawn and never runs (its caller's
cancellation is the truth: nothing happened). A read that has begun is abandoned (its result
is dropped). A write that has begun is waited for, and the cancellation is raised once it has
landed or failed: it never lands after its caller has moved on.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Generic, TypeVar

from ..core._errors import StoreClosedError

T = TypeVar("T")

QUEUED, RUNNING, DONE, WITHDRAWN = range(4)


class Job(Generic[T]):
    """One call: what to run, the loop that waits for it, and where it is in its life."""

    __slots__ = ("args", "func", "future", "kwargs", "loop", "state", "waiter")

    def __init__(self, func: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any],
                 loop: asyncio.AbstractEventLoop) -> None:
        self.func = func
        self.args = args
        self.kwargs = kwargs
        self.loop = loop
        self.future: asyncio.Future[T] = loop.create_future()
        self.state = QUEUED
        # Set only when a cancelled write's caller waits for the job to end.
        self.waiter: asyncio.Future[None] | None = None

    def settle(self, ok: bool, value: Any) -> None:
        """On the loop: hand the outcome to whoever still waits for it."""
        self.state = DONE
        self.func = self.args = self.kwargs = None  # type: ignore[assignment]
        future = self.future
        if not future.done():
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)


class WorkerPool:
    """Up to ``workers`` threads draining one queue of jobs, in order."""

    def __init__(self, workers: int, name: str,
                 around: contextlib.AbstractContextManager[Any] | None = None) -> None:
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
        self._workers = workers
        self._around = around
        self._lock = threading.Lock()
        self._queue: deque[Job[Any]] = deque()
        self._draining = 0
        self._closed = False
        # Finished jobs per loop, not yet handed over; a loop is a key here exactly while a
        # hand-over to it is scheduled.
        self._finished: dict[asyncio.AbstractEventLoop, list[tuple[Job[Any], bool, Any]]] = {}

    @property
    def closed(self) -> bool:
        return self._closed

    async def call(self, func: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any],
                   *, write: bool) -> T:
        """Run ``func(*args, **kwargs)`` in a worker; see the module doc for cancellation."""
        job: Job[T] = Job(func, args, kwargs, asyncio.get_running_loop())
        self._submit(job)
        try:
            return await job.future
        except asyncio.CancelledError:
            if self._withdraw(job) or not write:
                raise
            # Begun: the caller hears of its cancellation once the write has ended.
            while job.state != DONE:
                if job.waiter is None:
                    job.waiter = job.loop.create_future()
                with contextlib.suppress(asyncio.CancelledError):
                    await job.waiter
            raise

    def _submit(self, job: Job[Any]) -> None:
        with self._lock:
            if self._closed:
                raise StoreClosedError("the store is closed")
            self._queue.append(job)
            start = self._draining < self._workers
            if start:
                self._draining += 1
        if start:
            try:
                self._executor.submit(self._drain)
            except RuntimeError as exc:  # the interpreter is shutting down: no new threads
                with self._lock:
                    self._draining -= 1
                    job.state = WITHDRAWN
                raise StoreClosedError(f"no worker thread to run the call: {exc}") from exc

    def _withdraw(self, job: Job[Any]) -> bool:
        """True if ``job`` had not begun: it never will."""
        with self._lock:
            if job.state == QUEUED:
                job.state = WITHDRAWN
                return True
            return False

    def _drain(self) -> None:
        """A worker thread's loop: run jobs until the queue is empty."""
        around = self._around
        while True:
            with self._lock:
                while self._queue and self._queue[0].state == WITHDRAWN:
                    self._queue.popleft()
                if not self._queue:
                    self._draining -= 1
                    return
                job = self._queue.popleft()
                job.state = RUNNING
            try:
                if around is None:
                    value, ok = job.func(*job.args, **job.kwargs), True
                else:
                    with around:
                        value, ok = job.func(*job.args, **job.kwargs), True
            except StopIteration as exc:  # an asyncio future cannot carry one
                value, ok = RuntimeError(f"{job.func!r} raised StopIteration"), False
                value.__cause__ = exc
            except BaseException as exc:  # every outcome, KeyboardInterrupt too, is its caller's
                value, ok = exc, False
            self._finish(job, ok, value)
            job = value = None  # type: ignore[assignment]  # no reference kept past the job

    def _finish(self, job: Job[Any], ok: bool, value: Any) -> None:
        loop = job.loop
        with self._lock:
            batch = self._finished.get(loop)
            schedule = batch is None
            if batch is None:
                batch = self._finished[loop] = []
            batch.append((job, ok, value))
        if schedule:
            try:
                loop.call_soon_threadsafe(self._hand_over, loop)
            except RuntimeError:  # the loop is closed: nobody is waiting any more
                with self._lock:
                    self._finished.pop(loop, None)

    def _hand_over(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            batch = self._finished.pop(loop)
        for job, ok, value in batch:
            job.settle(ok, value)

    def close(self) -> None:
        """Take no more jobs; return once the queued ones have run (blocks)."""
        with self._lock:
            self._closed = True
        self._executor.shutdown(wait=True)
