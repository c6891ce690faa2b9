"""``EventLog.verify``: every session's digests, seq continuity, the backend's own structure
checks and each snapshot against the fold of the events it covers; damage is reported,
never raised. Against a checkpoint's heads, each session whose log no longer extends its
head, and each one deleted since, is reported too (see ``_checkpoints``); the redactions
are checked against their tombstones (see ``_redaction.RedactionAudit``)."""

from __future__ import annotations

from collections.abc import Callable

from ..core._codec import genesis
from ..core._errors import CorruptLogError, SessionNotFoundError
from ..core._records import Event, VerifyReport
from ._checkpoints import HeadProbe, deleted
from ._folding import Folding
from ._reads import scan_events
from ._recorded import recorded_before, recorded_problems
from ._redaction import RedactionAudit
from ._state import FORKED, REWOUND, ErasureProof, SessionState, decode_snapshot


def verify(folding: Folding, session_id: str | None,
           check_fork: Callable[[str, Event], list[str]],
           folded: dict[str, SessionState] | None = None,
           heads: dict[str, tuple[int, str]] | None = None) -> VerifyReport:
    """One session (its id checked), or every session when None. ``check_fork(sid, event)``:
    the problems of a ``session.forked`` event (see ``_history.verify_fork``). ``folded``,
    if given, receives the whole log's fold of each session found sound (what the session
    catalog must say: see ``_catalog.compare``). ``heads``: a checkpoint's heads of the
    sessions asked about (``_checkpoints.wanted``), or None."""
    backend = folding.backend
    if session_id is None:
        ids = backend.session_ids()
    else:
        ids = [session_id]
        # A session the store lists but can't find the head of (a file store's session
        # directory without its lock file) is damage to report, not a missing session:
        # listing it as damaged in one place and ok in another gave two answers.
        if not backend.exists(session_id) and session_id not in backend.session_ids():
            if heads:  # gone since the checkpoint: that is what the caller asks about
                return VerifyReport(0, deleted(heads, []), 0)
            raise SessionNotFoundError(session_id)
    problems: list[str] = [] if heads is None else deleted(heads, ids)
    checked = 0
    for sid in ids:
        count, found, state = _verify_one(folding, sid, check_fork,
                                          None if heads is None else heads.get(sid))
        checked += count
        problems.extend(found)
        if folded is not None and not found:
            folded[sid] = state
    return VerifyReport(events_checked=checked, problems=problems, sessions_checked=len(ids))


def _verify_one(folding: Folding, sid: str, check_fork: Callable[[str, Event], list[str]],
                head: tuple[int, str] | None) -> tuple[int, list[str], SessionState]:
    backend = folding.backend
    problems = list(backend.check(sid))
    state = SessionState(sid, genesis(sid))
    folds: dict[int, SessionState] = {}
    snaps = []
    for blob in backend.snapshots(sid):
        try:
            snaps.append(decode_snapshot(sid, blob)[0])
        except CorruptLogError as exc:
            problems.append(str(exc))
    wanted = {s.head.seq for s in snaps}
    count = 0
    recorded = recorded_before(backend, sid)  # before the log: see _recorded
    audit = RedactionAudit(sid)
    probe = HeadProbe(sid, head)
    try:
        chain, events, _ = scan_events(backend, sid, 0)
        proof = ErasureProof(0)
        for event in events:
            if event.type == REWOUND:
                # The state at to_seq: the fold kept at that seq if any, else a read.
                state = folding.rewound(sid, state, event)
            else:
                proof.apply(state, event)
                if event.type == FORKED:
                    problems.extend(check_fork(sid, event))
            audit.see(event)
            count += 1
            probe.see(event.seq, chain.digest)
            if event.seq in wanted:
                state.head = chain.head
                folds[event.seq] = state.copy()
        state.head = chain.head
    except CorruptLogError as exc:
        problems.append(str(exc))
        return count, problems + probe.problems(count, True), state
    problems.extend(probe.problems(state.head.seq, False))
    problems.extend(audit.finish())
    if count == 0:
        problems.append(f"session {sid!r}: the log holds no events")
    elif state.head.seq != count:
        problems.append(f"session {sid!r}: {count} events but last seq {state.head.seq}")
    problems.extend(recorded_problems(backend, sid, recorded, state.head))
    for snap in snaps:
        fold = folds.get(snap.head.seq)
        if fold is None or not fold.same_as(snap):
            problems.append(f"session {sid!r}, snapshot at seq {snap.head.seq}: does not "
                            "equal the fold of the events it covers")
    return count, problems, state
