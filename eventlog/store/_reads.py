"""Reading events off a backend, each checked against the digest chain: forward from a seq
(or a kept position), and backward from the newest, each event vouched for by the one before
it. The store's readers (folds, verify, follow, the tail) all read through these."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..backends._base import Backend, Scan
from ..core._codec import ChainReader, Unparseable, genesis, link, looks_like_record, parse, to_event
from ..core._errors import CorruptLogError
from ..core._records import Event


def read(chain: ChainReader, scan: Scan) -> Iterator[Event]:
    return chain.read(scan.lines) if scan.chunks is None else chain.read_chunks(scan.chunks)


def scan_events(backend: Backend, sid: str, after_seq: int,
                position: dict[str, Any] | None = None) -> tuple[ChainReader, Iterator[Event], Any]:
    """The events after ``after_seq`` (the scan may start earlier), the chain that checks
    them, and the scan's ``position`` callable."""
    scan = backend.scan(sid, after_seq, position)
    chain = ChainReader(sid, scan.start, backend.record_version)
    return chain, read(chain, scan), scan.position


def events_after(backend: Backend, sid: str, after_seq: int) -> Iterator[Event]:
    """Every event after ``after_seq``, in order, each checked against the digest chain."""
    scan = backend.scan(sid, after_seq, None)
    events = read(ChainReader(sid, scan.start, backend.record_version), scan)
    return events if scan.start.seq >= after_seq else _skip_to(events, after_seq)


def _skip_to(events: Iterator[Event], after_seq: int) -> Iterator[Event]:
    for event in events:
        if event.seq > after_seq:
            yield event
            yield from events
            return


def events_backward(backend: Backend, sid: str) -> Iterator[Event]:
    """Events from the newest back, each checked against the one before it.

    An event is yielded only once its predecessor has vouched for it (or it is seq 1),
    so a damaged record is never returned even on this fast path.
    """
    version = backend.record_version
    newer: tuple[dict[str, Any], bytes, str] | None = None
    torn = True
    for source, lineno, line in backend.scan_back(sid):
        try:
            obj, body, digest = parse(line)
        except Unparseable:
            if torn and not looks_like_record(line):
                continue  # a torn tail: writers will quarantine it
            raise CorruptLogError(f"session {sid!r}, {source} byte {-lineno}: unreadable "
                                  "record before readable ones", session_id=sid,
                                  where=source) from None
        torn = False
        if newer is not None:
            n_obj, n_body, n_digest = newer
            if n_obj["seq"] != obj["seq"] + 1 or link(digest, n_body, version) != n_digest:
                raise CorruptLogError(
                    f"session {sid!r}, {source}: seq {n_obj['seq']} does not follow seq "
                    f"{obj['seq']} in the digest chain", session_id=sid, seq=n_obj["seq"],
                    where=source)
            yield to_event(n_obj)
        newer = (obj, body, digest)
    if newer is None:
        return
    n_obj, n_body, n_digest = newer
    if n_obj["seq"] != 1 or link(genesis(sid).digest, n_body, version) != n_digest:
        raise CorruptLogError(f"session {sid!r}: the log does not start at seq 1 "
                              f"(oldest readable record is seq {n_obj['seq']})",
                              session_id=sid, seq=n_obj["seq"])
    yield to_event(n_obj)

