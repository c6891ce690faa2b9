"""Many machines, simulated: writer processes with pools of their own, half of them
reaching the server through a TCP proxy whose link is cut (and refused for a while, as
a restarting server or a broken network would) twice during the run. 8 writers x N
appends, to one session and to 8 sessions: every acknowledged append is read back exactly
once at the seq it was given, an append that raised is there at most once, seqs are
gapless and ``verify`` is ok."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import eventlog

from . import _procs
from ._tcp_proxy import DroppingProxy

pg = pytest.importorskip("tests._pg_support", reason="psycopg is not installed")
WRITERS, APPENDS = 8, 40


@pytest.fixture(scope="module")
def schemas() -> Iterator[Any]:
    yield from pg.schemas()


@pytest.mark.parametrize("sessions", [1, WRITERS])
def test_writers_on_many_machines_through_cut_links(schemas: Any, tmp_path: Path, sessions: int) -> None:
    schema = schemas.fresh()
    query = f"?schema={schema}&options=-c%20synchronous_commit%3Doff"
    direct = f"{pg.SERVER}{query}"
    proxy = DroppingProxy((pg.HOST, pg.PORT))
    sids = [f"s{k}" for k in range(sessions)]
    with eventlog.open(direct) as log:
        for sid in sids:
            log.create_session(sid)
    go = tmp_path / "go"
    procs: list[tuple[subprocess.Popen[bytes], Path, str]] = []
    try:
        for w in range(WRITERS):
            url = direct if w % 2 == 0 else f"{pg.server_url(port=proxy.port)}{query}"
            ack = tmp_path / f"ack-{w}"
            sid = sids[w % sessions]
            procs.append((_procs.start("steady", url, sid, w, APPENDS, go, ack), ack, sid))
        for proc, ack, _sid in procs:
            _procs.wait_for_line(ack, "ready", proc)
        go.touch()
        # The link cut and down for a while, then restored, up to three times while the
        # writers of the proxied half still write (each has acknowledged something).
        cycles = 0
        while cycles < 3 and any(proc.poll() is None for proc, _ack, _sid in procs[1::2]):
            while not all(_procs.ack_lines(ack)[1:] for _proc, ack, _sid in procs[1::2]) \
                    and all(proc.poll() is None for proc, _ack, _sid in procs[1::2]):
                time.sleep(0.01)
            proxy.down()
            time.sleep(0.4)
            proxy.up()
            time.sleep(0.2)
            cycles += 1
        for proc, _ack, _sid in procs:
            _procs.finish(proc, timeout=120)
        cut = proxy.cut_links
    finally:
        for proc, _ack, _sid in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        proxy.close()
    acked: dict[str, dict[str, int]] = {sid: {} for sid in sids}
    unsure: dict[str, set[str]] = {sid: set() for sid in sids}
    for _proc, ack, sid in procs:
        for line in _procs.ack_lines(ack):
            if line[0] == "ack":
                acked[sid][line[1]] = int(line[2])
            elif line[0] == "unsure":
                unsure[sid].add(line[1])
    with eventlog.open(direct, create=False) as log:
        for sid in sids:
            events = list(log.events(sid))
            assert [e.seq for e in events] == list(range(1, len(events) + 1))
            tags = [f"{e.data['w']}-{e.data['i']}" for e in events[1:]]
            assert len(tags) == len(set(tags)), "an append was stored twice"
            at = {tag: seq for seq, tag in enumerate(tags, start=2)}
            assert all(at.get(tag) == seq for tag, seq in acked[sid].items()), \
                "an acknowledged append is missing or moved"
            assert set(tags) - set(acked[sid]) <= unsure[sid]
            assert log.verify(sid).ok
    total = sum(len(a) for a in acked.values())
    print(f"{sessions} session(s): {total} appends acknowledged, "
          f"{sum(len(u) for u in unsure.values())} unsure, of {WRITERS * APPENDS}; {cut} links cut")
    assert cut > 0, "no writer's link was cut: the run ended too soon"
    assert total >= WRITERS * APPENDS // 2


def test_guarded_appends_keep_pace_with_plain_ones(schemas: Any, tmp_path: Path) -> None:
    """Plain appenders and guarded ones (``add_message``, keyed ``append``) on one session:
    the guarded append used to check the id on the head it last saw and append only if the
    head had not moved, so writers queued on the session's row lock always got in first
    and it starved (0-12 messages in 26 s next to three plain writers). Each guarded writer
    must now get through a fair share, each of its writes stored once."""
    url = schemas.url(flush=False)
    sid = "busy"
    with eventlog.open(url) as log:
        log.create_session(sid)
    go, stop = tmp_path / "go", tmp_path / "stop"
    kinds = ["event"] * 3 + ["message"] * 2 + ["keyed"]
    procs = [(_procs.start("steady", url, sid, f"w{w}", 1_000_000, go, tmp_path / f"ack-{w}",
                           kind, stop), tmp_path / f"ack-{w}", kind)
             for w, kind in enumerate(kinds)]
    try:
        for proc, ack, _kind in procs:
            _procs.wait_for_line(ack, "ready", proc)
        go.touch()
        time.sleep(4.0)
        stop.touch()
        for proc, _ack, _kind in procs:
            _procs.finish(proc, timeout=60)
    finally:
        for proc, _ack, _kind in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    acked = [sum(line[0] == "ack" for line in _procs.ack_lines(ack)) for _proc, ack, _kind in procs]
    plain = sum(acked[:3]) / 3
    print(f"acknowledged per writer: {list(zip(kinds, acked, strict=True))}")
    assert plain > 20, "the plain writers hardly wrote: the run says nothing"
    assert all(n >= plain / 10 for n in acked[3:]), f"a guarded writer starved: {acked}"
    with eventlog.open(url, create=False) as log:
        events = list(log.events(sid))
        assert [e.seq for e in events] == list(range(1, len(events) + 1))
        messages = [m.content for m in log.get_messages(sid)]
        assert len(messages) == len(set(messages)) == sum(acked[3:5])
        keys = [e.key for e in events if e.key is not None]
        assert len(keys) == len(set(keys)) == acked[5]
