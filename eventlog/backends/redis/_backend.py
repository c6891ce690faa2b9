"""The Redis Streams backend (``pip install 'eventlog[redis]'``).

Keys of a session share the hash tag ``{<sid>}`` (the id, ``%`` and ``}`` escaped: ``_tag``), so
on Redis Cluster they live in one slot and every script (``_redis_scripts``) touches one slot only::

    <prefix>{<sid>}:head   hash: seq, h (the head digest), g (this life's generation token),
                           sealed and archived (compaction's marks), b, sb and ab (bytes of
                           its live records, snapshots and archive, for size())
    <prefix>{<sid>}:log    stream: entry 0-<seq> holds field r = the record line (the same
                           bytes as the file backend), and t = the writer's token on the
                           last entry of each append
    <prefix>{<sid>}:snap   hash: seq -> snapshot
    <prefix>{<sid>}:arch   stream of archived records: entry 0-<first seq> holds last (its
                           last seq) and z (the record lines, zlib-compressed: see _chunks)
    <prefix>{<sid>}:log:redacting, :arch:redacting   copies a redaction builds and renames over
                           log and arch (see _redaction)
    <prefix>{<sid>}:tok    hash: seq -> the writer's token, for entries compaction trimmed
    <prefix>{<sid>}:tok0   lately (tok0: the window before), kept while a retry may still come
    <prefix>sessions       set: the registry of session ids, for listing
    <prefix>format         string: the store's record format version (see ``_base``),
                           written with its first session; a prefix with sessions and no
                           marker is a store of version 1 (from before the marker)

The head hash also holds ``c``: the session catalog's entry (``<seq>:<entry>``, derived
data, used only while ``seq`` is the head's; see ``store/_catalog``). The catalog's order
is in the store's sorted sets ``<prefix>{<prefix>catalog}:created`` and ``:activity``
(see ``_catalog``).

Entry ids are ``0-<seq>``, so Redis itself refuses a duplicate or a regression.

Appending is optimistic, because Lua has no SHA-256 to chain records on the server: the
client reads the head (or remembers it from its last append), builds the records, and
one script appends them and moves the head only if the head is still the one they were
built on, with every check done before its first write. When the head moved, the script
answers with the new head, and the lines appended since the client's (a few: the store's
check for an id already stored reads on from them instead of reading the log first), and
the client builds again (bounded, with jitter), unless the caller pinned the head with
``expected_seq``: then it is a ``ConflictError``. (Chaining in the script instead, a SHA-256
in Lua, was measured for issue 16: 110-160 us a 64-byte block with ``bit``, three blocks a
record, so a script of 0.3-0.5 ms holding the whole server, against 36 us for the append
script and 3 us for an ``XADD``.)

Every write carries a random token, and a script that finds its own token already in the
log reports success instead of writing again. So a write whose reply was lost (a dropped
connection, a timeout, a restarted server) can always be sent again: it lands once. That
holds across compaction too: the archive script keeps the tokens of the entries it trims
(``tok``) for twice the longest retry window any writer declared, where the check looks.

Compaction seals the head, then moves sealed records into compressed chunks (in the
``arch`` stream, or a file store given as ``archive=``: see ``_redis_archive``) and trims
them from the log with ``XTRIM MINID``; reading merges both, so nothing is lost to readers.

Durability is the server's: see the README's backends section.

Opening writes nothing to Redis: a store is its key prefix, and a prefix with no keys is an
empty store, so ``create=False`` (see ``_base``) has nothing to refuse there; it reaches only
the cold tier's file store (``archive=``), which must then exist.

Over 500 lines (issue 14): the one class that answers every hook of the ``Backend`` contract
for Redis (the scripts are in ``_scripts``, the archive tiers in ``_archive``, the cluster's
connections in ``_cluster``, following in ``_follow``); what is left is a call or two per hook
with its retries. The catalog hooks are in ``_catalog``.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from typing import Any, TypeVar

import redis
from redis.commands.core import Script

from ...core._codec import FORMAT_VERSIONS, Head, Record, payload_chain, seal_one
from ...core._errors import (
    ConflictError,
    CorruptLogError,
    InvalidInputError,
    LockTimeoutError,
    SessionExistsError,
    SessionNotFoundError,
    StorageError,
)
from ...core._validate import check_seconds
from .._base import (
    SNAPSHOT_SPACING,
    SNAPSHOTS_KEPT,
    Appended,
    Archived,
    Build,
    Guard,
    Refold,
    Replacement,
    Sealed,
    Unique,
)
from .._rows import RowBackend, Rows
from . import _bulk, _cluster, _follow
from . import _scripts as scripts
from ._archive import FileArchive, StreamArchive
from ._catalog import Catalog
from ._redaction import redact_redis

T = TypeVar("T")
DEFAULT_PREFIX = "eventlog:"
_HEADS_CACHED = 10_000
_ARCHIVE_BATCH = 4096  # records archived per script, so appenders wait little

# A dropped connection, a timeout, a server loading its data after a restart, or a replica
# not yet promoted after a failover: worth sending again (every write is idempotent).
_TRANSIENT = (redis.ConnectionError, redis.TimeoutError, redis.exceptions.ReadOnlyError,
              redis.exceptions.TryAgainError, redis.exceptions.ClusterDownError,
              redis.exceptions.MovedError, redis.exceptions.AskError,
              redis.exceptions.SlotNotCoveredError)
_FATAL = (redis.AuthenticationError, redis.exceptions.AuthorizationError)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _first_key(command: tuple[str, tuple[Any, ...]]) -> str:
    name, args = command
    return str(next(iter(args[0])) if name == "xread" else args[0])


def _seq_of(entry_id: Any) -> int:
    return int(_text(entry_id).partition("-")[2])



def _tag(session_id: str) -> str:
    """The session's hash tag. Redis Cluster hashes the text between a key's first ``{`` and
    the next ``}``: an id holding ``}`` would cut the tag short, and one starting with it
    gives an empty tag, which spreads the session's keys over slots. So ``%`` and ``}`` are
    escaped (``%25``, ``%7D``); other ids are their own tag. The two kinds can't meet (only
    escaped tags hold ``%``), so no two ids share keys."""
    if "}" not in session_id and "%" not in session_id:
        return session_id
    return session_id.replace("%", "%25").replace("}", "%7D")


class RedisBackend(RowBackend):
    """Sessions in Redis Streams; safe across threads, processes, machines and ``fork()``.

    ``client`` (instead of ``url``) uses a redis-py client you built, for example
    Sentinel's ``master_for``; build it with ``retry=Retry(NoBackoff(), 0)`` so that only
    this backend's retry rules apply. The backend closes only a client it built itself.

    ``cluster=True`` (the URL scheme ``redis+cluster://``) talks to a Redis Cluster through
    redis-py's ``RedisCluster``; ``replicas`` (default 1 on a cluster, 0 elsewhere) is how
    many replicas must hold an append or a create before it is acknowledged (see
    ``_cluster``).
    """

    # Over 300 lines (issue 14): one method per ``Backend``/``RowBackend`` hook, each a script
    # call or a transaction through the one retry helper (``_run``) they share; the Lua
    # scripts are in ``_scripts`` and the archive tiers in ``_archive``. The next addition
    # should split it (say, reads apart from writes): the module is at its 500 lines.

    source = "redis"
    exclusive_build = False  # appends are optimistic: build may run again on a newer head

    def __init__(  # noqa: PLR0913 - keyword-only options, each named as eventlog.open takes it
            self, url: str = "redis://127.0.0.1:6379/0", *, prefix: str = DEFAULT_PREFIX,
            ttl: float | None = None, lock_timeout: float = 10.0, retry_for: float = 5.0,
            archive: str | os.PathLike[str] | None = None, client: redis.Redis | None = None,
            create: bool = True, cluster: bool = False, replicas: int | None = None,
            **redis_options: Any) -> None:
        if "{" in prefix or "}" in prefix:
            raise InvalidInputError(f"Redis key prefix {prefix!r} must not contain '{{' or '}}' "
                                    "(they would move every session into one cluster slot)")
        self.prefix = prefix
        self.ttl_ms = 0 if ttl is None else max(1, round(check_seconds("ttl", ttl, positive=True) * 1000))
        self.lock_timeout = check_seconds("lock_timeout", lock_timeout)
        self.retry_for = check_seconds("retry_for", retry_for)
        # How long after an append's first send its last retry may still run (the retry
        # loop's deadline, its longest sleep, and a margin for the network): the archive
        # script keeps trimmed entries' tokens this long (see _redis_scripts.APPEND).
        self._retry_window_ms = round((self.retry_for + 1.5) * 1000)
        if replicas is not None and (type(replicas) is not int or not 0 <= replicas <= 100):
            raise InvalidInputError(f"replicas must be an int from 0 to 100, not {replicas!r}")
        self._owns_client = client is None
        if client is None:
            client, self.where = _cluster.connect(url, cluster=cluster, options=redis_options)
        else:
            self.where = _cluster.where(client)
        self.client: redis.Redis = client
        self.cluster = _cluster.is_cluster(client)
        self.replicas = (1 if self.cluster else 0) if replicas is None else replicas
        self._create = client.register_script(scripts.CREATE)
        self._append = client.register_script(scripts.APPEND)
        self._delete = client.register_script(scripts.DELETE)
        self._snapshot = client.register_script(scripts.SNAPSHOT)
        self._seal = client.register_script(scripts.SEAL)
        self._archive = client.register_script(scripts.ARCHIVE)
        self._catalog = client.register_script(scripts.CATALOG)
        self._redact = client.register_script(scripts.REDACT)
        self._redact_copy = client.register_script(scripts.REDACT_COPY)
        self._fill = client.register_script(scripts.FILL)
        self._create_log = client.register_script(scripts.CREATE_LOG)
        self.catalog = Catalog(self)
        # Opening writes nothing to Redis, so ``create`` only reaches the cold tier's file
        # store; a key prefix with no keys is an empty store (Redis can't tell it from none).
        self.cold: StreamArchive | FileArchive = (StreamArchive(self) if archive is None
                                                  else FileArchive(archive, create=create))
        self._heads: dict[str, Head] = {}  # last head seen per session: a hint, checked by the script
        # Per append in flight (by its token): the head a conflict moved it to and the lines
        # up to there (see append_one).
        self._caught: dict[str, tuple[Head, list[bytes]]] = {}
        self._waitaof: bool | None = None
        self._run("connecting", client.ping)
        self._marked = self._read_version()
        if isinstance(self.cold, FileArchive):
            # The cold tier holds this store's own record lines: they chain by its version.
            self.cold.files.record_version = self.record_version

    def _read_version(self) -> bool:
        """Set ``record_version`` from the store's marker; return whether the marker exists.
        Without one, a prefix that holds sessions is of version 1 (written before markers),
        and an empty one is new: the marker is written with its first session."""
        found = self._run("opening", lambda: self.client.get(self._marker))
        if found is None:
            if self._run("opening", lambda: self.client.exists(self._registry)):
                self.record_version = 1
            return False
        try:
            version = int(found)
        except ValueError:
            version = -1
        if version not in FORMAT_VERSIONS:
            raise StorageError(f"{self.where}: {self._marker}: store format version {found!r} is "
                               f"not supported (this eventlog reads "
                               f"{', '.join(map(str, FORMAT_VERSIONS))})")
        self.record_version = version
        return True

    def _mark(self, what: str) -> None:
        """Write the version marker if nobody has; refuse to write beside a store that
        another process marked with another version meanwhile."""
        mine = str(self.record_version)
        self._run(what, lambda: self.client.set(self._marker, mine, nx=True))
        found = self._run(what, lambda: self.client.get(self._marker))
        if found is None or (found.decode() if isinstance(found, bytes) else found) != mine:
            raise StorageError(f"{self.where}: {what}: the store's format version is "
                               f"{found!r}, but this process opened it as {mine}: open it again")
        self._marked = True

    @property
    def _marker(self) -> str:
        return self.prefix + "format"

    # Keys and the error edge ----------------------------------------------------------------

    def keys(self, session_id: str) -> list[str]:
        """The session's keys: head, log, snap, arch, tok, tok0, and the copies of log and
        arch a redaction builds (gone once it ends; listed so that delete removes those a
        dead redaction left)."""
        base = f"{self.prefix}{{{_tag(session_id)}}}:"
        return [base + "head", base + "log", base + "snap", base + "arch", base + "tok", base + "tok0",
                base + "log:redacting", base + "arch:redacting"]

    @property
    def _registry(self) -> str:
        return self.prefix + "sessions"

    def _run(self, what: str, call: Callable[[], T]) -> T:
        """Run ``call``, sending it again on transient failures for up to ``retry_for``
        seconds; translate redis-py's errors, once, here."""
        deadline = time.monotonic() + self.retry_for
        delay = 0.01
        while True:
            try:
                return call()
            except _FATAL as exc:
                raise StorageError(f"{self.where}: {what}: {exc}") from exc
            except _TRANSIENT as exc:
                if time.monotonic() + delay > deadline:
                    raise StorageError(
                        f"{self.where}: {what}: {exc} (still failing after {self.retry_for:g} s)"
                    ) from exc
                time.sleep(delay * random.uniform(0.5, 1.0))
                delay = min(delay * 2, 0.5)
            except redis.exceptions.OutOfMemoryError as exc:
                raise StorageError(f"{self.where}: {what}: the server is out of memory "
                                   f"(maxmemory), nothing was written: {exc}") from exc
            except redis.RedisError as exc:
                raise StorageError(f"{self.where}: {what}: {exc}") from exc

    def _remember(self, session_id: str, head: Head) -> None:
        heads = self._heads
        if len(heads) >= _HEADS_CACHED and session_id not in heads:
            heads.pop(next(iter(heads)), None)
        heads[session_id] = head

    def _write(self, script: Script, keys: list[str], args: list[Any],
               written: Callable[[Any], bool]) -> Any:
        """Run a write script; with ``replicas``, acknowledged once that many replicas hold
        it (``written(reply)`` tells whether the reply acknowledges a write)."""
        if not self.replicas:
            return script(keys=keys, args=args)
        return _cluster.replicated(self.client, script, keys, args, self.replicas, written)

    def _sync(self, what: str, session_id: str) -> None:
        """Wait until the server has fsynced its AOF, where the server can tell us (WAITAOF,
        Redis 7.2+ with appendonly yes); elsewhere durability is the server's setting. On a
        cluster, the server is the node that holds the session's slot."""
        node = _cluster.node_client(self.client, self.keys(session_id)[0])
        if self._waitaof is None:
            info = self._run(what, lambda: node.info())
            version = tuple(int(p) for p in str(info.get("redis_version", "0")).split(".")[:2])
            self._waitaof = version >= (7, 2) and bool(info.get("aof_enabled"))
        if self._waitaof:
            local, _replicas = self._run(what, lambda: node.waitaof(1, 0, 10_000))
            if local < 1:
                raise StorageError(f"{self.where}: {what}: written, but the server did not "
                                   "fsync its append-only file within 10 s")

    # Writing --------------------------------------------------------------------------------

    def create(self, session_id: str, record: Record, *, durable: bool) -> None:
        what = f"creating session {session_id!r}"
        if not self._marked:
            self._mark(what)
        token = os.urandom(8).hex()
        # Registered before it exists, so a crash in between leaves only a stale id (listing
        # skips ids without a head), and again after, in case a delete of an earlier life
        # unregistered it meanwhile (see _unregister).
        self.catalog.before_change(what)
        self._run(what, lambda: self.client.sadd(self._registry, session_id))
        created = self._run(what, lambda: self._write(
            self._create, self.keys(session_id), [token, record.line, record.digest, self.ttl_ms],
            bool))
        if not created:
            self.catalog.deleted(what, [], counted=True)
            raise SessionExistsError(session_id)
        self._run(what, lambda: self.client.sadd(self._registry, session_id))
        self.catalog.created_one(what, session_id, record)
        self._remember(session_id, Head(record.seq, record.digest))
        if durable:
            self._sync(what, session_id)

    def create_log(self, session_id: str, batches: Iterable[list[Record]], *,
                   durable: bool) -> dict[str, Any] | None:
        return _bulk.create_log(self, session_id, batches, durable)

    def append(self, session_id: str, build: Build, *, durable: bool, rebuild: bool = True) -> Appended:
        return self._append_built(session_id, build, durable, rebuild, os.urandom(8).hex())

    def append_one(  # noqa: PLR0913 - Backend.append_one's parameters
            self, session_id: str, payload: bytes, max_bytes: int, expected_seq: int | None,
            durable: bool, guard: Guard | None = None, checked: Head | None = None,
            unique: Unique | None = None) -> tuple[Head, Head, dict[str, Any] | None]:
        """``Backend.append_one``, its guard handed the lines a moved head's answer carried
        (see ``_scripts.APPEND``): rebuilding on a moved head then reads nothing first."""
        after: list[Head] = []
        token = os.urandom(8).hex()
        version = self.record_version
        chain = None if version == 1 else payload_chain(payload)  # once, however often built

        def build(head: Head) -> list[Record]:
            if guard is not None and head != checked:
                caught = self._caught.get(token)
                if caught is not None and caught[0] == head:
                    lines = caught[1]
                    guard(head, lambda _where: (lines, None))
                else:
                    guard(head, None)
            if expected_seq is not None and head.seq != expected_seq:
                raise ConflictError(session_id, expected_seq, head.seq)
            record = seal_one(payload, head, max_bytes, version, chain)
            after[:] = [head]  # built again on a moved head: the last call is written
            return [record]

        try:
            result = self._append_built(session_id, build, durable, expected_seq is None, token)
        finally:
            self._caught.pop(token, None)
        record = result.records[0]
        return Head(record.seq, record.digest), after[0], None

    def _append_built(self, session_id: str, build: Build, durable: bool, rebuild: bool,
                      token: str) -> Appended:
        head = self._heads.get(session_id)
        fresh = head is None  # a remembered head is only a guess until a script confirms it
        if head is None:
            head = self.read_head(session_id)[1]
        deadline = time.monotonic() + self.lock_timeout
        attempts = 0
        while True:
            try:
                records = build(head)
            except ConflictError:
                if fresh:
                    raise
                head, fresh = self.read_head(session_id)[1], True
                continue
            if not records:
                return Appended([])
            moved = self._send_append(session_id, token, head, records)
            if moved is None:
                if durable:
                    self._sync(f"appending to session {session_id!r}", session_id)
                return Appended(records)
            if not rebuild and fresh:
                raise ConflictError(session_id, head.seq, moved.seq)
            attempts += 1
            if time.monotonic() > deadline:
                raise LockTimeoutError(
                    f"session {session_id!r}: could not append within {self.lock_timeout:g} s: "
                    f"other writers moved the head first {attempts} times")
            if fresh:  # a real race, not a stale guess: back off, with jitter
                time.sleep(random.uniform(0, min(0.05, 0.0005 * 2 ** min(attempts, 10))))
            head, fresh = moved, True

    def _send_append(self, session_id: str, token: str, head: Head, records: list[Record]) -> Head | None:
        """Run the append script; None once the records are in, else the head that moved."""
        keys = self.keys(session_id)
        args: list[bytes | str | int] = [head.seq, head.digest, token, self.ttl_ms,
                                         records[-1].digest, self._retry_window_ms,
                                         *(r.line for r in records)]
        try:
            reply = self._run(f"appending to session {session_id!r}",
                              lambda: self._write(self._append, keys, args,
                                                  lambda reply: int(reply[0]) in (0, 3)))
        except StorageError as exc:
            if not isinstance(exc.__cause__, _TRANSIENT):
                raise
            # The script may have run with its reply lost, and we could not ask again.
            raise StorageError(f"{exc}; the append may or may not have been stored: the events "
                               f"after seq {head.seq} show which (to retry it at most once, "
                               f"append with expected_seq={head.seq})") from exc.__cause__
        status = int(reply[0])
        if status in (0, 3):
            self._remember(session_id, Head(records[-1].seq, records[-1].digest))
            if status == 3 or int(reply[1]):  # (3: our first send may have marked it)
                self.catalog.touched(session_id)
            return None
        if status == 2:
            self._heads.pop(session_id, None)
            raise SessionNotFoundError(session_id)
        if status == 4:
            raise CorruptLogError(f"session {session_id!r}: the head says seq {head.seq} but the "
                                  f"log ends at entry {_text(reply[1])}; refusing to append",
                                  session_id=session_id, where="redis")
        moved = Head(int(reply[1]), _text(reply[2]))
        self._remember(session_id, moved)
        if len(reply) > 3:  # the lines after our base up to the moved head, for the rebuild
            self._caught[token] = (moved, list(reply[3:]))
        return moved

    def delete(self, session_id: str, *, if_head: Head | None = None) -> bool:
        what = f"deleting session {session_id!r}"
        args: list[str | int] = ["", ""] if if_head is None else [if_head.seq, if_head.digest]
        sent = 0

        def send() -> Any:
            nonlocal sent
            sent += 1
            return self._delete(keys=self.keys(session_id), args=args)

        self.catalog.before_change(what)
        status = int(self._run(what, send))
        if status == 2:
            self.catalog.deleted(what, [], counted=True)
            return False
        self._heads.pop(session_id, None)
        if status == 0 and sent == 1:  # sent more than once: the first may have deleted it
            self.catalog.deleted(what, [], counted=True)
            raise SessionNotFoundError(session_id)
        self._unregister(what, [session_id])
        self.catalog.deleted(what, [session_id], counted=True)
        self.cold.delete(session_id)
        return True

    def _unregister(self, what: str, session_ids: list[str]) -> None:
        """Remove ids from the registry, then put back any that exist: a create of the same
        id may have registered it just before we removed it (create registers again after
        its script, and this re-check comes after the removal, so one of them sees it)."""
        self._run(what, lambda: self.client.srem(self._registry, *session_ids))
        heads = [self.keys(sid)[0] for sid in session_ids]
        alive = self._run(what, lambda: self._pipeline(False, [("exists", (h,)) for h in heads]))
        back = [sid for sid, found in zip(session_ids, alive, strict=True) if found]
        if back:
            self._run(what, lambda: self.client.sadd(self._registry, *back))

    def save_snapshot(self, session_id: str, seq: int, blob: bytes, *, durable: bool) -> None:
        what = f"saving a snapshot of {session_id!r}"
        keys = self.keys(session_id)
        if not self._run(what, lambda: self._snapshot(keys=[keys[0], keys[2]],
                                                      args=[seq, blob, SNAPSHOTS_KEPT, SNAPSHOT_SPACING])):
            raise SessionNotFoundError(session_id)
        if durable:
            self._sync(what, session_id)

    def catalog_read(self, prefix: str) -> list[tuple[str, bytes | None]]:
        return self.catalog.read(prefix)

    def catalog_reset(self) -> None:
        self.catalog.reset()

    def catalog_write(self, entries: list[tuple[str, Head, bytes]],
                      keys: list[tuple[float, float]] | None = None) -> None:
        self.catalog.write(entries, keys)

    def catalog_walk(self, order: str, descending: bool, start: float | None,
                     refold: Refold) -> Iterator[tuple[str, bytes | None]] | None:
        return self.catalog.walk(order, descending, start, refold)

    def catalog_wants_rebuild(self, *, listed: int | None = None) -> bool:
        return self.catalog.wants_rebuild(listed)

    def catalog_rebuild(self, entries: list[tuple[str, Head, bytes, tuple[float, float]]]) -> None:
        self.catalog.rebuild(entries)

    # Reading --------------------------------------------------------------------------------

    def _pipeline(self, transaction: bool, commands: list[tuple[str, tuple[Any, ...]]]) -> list[Any]:
        def fill(pipe: Any) -> None:
            for name, args in commands:
                getattr(pipe, name)(*args)

        if transaction and self.cluster:  # one session's keys: one node (see _cluster.on_node)
            return _cluster.on_node(self.client, _first_key(commands[0]), True, fill)
        pipe = self.client.pipeline(transaction=transaction)
        fill(pipe)
        return pipe.execute()

    def redact(self, session_id: str, replacements: list[Replacement], *, durable: bool) -> None:
        redact_redis(self, session_id, replacements, durable)

    def transaction(self, what: str, commands: list[tuple[str, tuple[Any, ...]]]) -> list[Any]:
        """Commands run as one MULTI/EXEC (all on one session's keys), with the retry rules."""
        return self._run(what, partial(self._pipeline, True, commands))

    def read_head(self, session_id: str) -> tuple[Any, Head]:
        head_key = self.keys(session_id)[0]
        seq, digest, generation = self._run(f"reading session {session_id!r}",
                                            lambda: self.client.hmget(head_key, ["seq", "h", "g"]))
        if seq is None:
            raise SessionNotFoundError(session_id)
        return generation, Head(int(seq), _text(digest))

    def read_rows(self, session_id: str, generation: Any, first: int, last: int | None,
                  limit: int, *, newest_first: bool = False) -> Rows:
        head_key, log_key = self.keys(session_id)[:2]
        low, high = f"0-{first}", "+" if last is None else f"0-{last}"
        # One more than asked: the log keeps the head's entry even once it is archived.
        read = ("xrevrange", (log_key, high, low, limit + 1)) if newest_first else (
            "xrange", (log_key, low, high, limit + 1))
        # One transaction, so the rows, the archive mark and the generation agree.
        found, entries = self._run(f"reading session {session_id!r}", lambda: self._pipeline(
            True, [("hmget", (head_key, ["g", "archived"])), read]))
        if found[0] != generation:
            return []
        archived = int(found[1] or 0)
        live = [(seq, fields[b"r"]) for seq, fields in ((_seq_of(i), f) for i, f in entries)
                if seq > archived]
        if first > archived:
            return live[:limit]
        upper = archived if last is None else min(last, archived)
        if newest_first:
            rows = live[:limit]
            return rows + self.cold.rows(session_id, generation, first, upper, limit - len(rows),
                                         newest_first=True)
        rows = self.cold.rows(session_id, generation, first, upper, limit, newest_first=False)
        return rows + live[:limit - len(rows)]

    def exists(self, session_id: str) -> bool:
        key = self.keys(session_id)[0]
        return bool(self._run(f"reading session {session_id!r}", lambda: self.client.exists(key)))

    def session_ids(self) -> list[str]:
        what = "listing sessions"
        ids = sorted(_text(m) for m in self._run(what, lambda: self.client.smembers(self._registry)))
        if not ids:
            return []
        alive = self._run(what, lambda: self._pipeline(
            False, [("exists", (self.keys(sid)[0],)) for sid in ids]))
        gone = [sid for sid, found in zip(ids, alive, strict=True) if not found]
        if gone:  # expired (ttl) or half created by a process that died: tidy the registry
            self._unregister(what, gone)
        return [sid for sid, found in zip(ids, alive, strict=True) if found]

    def snapshots(self, session_id: str) -> Iterator[bytes]:
        head_key, _log, snap_key = self.keys(session_id)[:3]
        found, blobs = self._run(f"reading snapshots of {session_id!r}", lambda: self._pipeline(
            True, [("exists", (head_key,)), ("hgetall", (snap_key,))]))
        if not found:
            raise SessionNotFoundError(session_id)
        return iter([blobs[seq] for seq in sorted(blobs, key=int, reverse=True)])

    def size(self, session_id: str) -> int:
        """Bytes of the session's records and snapshots, from counters its scripts keep (Redis's
        own MEMORY USAGE moves in steps of whole listpack nodes, not with what was written)."""
        head_key = self.keys(session_id)[0]
        found = self._run(f"sizing session {session_id!r}",
                          lambda: self.client.hmget(head_key, ["b", "sb", "ab"]))
        if found[0] is None:
            raise SessionNotFoundError(session_id)
        return sum(int(value or 0) for value in found) + self.cold.size(session_id)

    def wait(self, session_id: str, after_seq: int, timeout: float | None, *,
             incarnation: object = None) -> bool:
        return _follow.wait(self, session_id, after_seq, timeout, incarnation)

    def check(self, session_id: str) -> list[str]:
        problems = super().check(session_id)
        listed = self._run(f"checking session {session_id!r}",
                           lambda: self.client.sismember(self._registry, session_id))
        if not listed:
            problems.append(f"session {session_id!r}: missing from the registry "
                            f"{self._registry!r}, so list_sessions() leaves it out")
        return problems

    # Compaction -----------------------------------------------------------------------------

    def seal(self, session_id: str, *, durable: bool) -> Sealed:
        """Mark everything up to the head as sealed: ``archive`` moves up to there."""
        head_key = self.keys(session_id)[0]
        what = f"sealing session {session_id!r}"
        found = self._run(what, lambda: self._seal(keys=[head_key]))
        if not found:
            raise SessionNotFoundError(session_id)
        if durable:
            self._sync(what, session_id)
        return Sealed(Head(int(found[0]), _text(found[1])))

    def archive(self, session_id: str) -> Archived:
        """Move sealed records from the log into the archive tier, then ``XTRIM MINID`` them.
        Each step is one script, so a reader sees a record in the log or in the archive,
        never in neither."""
        head_key, log_key, _snap, arch_key, tok_key, tok0_key = self.keys(session_id)[:6]
        what = f"archiving session {session_id!r}"
        chunks = before = after = 0
        while True:
            generation, sealed, archived = self._run(what, lambda: self.client.hmget(
                head_key, ["g", "sealed", "archived"]))
            if generation is None:
                raise SessionNotFoundError(session_id)
            done = int(archived or 0)
            upto = min(int(sealed or 0), done + _ARCHIVE_BATCH)
            if done >= upto:
                return Archived(chunks, before, after)
            rows = self.read_rows(session_id, generation, done + 1, upto, upto - done)
            if not rows or rows[0][0] != done + 1 or rows[-1][0] != upto:
                raise CorruptLogError(f"session {session_id!r}: sealed records after seq {done} "
                                      "are missing", session_id=session_id, seq=done + 1,
                                      where="redis")
            cold_before = self.cold.size(session_id)
            packed = self.cold.store(session_id, rows)  # a file tier is written (durably) here
            raw = sum(len(line) + 1 for _seq, line in rows)
            args: list[Any] = [generation, done, upto, raw]
            for low, high, blob in packed:
                args += [low, high, blob]
            status = self._run(what, partial(self._archive, args=args,
                                             keys=[head_key, log_key, arch_key, tok_key, tok0_key]))
            if status == 0:
                raise SessionNotFoundError(session_id)
            if status == 1:
                chunks += max(len(packed), 1)
                before += raw
                after += (sum(len(blob) for _low, _high, blob in packed)
                          + self.cold.size(session_id) - cold_before)

    def close(self) -> None:
        if self._owns_client:
            self.client.close()
