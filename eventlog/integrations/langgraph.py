"""A LangGraph checkpointer kept in eventlog: each thread is one session.

    from eventlog.integrations.langgraph import EventLogSaver
    graph = builder.compile(checkpointer=EventLogSaver("chatlogs"))   # a store path or URL, or an EventLog
    graph.invoke(inputs, {"configurable": {"thread_id": "user:42"}})

Thread ``T`` is eventlog session ``T``, whatever its id (every id is valid since issue 15),
created by its first checkpoint with metadata ``{"integration":
"langgraph"}``. Its events, in the order they were written:

- ``langgraph.checkpoint``: ``{"ns", "id", "parent", "checkpoint": [type, base64],
  "metadata": {...}}``: one ``put``; the checkpoint is LangGraph's serializer's output
  (``serde.dumps_typed``), the metadata plain JSON, filterable by ``list(filter=)``.
- ``langgraph.writes``: ``{"ns", "id", "task", "path", "writes": [[idx, channel, type,
  base64], ...]}``: one ``put_writes``, for checkpoint ``id``. As in LangGraph's own savers,
  a write repeated under the same ``(task, idx)`` is ignored, except the special channels
  (errors, interrupts...), whose newest write wins.
- ``langgraph.removed`` (``{"checkpoints": [[ns, id], ...]}``, by ``delete_for_runs``) and
  ``langgraph.pruned`` (``{"keep": [[ns, id], ...]}``, by ``prune``: every checkpoint
  written before it but those is gone) hide checkpoints and their writes. Both are
  appended only if the thread is unchanged since it was read, so a checkpoint written
  meanwhile by another process is never hidden unseen.

``delete_thread`` (and ``prune(strategy="delete")``) deletes the session: the thread is
erased. ``copy_thread`` makes the target an exact copy of the source's log (the target
thread must not exist yet). Reads keep a fold of each thread in memory and bring it up to
date from the log's tail before every call, so ``get_tuple`` and ``list`` cost what they
return, and every process sees every other's checkpoints at once.
"""

from __future__ import annotations

import base64
import builtins
import random
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import orjson

from ..core._errors import ConflictError, InvalidInputError, SessionNotFoundError
from ..core._records import Event
from ._common import (
    Fold,
    FoldCache,
    Store,
    append_event,
    async_of,
    framework_id_of,
    missing_framework,
    resolve_store,
    session_id_for,
)

try:
    from langchain_core.runnables import RunnableConfig
    from langgraph.checkpoint.base import (
        WRITES_IDX_MAP,
        BaseCheckpointSaver,
        ChannelVersions,
        Checkpoint,
        CheckpointMetadata,
        CheckpointTuple,
        PendingWrite,
        get_checkpoint_id,
        get_checkpoint_metadata,
        writes_sort_key,
    )
    from langgraph.checkpoint.serde.base import SerializerProtocol
except ModuleNotFoundError as exc:
    raise missing_framework(__name__, "langgraph", "langgraph", exc) from None

__all__ = ["CHECKPOINT_EVENT", "PRUNED_EVENT", "REMOVED_EVENT", "WRITES_EVENT", "EventLogSaver"]

CHECKPOINT_EVENT = "langgraph.checkpoint"
WRITES_EVENT = "langgraph.writes"
REMOVED_EVENT = "langgraph.removed"
PRUNED_EVENT = "langgraph.pruned"
INTEGRATION = "langgraph"
_SESSION_METADATA = {"integration": INTEGRATION}
MARKER_ATTEMPTS = 50
"""How often ``prune`` and ``delete_for_runs`` read a thread again after another writer
changed it between their read and their marker, before raising ``ConflictError``."""


class _Stored:
    """One checkpoint as its event holds it: serialized, decoded only when returned."""

    __slots__ = ("blob", "kind", "metadata", "metadata_json", "parent")

    def __init__(self, data: dict[str, Any]) -> None:
        self.parent: str | None = data["parent"]
        self.kind, self.blob = data["checkpoint"]
        self.metadata: dict[str, Any] = data["metadata"]
        # Handed out decoded afresh each time, so callers never share (or change) ours.
        self.metadata_json = orjson.dumps(self.metadata)


# (task_id, channel, type, base64 value, task_path, idx)
_Write = tuple[str, str, str, str, str, int]


