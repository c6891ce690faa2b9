"""AsyncEventLog: the store's methods as coroutines, async iterators, writes that outlive a
cancellation, and the collector pause that keeps the loop's pauses short."""

from __future__ import annotations

import asyncio
import fcntl
import gc
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import eventlog
from eventlog.store import _async, _workers


@pytest.fixture(params=["files", "sqlite", "memory"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return {"files": str(tmp_path / "store"), "sqlite": f"sqlite:///{tmp_path / 's.db'}",
            "memory": "memory://"}[request.param]


@pytest.fixture(params=["files", "memory"])
def local_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The stores whose short calls run on the loop's thread."""
    return {"files": str(tmp_path / "store"), "memory": "memory://"}[request.param]


def test_the_store_methods_as_coroutines(url: str) -> None:
    async def scenario() -> None:
        async with eventlog.open_async(url) as log:
            assert isinstance(log, eventlog.AsyncEventLog)
            created = await log.create_session("s", ["a"], {"k": 1})
            assert created.session_id == "s"
            stored = await log.add_message(eventlog.ChatMessage(sender="a", content="hi", session_id="s"))
            assert stored.seq == 2
            await log.add_messages([eventlog.ChatMessage(sender="b", content=str(n), session_id="s")
                                    for n in range(3)])
            assert (await log.append("s", "x.y", {"n": 1})).seq == 6
            assert [e.seq for e in await log.append_many("s", [("x.y", 1), ("x.y", 2)])] == [7, 8]
            await log.add_participant("s", "c")
            await log.remove_participant("s", "c")
            with pytest.raises(eventlog.ConflictError):
                await log.append("s", "x.y", 3, expected_seq=2)
            session = await log.get_session("s")
            assert session.last_seq == 10 and session.message_count == 4
            assert [m.content for m in await log.get_messages("s", limit=2)] == ["1", "2"]
            assert await log.session_ids() == ["s"]
            assert await log.session_exists("s") and not await log.session_exists("t")
            assert [s.session_id for s in await log.list_sessions()] == ["s"]
            assert (await log.verify("s")).ok
            assert await log.size("s") >= 0
            events = [e async for e in log.events("s")]
            assert [e.seq for e in events] == list(range(1, 11))
            assert [e.seq async for e in log.events("s", after_seq=8)] == [9, 10]
            newest = []
            async for event in log.events_reversed("s"):
                newest.append(event.seq)
                if len(newest) == 3:
                    break
            assert newest == [10, 9, 8]
            await log.import_events("copy", events)
            assert [e async for e in log.events("copy")] == events
            await log.delete_session("copy")
            with pytest.raises(eventlog.SessionNotFoundError):
                await log.get_session("copy")
            await log.compact("s")
            assert await log.cleanup_old_sessions(1, dry_run=True) == []
        assert log.closed

    asyncio.run(scenario())


def test_events_reads_a_long_session_in_batches(tmp_path: Path) -> None:
    async def scenario() -> None:
        log = eventlog.open_async(tmp_path / "store")
        await log.create_session("long")
        await log.append_many("long", [("x.y", n) for n in range(_async.BATCH * 3 + 7)])
        seqs = [e.seq async for e in log.events("long")]
        assert seqs == list(range(1, _async.BATCH * 3 + 9))
        await log.close()

    asyncio.run(scenario())


def test_follow_yields_what_other_writers_append_and_ends_when_idle(url: str) -> None:
    async def scenario() -> None:
        log = eventlog.open_async(url)
        await log.create_session("s")
        other = log.sync

        def write() -> None:
            for n in range(5):
                time.sleep(0.02)
                other.append("s", "x.y", n)

        writer = threading.Thread(target=write)
        writer.start()
        started = time.monotonic()
        # From seq 1 (the create): the follower starts after the writer, which under load may
        # have appended already (CI saw seq 2 missed when it followed "from now").
        seen = [(e.seq, e.data) async for e in log.follow("s", after_seq=1, timeout=0.6)]
        writer.join()
        assert seen == [(n + 2, n) for n in range(5)]
        assert time.monotonic() - started < 5
        # From a seq, everything after it; and breaking out frees the worker soon.
        async for event in log.follow("s", after_seq=3):
            assert event.seq == 4
            break
        await log.delete_session("s")
        with pytest.raises(eventlog.SessionNotFoundError):
            async for _ in log.follow("s", timeout=1):
                pass
        await log.close()

    asyncio.run(scenario())


def test_a_cancelled_write_lands_before_the_cancellation_is_raised(tmp_path: Path) -> None:
    async def scenario() -> None:
        log = eventlog.open_async(tmp_path / "store", inline=False)  # every call in a worker
        await log.create_session("s")
        gate = threading.Event()
        real = log.sync.append

        def slow_append(*args: object, **kwargs: object) -> eventlog.Event:
            gate.wait(10)
            return real(*args, **kwargs)  # type: ignore[arg-type]

        log.sync.append = slow_append  # type: ignore[method-assign]
        task = asyncio.create_task(log.append("s", "x.y", "late"))
        await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.sleep(0.05)
        assert not task.done()
        gate.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert [e.data for e in log.sync.events("s")][1:] == ["late"]
        await log.close()

    asyncio.run(scenario())


def test_errors_are_the_stores_own() -> None:
    with pytest.raises(eventlog.InvalidInputError):
        eventlog.AsyncEventLog("memory://")  # type: ignore[arg-type]
    with pytest.raises(eventlog.InvalidInputError):
        eventlog.open_async("memory://", workers=0)

    async def scenario() -> None:
        async with eventlog.open_async("memory://") as log:
            with pytest.raises(eventlog.InvalidSessionIdError):
                await log.append("a\x00b", "x.y")
            with pytest.raises(eventlog.SessionNotFoundError):
                [e async for e in log.events("missing")]
            with pytest.raises(eventlog.InvalidSessionIdError):
                [e async for e in log.events_reversed("")]

    asyncio.run(scenario())
    assert gc.isenabled()  # no failed read left the collector paused


def test_the_collector_is_paused_during_calls_and_restored_after() -> None:
    states: list[bool] = []

    async def scenario() -> None:
        async with eventlog.open_async("memory://") as log:
            await log.run(lambda: states.append(gc.isenabled()))
            await log.run_write(lambda: states.append(gc.isenabled()))

    assert gc.isenabled()
    asyncio.run(scenario())
    assert states == [False, False]
    assert gc.isenabled()
    gc.disable()  # an app that turned it off itself keeps it off
    try:
        asyncio.run(scenario())
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_overlapping_calls_do_not_keep_the_collector_off_for_long(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_async, "MAX_PAUSE", 0.05)
    pause = _async._CollectorPause()
    with pause:
        assert not gc.isenabled()
        time.sleep(0.06)
        with pause:  # a call that begins after MAX_PAUSE lets the collector run again
            assert gc.isenabled()
        assert gc.isenabled()
    assert gc.isenabled()
    with pause:
        assert not gc.isenabled()
    assert gc.isenabled()


def _gated(log: eventlog.AsyncEventLog, gate: threading.Event) -> None:
    """Make the store's first ``append`` wait for ``gate``, so later calls queue behind it."""
    real = log.sync.append
    first = [True]

    def append(*args: object, **kwargs: object) -> eventlog.Event:
        if first[0]:
            first[0] = False
            gate.wait(10)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    log.sync.append = append  # type: ignore[method-assign]


def test_one_calls_error_fails_it_alone_and_a_batch_is_handed_over_at_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hand_overs: list[int] = []
    real_hand_over = _workers.WorkerPool._hand_over

    def counting(pool: _workers.WorkerPool, loop: asyncio.AbstractEventLoop) -> None:
        hand_overs.append(len(pool._finished[loop]))
        real_hand_over(pool, loop)

    monkeypatch.setattr(_workers.WorkerPool, "_hand_over", counting)

    async def scenario() -> None:
        log = eventlog.open_async(tmp_path / "store", workers=1, inline=False)
        await log.create_session("s")
        gate = threading.Event()
        _gated(log, gate)
        first = asyncio.create_task(log.append("s", "x.y", 0))
        others = [asyncio.create_task(log.append("s", "x.y", n)) for n in range(1, 4)]
        stale = asyncio.create_task(log.append("s", "x.y", "stale", expected_seq=1))
        missing = asyncio.create_task(log.append("nope", "x.y"))
        late = asyncio.create_task(log.append("s", "x.y", 4))
        await asyncio.sleep(0.05)
        hand_overs.clear()
        gate.set()
        # Keep the loop busy (a blocking wait on it) while the worker finishes all seven.
        loop, deadline = asyncio.get_running_loop(), time.monotonic() + 10
        while len(log._pool._finished.get(loop, ())) < 7 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert (await first).seq == 2
        assert [(await t).seq for t in others] == [3, 4, 5]
        with pytest.raises(eventlog.ConflictError):
            await stale
        with pytest.raises(eventlog.SessionNotFoundError):
            await missing
        assert (await late).seq == 6
        assert [e.data for e in log.sync.events("s")][1:] == [0, 1, 2, 3, 4]
        await log.close()

    asyncio.run(scenario())
    # Seven calls finished while the loop was busy: handed over in one wake-up.
    assert hand_overs == [7]


def test_a_cancelled_call_that_has_not_begun_never_runs_and_one_that_has_lands_first(
        tmp_path: Path) -> None:
    async def scenario() -> None:
        log = eventlog.open_async(tmp_path / "store", workers=1, inline=False)
        await log.create_session("s")
        gate = threading.Event()
        _gated(log, gate)
        running = asyncio.create_task(log.append("s", "x.y", "running"))
        queued = asyncio.create_task(log.append("s", "x.y", "queued"))
        read = asyncio.create_task(log.get_session("s"))
        after = asyncio.create_task(log.append("s", "x.y", "after"))
        await asyncio.sleep(0.05)
        # Not begun: the cancellation is raised at once, and the write never happens.
        queued.cancel()
        read.cancel()
        with pytest.raises(asyncio.CancelledError):
            await queued
        with pytest.raises(asyncio.CancelledError):
            await read
        # Begun: the caller hears of the cancellation only once the write has landed.
        running.cancel()
        await asyncio.sleep(0.05)
        assert not running.done()
        gate.set()
        with pytest.raises(asyncio.CancelledError):
            await running
        assert [e.data for e in log.sync.events("s")][1:2] == ["running"]
        assert (await after).seq == 3
        assert [e.data for e in log.sync.events("s")][1:] == ["running", "after"]
        await log.close()

    asyncio.run(scenario())


def test_a_cancelled_writes_error_is_not_left_unretrieved(tmp_path: Path) -> None:
    """A write cancelled while it runs and then failing: the caller gets the cancellation,
    and asyncio has no never-retrieved exception to log."""
    logged: list[dict[str, object]] = []

    async def scenario() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: logged.append(context))
        log = eventlog.open_async(tmp_path / "store", workers=1, inline=False)
        await log.create_session("s")
        gate = threading.Event()
        _gated(log, gate)
        task = asyncio.create_task(log.append("s", "x.y", expected_seq=5))
        await asyncio.sleep(0.05)
        task.cancel()
        gate.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        del task
        gc.collect()
        await log.close()

    asyncio.run(scenario())
    assert logged == []


def test_a_closed_store_refuses_calls(tmp_path: Path) -> None:
    async def scenario() -> None:
        log = eventlog.open_async(tmp_path / "store")
        await log.create_session("s")
        await log.close()
        with pytest.raises(eventlog.StoreClosedError):
            await log.append("s", "x.y")
        with pytest.raises(eventlog.StoreClosedError):
            await log.get_session("s")

    asyncio.run(scenario())


def test_calls_from_successive_event_loops(tmp_path: Path) -> None:
    """The integrations share one AsyncEventLog per store across ``asyncio.run`` calls."""
    log = eventlog.open_async(tmp_path / "store")
    log.sync.create_session("s")
    for n in range(3):
        async def scenario(n: int = n) -> None:
            await asyncio.gather(*(log.append("s", "x.y", [n, k]) for k in range(20)))
        asyncio.run(scenario())
    assert log.sync.get_session("s").last_seq == 61
    log.sync.close()


def test_a_batch_ends_before_it_outgrows_the_young_generation() -> None:
    def heavy() -> Iterator[eventlog.Event]:
        for seq in range(1, 1001):  # each event's data: 21 containers the collector tracks
            yield eventlog.Event(seq=seq, type="x.y", ts=0.0, data=[[k] for k in range(20)])

    source = heavy()
    rest: list[eventlog.Event] = []
    with _async._CollectorPause():  # as in a worker: no collection resets the count midway
        batch, ended = _async._take(source, 500)
        while not ended:
            more, ended = _async._take(source, 500)
            rest += more
    assert 0 < len(batch) < 500
    assert len(batch) * 21 <= gc.get_threshold()[0]
    assert [e.seq for e in batch + rest] == list(range(1, 1001))
    light = (eventlog.Event(seq=seq, type="x.y", ts=0.0, data=seq) for seq in range(1, 1001))
    assert len(_async._take(light, 100)[0]) == 100  # one tracked tuple each: the count decides


def test_events_with_big_data_all_arrive_in_order(tmp_path: Path) -> None:
    async def scenario() -> None:
        log = eventlog.open_async(tmp_path / "store")
        await log.create_session("big")
        await log.append_many("big", [("x.y", {"parts": [{"k": [n, k]} for k in range(30)]})
                                      for n in range(700)])
        seen = [e async for e in log.events("big")]
        assert [e.seq for e in seen] == list(range(1, 702))
        assert seen[-1].data["parts"][29] == {"k": [699, 29]}
        await log.close()

    asyncio.run(scenario())


def test_a_call_no_thread_can_run_fails_alone(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """At interpreter shutdown the executor takes no new work: the call fails as closed, and
    the pool's count of running drainers stays true for the calls after."""
    async def scenario() -> None:
        log = eventlog.open_async(tmp_path / "store", workers=1, inline=False)
        await log.create_session("s")
        while log._pool._draining:  # the thread that ran it has not yet seen the queue empty
            await asyncio.sleep(0.01)
        executor = log._pool._executor
        real = executor.submit
        monkeypatch.setattr(executor, "submit", lambda fn: (_ for _ in ()).throw(
            RuntimeError("cannot schedule new futures after interpreter shutdown")))
        with pytest.raises(eventlog.StoreClosedError):
            await log.append("s", "x.y", "lost")
        monkeypatch.setattr(executor, "submit", real)
        assert (await log.append("s", "x.y", "kept")).seq == 2
        assert [e.data for e in log.sync.events("s")][1:] == ["kept"]
        await log.close()

    asyncio.run(scenario())


def test_an_append_whose_session_lock_is_held_elsewhere_waits_off_the_loop(tmp_path: Path) -> None:
    """On a file store a non-durable append runs on the loop's thread only if its session's
    lock is free; held by another process (here: another open of the lock file, which
    flock treats alike), the append waits in a worker while the loop goes on."""
    async def scenario() -> None:
        log = eventlog.open_async(tmp_path / "store")
        assert log.inline
        await log.create_session("s")
        await log.append("s", "x.y", "first")  # the handle is open and its head known
        fd = os.open(tmp_path / "store" / "s" / "lock", os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            task = asyncio.create_task(log.append("s", "x.y", "waited"))
            ran = 0
            for _ in range(5):
                await asyncio.sleep(0.01)
                ran += 1  # the loop runs this task while the append waits
            assert ran == 5 and not task.done()
        finally:
            os.close(fd)  # and the flock with it
        assert (await task).seq == 3
        assert [e.data for e in log.sync.events("s")][1:] == ["first", "waited"]
        await log.close()

    asyncio.run(scenario())


def test_a_cancelled_inline_append_that_waits_in_line_never_runs(
        local_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_async, "INLINE_SLICE", 0.0)  # one inline call per turn of the loop

    async def scenario() -> None:
        log = eventlog.open_async(local_url)
        await log.create_session("s")
        first = asyncio.create_task(log.append("s", "x.y", "first"))
        waiting = asyncio.create_task(log.append("s", "x.y", "never"))
        after = asyncio.create_task(log.append("s", "x.y", "after"))
        await asyncio.sleep(0)  # all three have begun: the first ran, the others wait in line
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert (await first).seq == 2 and (await after).seq == 3
        assert [e.data for e in log.sync.events("s")][1:] == ["first", "after"]
        await log.close()

    asyncio.run(scenario())


def test_an_appending_task_lets_the_others_run(local_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_async, "INLINE_SLICE", 0.0)

    async def scenario() -> None:
        log = eventlog.open_async(local_url)
        await log.create_session("s")
        seen_at: list[int] = []

        async def appender() -> None:
            for n in range(200):
                await log.append("s", "x.y", n)

        async def other() -> None:
            seen_at.append(log.sync.backend.last_seq("s"))

        await asyncio.gather(appender(), other())
        assert seen_at[0] < 201  # it ran before the appender was done
        await log.close()

    asyncio.run(scenario())


def test_durable_appends_and_remote_stores_use_the_workers(tmp_path: Path) -> None:
    threads: list[int] = []

    async def scenario() -> None:
        log = eventlog.open_async(tmp_path / "store")
        await log.create_session("s")
        real = log.sync.append

        def append(*args: object, **kwargs: object) -> eventlog.Event:
            threads.append(threading.get_ident())
            return real(*args, **kwargs)  # type: ignore[arg-type]

        log.sync.append = append  # type: ignore[method-assign]
        await log.append("s", "x.y", 1)
        await log.append("s", "x.y", 2, durability="fsync")
        assert threads[0] == threading.get_ident() != threads[1]
        await log.close()

    asyncio.run(scenario())
    with pytest.raises(eventlog.InvalidInputError, match="local store"):
        eventlog.open_async(f"sqlite:///{tmp_path / 's.db'}", inline=True)
    with pytest.raises(eventlog.InvalidInputError, match="inline"):
        eventlog.open_async("memory://", inline="yes")
    assert not eventlog.open_async(f"sqlite:///{tmp_path / 's.db'}").inline


def test_a_store_closing_refuses_inline_calls(tmp_path: Path) -> None:
    async def scenario() -> None:
        log = eventlog.open_async(tmp_path / "store")
        await log.create_session("s")
        closing = asyncio.create_task(log.close())
        await asyncio.sleep(0)  # close() has begun: the pool takes no more calls
        with pytest.raises(eventlog.StoreClosedError):
            await log.append("s", "x.y")
        with pytest.raises(eventlog.StoreClosedError):
            [e async for e in log.events("s")]
        await closing

    asyncio.run(scenario())


def test_an_inline_read_never_leaves_the_collector_off(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The collector is paused while a slice is read, never while the caller's own code
    runs (outside tester: a body without an await ran with it off and grew by 622 MiB)."""
    monkeypatch.setattr(_async, "INLINE_BATCH", 10)

    async def scenario() -> None:
        log = eventlog.open_async(tmp_path / "store")
        await log.create_session("s")
        await log.append_many("s", [("x.y", n) for n in range(50)])
        seen = []
        async for event in log.events("s"):
            assert gc.isenabled()  # in the caller's body
            seen.append(event.seq)
        assert seen == list(range(1, 52))
        reader = log.events("s")
        assert (await reader.__anext__()).seq == 1
        assert gc.isenabled()  # a caller holding a batch
        async for _ in log.events_reversed("s"):
            break
        assert gc.isenabled()
        await log.close()

    asyncio.run(scenario())
    assert gc.isenabled()


def test_a_pause_ends_even_when_its_loop_is_closed_under_it(tmp_path: Path) -> None:
    """get_items' whole-read pause outlived its loop (closed with the read unfinished, without
    shutdown_asyncgens, as run_until_complete users do): the collector stayed off for good.
    In a child process: the collector's state is process-wide."""
    script = textwrap.dedent("""
        import asyncio, gc, time
        from eventlog.store import _async
        _async.READ_PAUSE = 0.2
        async def main():
            with _async.collector_paused():
                assert not gc.isenabled()
                await asyncio.Event().wait()  # never set: the loop is closed under it
        loop = asyncio.new_event_loop()
        task = loop.create_task(main())
        loop.run_until_complete(asyncio.sleep(0.05))
        loop.close()
        keep = task  # nothing finalizes it
        time.sleep(0.6)
        print("enabled" if gc.isenabled() else "disabled")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.stdout.strip() == "enabled", done.stdout + done.stderr


def test_every_coroutine_takes_the_parameters_of_its_store_method() -> None:
    """"The store's methods as coroutines": the same names, kinds and defaults (outside
    tester: the async append and append_many had no idempotency_key)."""
    import inspect
    mismatched: list[tuple[str, object, object]] = []
    for name, method in inspect.getmembers(eventlog.EventLog, inspect.isfunction):
        if name.startswith("_") or name in ("close",):
            continue
        mine = getattr(eventlog.AsyncEventLog, name, None)
        if mine is None:
            mismatched.append((name, "missing", None))
            continue
        if not (inspect.iscoroutinefunction(mine) or inspect.isasyncgenfunction(mine)):
            mismatched.append((name, "not a coroutine or an async iterator", None))
            continue
        want = [(p.name, p.kind, p.default) for p in inspect.signature(method).parameters.values()]
        got = [(p.name, p.kind, p.default) for p in inspect.signature(mine).parameters.values()]
        if want != got:
            mismatched.append((name, want, got))
    assert mismatched == []


def test_keyed_appends_from_a_coroutine_store_once(tmp_path: Path) -> None:
    async def scenario() -> None:
        log = eventlog.open_async(tmp_path / "store")
        await log.create_session("s")
        first = await log.append("s", "x.y", 1, idempotency_key="k1")
        assert await log.append("s", "x.y", 1, idempotency_key="k1") == first
        batch = await log.append_many("s", [("x.y", 2), ("x.y", 3)], idempotency_key="k2")
        assert await log.append_many("s", [("x.y", 2), ("x.y", 3)], idempotency_key="k2") == batch
        assert [e.seq async for e in log.events("s")] == [1, 2, 3, 4]
        await log.close()

    asyncio.run(scenario())
