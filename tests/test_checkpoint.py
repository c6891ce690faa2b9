"""Checkpoints: a head kept outside the store catches a log cut short, rewritten, made anew
or deleted, and still passes after redactions (which keep every digest)."""

from __future__ import annotations

import json
import random
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import eventlog
from eventlog import ChatMessage, Checkpoint
from eventlog.backends._memory import MemoryBackend
from eventlog.core._checkpoint import merkle_root
from eventlog.core._codec import Head


def msg(sid: str, text: str) -> ChatMessage:
    return ChatMessage(sender="A", content=text, session_id=sid)


def test_a_session_checkpoint_is_its_head_and_reads_back_from_json() -> None:
    with eventlog.open("memory://") as log:
        log.create_session("s", ["A"])
        log.add_message(msg("s", "hi"))
        cp = log.checkpoint("s")
        last = next(iter(log.backend.scan_back("s")))[2]
        assert (cp.session_id, cp.seq, cp.digest) == ("s", 2, json.loads(last)["h"])
        assert Checkpoint.from_json(cp.to_json()) == cp
        with pytest.raises(eventlog.InvalidInputError):
            Checkpoint.from_json('{"format": "something"}')
        with pytest.raises(eventlog.SessionNotFoundError):
            log.checkpoint("nobody")


def test_a_store_checkpoint_is_a_merkle_root_over_the_sorted_heads() -> None:
    with eventlog.open("memory://") as log:
        assert log.checkpoint().digest == merkle_root([])
        for sid in ("b", "a", "c"):
            log.create_session(sid, ["A"])
        cp = log.checkpoint()
        assert cp.session_id is None and cp.seq == 3 and len(cp.digest) == 64
        assert [h[0] for h in cp.heads] == ["a", "b", "c"]
        assert cp.digest == merkle_root(cp.heads) == merkle_root(list(reversed(cp.heads)))
        assert Checkpoint.from_json(cp.to_json()) == cp
        # Heads that don't hash to the root are refused: the root is what one publishes.
        forged = json.loads(cp.to_json())
        forged["heads"][0][1] = 5
        with pytest.raises(eventlog.InvalidInputError, match="altered"):
            Checkpoint.from_json(json.dumps(forged))
        assert log.verify(checkpoint=cp).ok


def test_verify_against_a_checkpoint_names_what_happened_to_each_session(tmp_path: Path) -> None:
    with eventlog.open(tmp_path / "store") as log:
        for sid in ("kept", "redacted", "cut", "remade", "gone"):
            log.create_session(sid, ["A"])
            log.add_messages([msg(sid, f"{sid} {i}") for i in range(5)])
        cp = log.checkpoint()
        log.add_message(msg("kept", "later"))                      # appends: fine
        log.redact("redacted", [3], reason="r")                   # redactions: fine
        log.delete_session("remade")
        log.import_events("remade", [e if e.seq != 4 else e._replace(data={**e.data, "content": "x"})
                                     for e in log.events("kept")][:6])
        log.delete_session("gone")
    segment = tmp_path / "store" / "cut" / "seg-0000000000000001.jsonl"
    lines = segment.read_bytes().splitlines(keepends=True)
    segment.write_bytes(b"".join(lines[:-2]))                     # the last two records cut off
    (tmp_path / "store" / "cut" / "lock").write_bytes(bytes(64))  # and its head page reset
    with eventlog.open(tmp_path / "store") as log:
        report = log.verify(checkpoint=cp)
        assert not report.ok
        text = "\n".join(report.problems)
        assert "'cut': truncated" in text and "'remade': rewritten or created anew" in text
        assert "'gone': deleted since the checkpoint" in text
        assert "'kept'" not in text and "'redacted'" not in text
        assert log.verify("kept", checkpoint=cp).ok
        assert log.verify("redacted", checkpoint=log.checkpoint("redacted")).ok
        assert "deleted" in log.verify("gone", checkpoint=cp).problems[0]
        assert not any("checkpoint" in p for p in log.verify().problems)


# The property: verify against an earlier checkpoint is ok exactly when only redactions
# (and appends) happened, whatever the history and the damage.

DAMAGE = ("none", "cut", "rewrite", "flip", "reorder")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sizes=st.lists(st.integers(2, 12), min_size=1, max_size=3),
       damage=st.sampled_from(DAMAGE), seed=st.integers(0, 2**32 - 1),
       redact_before=st.booleans(), redact_after=st.booleans())
def test_verify_against_an_earlier_checkpoint_is_ok_exactly_when_only_redactions_happened(
        sizes: list[int], damage: str, seed: int, redact_before: bool, redact_after: bool) -> None:
    rng = random.Random(seed)
    with eventlog.open(f"memory://prop-{uuid.uuid4().hex}") as log:
        for n, size in enumerate(sizes):
            sid = f"s{n}"
            log.create_session(sid, ["A"])
            for i in range(size):
                if rng.random() < 0.7:
                    log.add_message(msg(sid, f"{sid} {i} {rng.random()}"))
                else:
                    log.append(sid, "note", {"i": i, "r": rng.random()})
        if redact_before:
            log.redact("s0", [rng.randint(2, sizes[0] + 1)], reason="before")
        cp = Checkpoint.from_json(log.checkpoint().to_json())
        for n in range(len(sizes)):
            log.add_message(msg(f"s{n}", "after"))
        if redact_after:
            last = log.get_session("s0").last_seq
            candidates = [e.seq for e in log.events("s0")
                          if e.seq > 1 and not e.type.startswith("session.")
                          and "redacted" not in (e.data if isinstance(e.data, dict) else {})]
            log.redact("s0", [rng.choice(candidates)], reason="after")
            assert log.get_session("s0").last_seq == last + 1
        victim = f"s{rng.randrange(len(sizes))}"
        committed = dict((h[0], h[1]) for h in cp.heads)[victim]
        backend = log.backend
        assert isinstance(backend, MemoryBackend)
        session = backend._data.sessions[victim]
        if damage == "cut":
            keep = rng.randint(1, committed - 1)
            session.lines[keep:] = []
            session.head = Head(keep, json.loads(session.lines[-1])["h"])
            session.snapshots.clear()
        elif damage == "rewrite":
            events = list(log.events(victim))
            at = rng.randint(2, committed)
            changed = [e._replace(ts=e.ts + 1) if e.seq == at else e for e in events]
            log.delete_session(victim)
            log.import_events(victim, changed)
        elif damage == "flip":
            index = rng.randrange(committed)
            line = bytearray(session.lines[index])
            line[rng.randrange(len(line))] ^= 1 << rng.randrange(8)
            session.lines[index] = bytes(line)
        elif damage == "reorder":
            index = rng.randrange(1, committed)
            session.lines[index - 1], session.lines[index] = session.lines[index], session.lines[index - 1]
        report = log.verify(checkpoint=cp)
        assert report.ok == (damage == "none"), (damage, report.problems)


def test_a_checkpoint_of_a_damaged_head_is_refused() -> None:
    with eventlog.open("memory://") as log:
        log.create_session("s", ["A"])
        log.add_message(msg("s", "hi"))
        backend = log.backend
        assert isinstance(backend, MemoryBackend)
        session = backend._data.sessions["s"]
        session.lines[-1] = session.lines[-1].replace(b"hi", b"ho")
        with pytest.raises(eventlog.CorruptLogError, match="does not follow"):
            log.checkpoint("s")
        with pytest.raises(eventlog.CorruptLogError):
            log.checkpoint()