class _Thread(Fold):
    """A thread's live checkpoints by namespace and id, with their pending writes."""

    def __init__(self) -> None:
        self.ours = False
        self.checkpoints: dict[str, dict[str, _Stored]] = {}
        self.writes: dict[tuple[str, str], dict[tuple[str, int], _Write]] = {}
        self._latest: dict[str, str] = {}

    def apply(self, event: Event) -> None:
        kind, data = event.type, event.data
        if kind == CHECKPOINT_EVENT:
            ns, cid = data["ns"], data["id"]
            self.checkpoints.setdefault(ns, {})[cid] = _Stored(data)
            if cid > self._latest.get(ns, ""):
                self._latest[ns] = cid
        elif kind == WRITES_EVENT:
            self._add_writes(data)
        elif kind == REMOVED_EVENT:
            for ns, cid in data["checkpoints"]:
                self._drop(ns, cid)
        elif kind == PRUNED_EVENT:
            keep = {(ns, cid) for ns, cid in data["keep"]}
            for ns, entries in list(self.checkpoints.items()):
                for cid in [c for c in entries if (ns, c) not in keep]:
                    self._drop(ns, cid)
        elif event.seq == 1 and type(data) is dict:
            self.ours = (data.get("metadata") or {}).get("integration") == INTEGRATION

    def _add_writes(self, data: dict[str, Any]) -> None:
        stored = self.writes.setdefault((data["ns"], data["id"]), {})
        task, path = data["task"], data["path"]
        for idx, channel, kind, blob in data["writes"]:
            key = (task, idx)
            # LangGraph's savers keep the first of a repeated regular write and the last of
            # a special one (errors, interrupts: negative idx).
            if idx >= 0 and key in stored:
                continue
            stored[key] = (task, channel, kind, blob, path, idx)

    def _drop(self, ns: str, cid: str) -> None:
        entries = self.checkpoints.get(ns)
        if entries is None or entries.pop(cid, None) is None:
            return
        self.writes.pop((ns, cid), None)
        if not entries:
            del self.checkpoints[ns]
            self._latest.pop(ns, None)
        elif self._latest.get(ns) == cid:
            self._latest[ns] = max(entries)

    def latest(self, ns: str) -> str | None:
        return self._latest.get(ns)

    def pending(self, ns: str, cid: str) -> list[_Write]:
        return list(self.writes.get((ns, cid), {}).values())


# What a read takes out of a fold under its lock; decoded after the lock is let go.
_Found = tuple[str, str, str, _Stored, list[_Write]]  # thread id, ns, checkpoint id, ...


