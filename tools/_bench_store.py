"""What the benchmark asks of a store: one adapter per column, all with the same methods.

An adapter turns the benchmark's neutral ``Msg`` into the store's own input once,
untimed (``prepare``), so the timed calls measure the store's work only: for eventlog
that is ``add_message`` on a ready ``ChatMessage``, for the floor it is encoding the
line and writing it. An operation a store cannot do raises ``Unsupported`` with the
reason, which the table shows as n/a.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

from _bench_data import SENDERS, Msg

PARTICIPANTS = list(SENDERS[:2])


class Unsupported(Exception):
    """This store has no way to do what the workload asks; the reason goes in the table's notes."""


@dataclass(frozen=True)
class Spec:
    """Everything a process needs to open one column's store: JSON-able, so children get it too."""

    column: str
    kind: str
    location: str
    durable: bool = False
    prefix: str = ""
    """Every session id this store is given starts with it: ``discard`` removes exactly those."""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class Store(ABC):
    """One column of the table, opened in one process."""

    quadratic: ClassVar[bool] = False
    """Each append rewrites the whole session: sample first and last appends and extrapolate."""
    shared: bool = True
    """Other processes see the same data (False: process-local, like ``memory://``)."""
    no_durable: str = ""
    """Why the durable workloads don't apply (empty: they do)."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec

    def prepare(self, sid: str, msgs: Sequence[Msg]) -> list[Any]:
        """Turn messages into this store's own input objects (untimed)."""
        return list(msgs)

    @abstractmethod
    def create(self, sid: str, created_at: float) -> None:
        """Create a session (untimed unless a workload says so)."""

    @abstractmethod
    def append(self, sid: str, item: Any) -> None:
        """Store one prepared message: the timed unit of the append workloads."""

    def fill(self, sid: str, msgs: Sequence[Msg]) -> None:
        """Store many messages quickly, the store's fastest way (untimed set-up)."""
        for item in self.prepare(sid, msgs):
            self.append(sid, item)

    @abstractmethod
    def replay(self, sid: str) -> int:
        """Read the whole session into memory; returns how many records it holds."""

    def stream(self, sid: str) -> int:
        """Read the whole session one record at a time, keeping none; returns the count."""
        raise Unsupported("no streaming read")

    @abstractmethod
    def tail(self, sid: str, limit: int) -> int:
        """The newest ``limit`` messages, decoded; returns how many."""

    def session_info(self, sid: str) -> object:
        """The session's summary (what ``get_session`` gives)."""
        raise Unsupported("no session summary")

    def list_sessions(self) -> int:
        raise Unsupported("no session listing")

    def cleanup(self, days: float) -> int:
        """Remove sessions last active more than ``days`` ago; returns how many."""
        raise Unsupported("no retention")

    @abstractmethod
    def read_back(self, sid: str) -> list[tuple[str, str] | None]:
        """Every stored message as (id, content) in stored order; None for an unreadable one."""

    def problems(self, sid: str) -> list[str]:
        """Damage the store itself can detect (eventlog: ``verify``)."""
        return []

    def discard(self) -> None:  # noqa: B027 - optional: only server-backed stores need it
        """Remove the sessions of ``spec.prefix`` kept outside the run's directory (on a server)."""

    def close(self) -> None:  # noqa: B027 - optional: a store may hold nothing open
        """Release handles; the data stays."""
