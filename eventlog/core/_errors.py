"""The one error tree. Every error eventlog raises is an ``EventLogError``.

Standard bases are mixed in where they fit, so callers can catch what they
already know (``KeyError`` for a missing session, ``ValueError`` for bad input,
``TimeoutError`` for a lock that could not be had, ``OSError`` for the disk).
"""

from __future__ import annotations


class EventLogError(Exception):
    """Base of every error raised by eventlog."""


class SessionNotFoundError(EventLogError, KeyError):
    """The session does not exist (never created, or deleted)."""

    def __init__(self, session_id: str) -> None:
        super().__init__(session_id)
        self.session_id = session_id

    def __str__(self) -> str:
        # KeyError.__str__ would repr() the argument; keep the message readable.
        return f"session {self.session_id!r} does not exist"

    def __reduce__(self) -> tuple[type[SessionNotFoundError], tuple[str]]:
        return (type(self), (self.session_id,))


class SessionExistsError(EventLogError):
    """``create_session`` was given an id that already exists."""

    def __init__(self, session_id: str) -> None:
        super().__init__(f"session {session_id!r} already exists")
        self.session_id = session_id

    def __reduce__(self) -> tuple[type[SessionExistsError], tuple[str]]:
        return (type(self), (self.session_id,))


class InvalidInputError(EventLogError, ValueError):
    """Bad input: a session id, an event type, event data or a message field."""


class InvalidSessionIdError(InvalidInputError):
    """A session id outside the allow-list."""


class InvalidEventError(InvalidInputError):
    """An event type, event data or message the store refuses to write."""


class EventTooLargeError(InvalidEventError):
    """An encoded event over the store's size limit."""


class ConflictError(EventLogError):
    """``expected_seq`` did not match the session's last seq; nothing was written."""

    def __init__(self, session_id: str, expected_seq: int, actual_seq: int) -> None:
        super().__init__(
            f"session {session_id!r}: expected last seq {expected_seq}, but it is {actual_seq}"
        )
        self.session_id = session_id
        self.expected_seq = expected_seq
        self.actual_seq = actual_seq

    def __reduce__(self) -> tuple[type[ConflictError], tuple[str, int, int]]:
        return (type(self), (self.session_id, self.expected_seq, self.actual_seq))


class SeqOutOfRangeError(InvalidInputError):
    """A seq given to ``fork`` or ``rewind`` outside the session's 1..last seq."""

    def __init__(self, session_id: str, name: str, seq: object, last_seq: int) -> None:
        super().__init__(f"session {session_id!r}: {name} must be an int in 1..{last_seq}, "
                         f"not {seq!r}")
        self.session_id = session_id
        self.seq = seq
        self.last_seq = last_seq
        self.name = name

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.session_id, self.name, self.seq, self.last_seq))


class DuplicateMessageError(ConflictError):
    """A message (or a batch) reuses the id of a stored message with other contents, or a
    batch mixes stored and new ids; nothing was written. ``message_ids`` names them."""

    def __init__(self, session_id: str, message_ids: list[str], why: str) -> None:
        EventLogError.__init__(self, f"session {session_id!r}: message id(s) "
                                     f"{', '.join(map(repr, message_ids))} {why}")
        self.session_id = session_id
        self.message_ids = list(message_ids)
        self.why = why
        self.expected_seq = None  # type: ignore[assignment]
        self.actual_seq = None  # type: ignore[assignment]

    def __reduce__(self) -> tuple[object, ...]:  # type: ignore[override]
        return (type(self), (self.session_id, self.message_ids, self.why))


class LockTimeoutError(EventLogError, TimeoutError):
    """A session's lock (or a backend's equivalent) could not be had in time."""


class CorruptLogError(EventLogError):
    """A stored log is damaged: a bad digest, a gap in seq, an unreadable record."""

    def __init__(self, message: str, *, session_id: str = "", seq: int | None = None,
                 where: str = "") -> None:
        super().__init__(message)
        self.session_id = session_id
        self.seq = seq
        self.where = where

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_corrupt, (str(self), self.session_id, self.seq, self.where))


def _rebuild_corrupt(message: str, session_id: str, seq: int | None, where: str) -> CorruptLogError:
    return CorruptLogError(message, session_id=session_id, seq=seq, where=where)


class StorageError(EventLogError, OSError):
    """The storage below failed (disk full, I/O error, a broken connection).

    The write it interrupted was undone; nothing acknowledged was lost.
    """


class SessionPoisonedError(StorageError):
    """An fsync failed earlier for this session, so this handle refuses to write to it.

    After a failed fsync the kernel may have dropped the dirty pages, and a later
    fsync can report success without the data ever reaching the disk, so carrying
    on would acknowledge writes that are not durable. Reopen the store to retry.
    """


class StoreNotFoundError(EventLogError, FileNotFoundError):
    """No store at the location given to ``eventlog.open(..., create=False)``: nothing there,
    or something that is not an eventlog store. Nothing was created."""

    def __init__(self, location: str, reason: str = "nothing there") -> None:
        super().__init__(f"no eventlog store at {location}: {reason}")
        self.location = location
        self.reason = reason

    def __reduce__(self) -> tuple[type[StoreNotFoundError], tuple[str, str]]:
        return (type(self), (self.location, self.reason))


class StoreClosedError(EventLogError):
    """The store was closed."""