class EventLogSaver(BaseCheckpointSaver[str]):
    """LangGraph checkpointer over eventlog ``store`` (a path or URL, shared per process,
    or an ``EventLog`` you opened), sync and async, safe across threads and processes."""

    def __init__(self, store: Store, *, serde: SerializerProtocol | None = None) -> None:
        super().__init__(serde=serde)
        self.log = resolve_store(store)
        self._threads: FoldCache[_Thread] = FoldCache(self.log, _Thread)
        self._async = async_of(self.log)

    # Writing ---------------------------------------------------------------------------

    def put(self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata,
            new_versions: ChannelVersions) -> RunnableConfig:
        """Store ``checkpoint`` as one event; returns the config that names it."""
        thread_id, ns = _thread_of(config)
        kind, blob = self.serde.dumps_typed(checkpoint)
        data = {"ns": ns, "id": checkpoint["id"], "parent": get_checkpoint_id(config),
                "checkpoint": [kind, _b64(blob)],
                "metadata": get_checkpoint_metadata(config, metadata)}
        append_event(self.log, session_id_for(str(thread_id)), CHECKPOINT_EVENT, data,
                     metadata=_SESSION_METADATA)
        return {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns,
                                 "checkpoint_id": checkpoint["id"]}}

    def put_writes(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str,
                   task_path: str = "") -> None:
        """Store a task's writes for the checkpoint ``config`` names, as one event."""
        if not writes:
            return
        thread_id, ns = _thread_of(config)
        stored = []
        for idx, (channel, value) in enumerate(writes):
            kind, blob = self.serde.dumps_typed(value)
            stored.append([WRITES_IDX_MAP.get(channel, idx), channel, kind, _b64(blob)])
        data = {"ns": ns, "id": config["configurable"]["checkpoint_id"], "task": task_id,
                "path": task_path, "writes": stored}
        append_event(self.log, session_id_for(str(thread_id)), WRITES_EVENT, data,
                     metadata=_SESSION_METADATA)

    def delete_thread(self, thread_id: str) -> None:
        """Erase the thread: its session is deleted."""
        sid = session_id_for(str(thread_id))
        try:
            self.log.delete_session(sid)
        except SessionNotFoundError:
            pass
        self._threads.forget(sid)

    def copy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Make thread ``target_thread_id`` an exact copy of ``source_thread_id``: every
        checkpoint and write, in order (``SessionExistsError`` if the target exists).
        A source that does not exist copies nothing."""
        source = session_id_for(str(source_thread_id))
        target = session_id_for(str(target_thread_id))
        try:
            events = list(self.log.events(source))
        except SessionNotFoundError:
            return
        # A verbatim copy of the log: event data never names the thread, so the copy is
        # the same thread under another id (what the store's fork will do in one call).
        self.log.import_events(target, events)

    def prune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        """``"keep_latest"``: hide all but each namespace's newest checkpoint (a
        ``langgraph.pruned`` event; the bytes stay until the thread is deleted).
        ``"delete"``: delete the threads."""
        if strategy == "delete":
            for thread_id in thread_ids:
                self.delete_thread(thread_id)
            return
        if strategy != "keep_latest":
            raise InvalidInputError(f"unknown prune strategy {strategy!r}: use 'keep_latest' or 'delete'")
        for thread_id in thread_ids:
            self._mark(session_id_for(str(thread_id)), _prune_marker)

    def delete_for_runs(self, run_ids: Sequence[str]) -> None:
        """Hide every checkpoint (and its writes) whose metadata ``run_id`` is one of
        ``run_ids``, in every thread of the store (a ``langgraph.removed`` event each)."""
        runs = set(run_ids)
        if not runs:
            return
        for sid in self._thread_sessions():
            self._mark(sid, lambda thread: _removal_marker(thread, runs))

    def _mark(self, sid: str, marker: Any) -> None:
        """Append the event ``marker(thread)`` returns (None: nothing to do), only if the
        thread is unchanged since the fold it was computed from."""
        conflict: ConflictError | None = None
        for _ in range(MARKER_ATTEMPTS):
            with self._threads.use(sid) as (thread, seq):
                found = marker(thread) if seq else None
                if found is None:
                    return
                try:
                    self.log.append(sid, found[0], found[1], expected_seq=seq)
                    return
                except ConflictError as exc:
                    conflict = exc
                except SessionNotFoundError:
                    return
        assert conflict is not None
        raise conflict

    # Reading ---------------------------------------------------------------------------

    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        """The checkpoint ``config`` names, or its namespace's newest; None if there is none."""
        thread_id, ns = _thread_of(config)
        wanted = get_checkpoint_id(config)
        with self._threads.use(session_id_for(str(thread_id))) as (thread, _):
            cid = wanted or thread.latest(ns)
            stored = thread.checkpoints.get(ns, {}).get(cid) if cid else None
            if cid is None or stored is None:
                return None
            writes = thread.pending(ns, cid)
        if wanted:
            return self._tuple(thread_id, ns, cid, stored, writes, config)
        return self._tuple(thread_id, ns, cid, stored, writes)

    def list(self, config: RunnableConfig | None, *, filter: dict[str, Any] | None = None,
             before: RunnableConfig | None = None, limit: int | None = None) -> Iterator[CheckpointTuple]:
        """Checkpoints newest first (by id) of ``config``'s thread (None: every thread of
        the store), its namespace if given, matching ``filter`` (metadata keys equal),
        older than ``before``; at most ``limit``."""
        if limit is not None and (type(limit) is not int or limit < 0):
            raise InvalidInputError(f"limit must be None or a non-negative int, not {limit!r}")
        if config is None:
            sids = self._thread_sessions()
            ns = wanted = None
        else:
            sids = [session_id_for(str(config["configurable"]["thread_id"]))]
            ns = config["configurable"].get("checkpoint_ns")
            wanted = get_checkpoint_id(config)
        bound = get_checkpoint_id(before) if before is not None else None
        found: builtins.list[_Found] = []
        for sid in sids:
            with self._threads.use(sid) as (thread, _):
                thread_id = config["configurable"]["thread_id"] if config else framework_id_of(sid)
                matched = []
                for space, entries in thread.checkpoints.items():
                    if ns is not None and space != ns:
                        continue
                    for cid, stored in entries.items():
                        if ((wanted and cid != wanted) or (bound and cid >= bound)
                                or (filter and not _matches(stored.metadata, filter))):
                            continue
                        matched.append((cid, space, stored))
                # Only the newest ``limit`` of each thread can be among the newest overall.
                matched.sort(key=lambda item: item[0], reverse=True)
                found.extend((thread_id, space, cid, stored, thread.pending(space, cid))
                             for cid, space, stored in matched[:limit])
        found.sort(key=lambda item: item[2], reverse=True)
        return (self._tuple(*item) for item in found[:limit])

    def _thread_sessions(self) -> builtins.list[str]:
        """Every session of the store that holds a LangGraph thread."""
        ids = []
        for sid in self.log.session_ids():
            with self._threads.use(sid) as (thread, _):
                if thread.ours:
                    ids.append(sid)
        return ids

    def _tuple(self, thread_id: Any, ns: str, cid: str, stored: _Stored, writes: builtins.list[_Write],
               config: RunnableConfig | None = None) -> CheckpointTuple:
        loads = self.serde.loads_typed
        writes.sort(key=lambda w: writes_sort_key(w[4], w[0], w[5]))
        pending: builtins.list[PendingWrite] = [(w[0], w[1], loads((w[2], base64.b64decode(w[3]))))
                                       for w in writes]
        return CheckpointTuple(
            config or {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns,
                                        "checkpoint_id": cid}},
            loads((stored.kind, base64.b64decode(stored.blob))),
            orjson.loads(stored.metadata_json),
            {"configurable": {"thread_id": thread_id, "checkpoint_ns": ns,
                              "checkpoint_id": stored.parent}} if stored.parent else None,
            pending,
        )

    def get_next_version(self, current: str | None, channel: None) -> str:
        # LangGraph's own savers' versions: a zero-padded counter (they compare as strings)
        # and a random fraction.
        if current is None:
            current_v = 0
        elif isinstance(current, int):
            current_v = current
        else:
            current_v = int(current.split(".")[0])
        return f"{current_v + 1:032}.{random.random():016}"

    # Async: the same calls in the store's worker threads (writes finish even if cancelled) ----------

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await self._async.run(self.get_tuple, config)

    async def alist(self, config: RunnableConfig | None, *, filter: dict[str, Any] | None = None,
                    before: RunnableConfig | None = None,
                    limit: int | None = None) -> AsyncIterator[CheckpointTuple]:
        found = await self._async.run(lambda: list(self.list(config, filter=filter, before=before,
                                                             limit=limit)))
        for item in found:
            yield item

    async def aput(self, config: RunnableConfig, checkpoint: Checkpoint, metadata: CheckpointMetadata,
                   new_versions: ChannelVersions) -> RunnableConfig:
        return await self._async.run_write(lambda: self.put(config, checkpoint, metadata, new_versions))

    async def aput_writes(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]],
                          task_id: str, task_path: str = "") -> None:
        await self._async.run_write(lambda: self.put_writes(config, writes, task_id, task_path))

    async def adelete_thread(self, thread_id: str) -> None:
        await self._async.run_write(lambda: self.delete_thread(thread_id))

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        await self._async.run_write(lambda: self.copy_thread(source_thread_id, target_thread_id))

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest") -> None:
        await self._async.run_write(lambda: self.prune(thread_ids, strategy=strategy))

    async def adelete_for_runs(self, run_ids: Sequence[str]) -> None:
        await self._async.run_write(lambda: self.delete_for_runs(run_ids))


def _thread_of(config: RunnableConfig) -> tuple[Any, str]:
    configurable = config.get("configurable") or {}
    thread_id = configurable.get("thread_id")
    if thread_id is None:
        raise InvalidInputError("a checkpointer config needs configurable.thread_id")
    return thread_id, configurable.get("checkpoint_ns") or ""


def _b64(blob: bytes) -> str:
    return base64.b64encode(blob).decode("ascii")


def _matches(metadata: dict[str, Any], wanted: dict[str, Any]) -> bool:
    return all(metadata.get(key) == value for key, value in wanted.items())


def _prune_marker(thread: _Thread) -> tuple[str, Any] | None:
    keep = [[ns, thread.latest(ns)] for ns in thread.checkpoints]
    if all(len(entries) == 1 for entries in thread.checkpoints.values()):
        return None  # nothing to hide
    return PRUNED_EVENT, {"keep": keep}


def _removal_marker(thread: _Thread, runs: set[str]) -> tuple[str, Any] | None:
    gone = [[ns, cid] for ns, entries in thread.checkpoints.items()
            for cid, stored in entries.items() if stored.metadata.get("run_id") in runs]
    return (REMOVED_EVENT, {"checkpoints": gone}) if gone else None
