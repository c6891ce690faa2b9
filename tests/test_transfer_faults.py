"""``eventlog import`` and ``eventlog copy`` given bad input: what the library refuses on append,
import refuses too (integers past 64 bits, duplicate keys), and ``copy`` copies every healthy
session even when some in the source are damaged."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

import eventlog
from eventlog.backends.files._segments import header_line, trailer_line
from eventlog.core._codec import FORMAT_VERSION, Head, genesis, seal

from .test_cli import cli

CREATED = b'{"seq":1,"type":"session.created","ts":1.5,"data":{"participants":["a"],"metadata":{}}}'

BAD_VALUES = [
    # (what the file holds as event 2's data, words the error must hold)
    (b'{"n":18446744073709551616}', "64 bits"),  # 2**64: orjson reads it as a float
    (b'{"n":-9223372036854775809}', "64 bits"),  # -2**63 - 1
    (b'[123456789012345678901234567890]', "64 bits"),
    (b'{"a":1,"a":2}', "duplicate key 'a'"),  # orjson keeps the last silently
    (b'{"deep":{"k":[1],"k":[2]}}', "duplicate key 'k'"),
    (b'1e400', "out of range"),
]


def _jsonl(data: bytes) -> bytes:
    return b"\n".join([b'{"eventlog_export":1,"session_id":"s"}', CREATED,
                       b'{"seq":2,"type":"x","ts":2.5,"data":' + data + b"}"]) + b"\n"


def _json(data: bytes) -> bytes:
    return (b'{"eventlog_export":1,"session_id":"s","events":[' + CREATED
            + b',{"seq":2,"type":"x","ts":2.5,"data":' + data + b"}]}")


def _segment(data: bytes) -> bytes:
    """A session file as ``cleanup --archive-dir`` writes it, its digests right: only the
    decoding can tell."""
    payloads = [CREATED.replace(b'"seq":1,', b""), b'{"type":"x","ts":2.5,"data":' + data + b"}"]
    records = seal(payloads, genesis("s"), 1 << 20)
    head = Head(records[-1].seq, records[-1].digest)
    return b"\n".join([header_line("s", genesis("s"), FORMAT_VERSION), *(r.line for r in records),
                       trailer_line(head)]) + b"\n"


@pytest.mark.parametrize("form", [_jsonl, _json, _segment], ids=["jsonl", "json", "segment"])
@pytest.mark.parametrize(("data", "words"), BAD_VALUES, ids=[w for _, w in BAD_VALUES])
def test_import_refuses_what_append_refuses(capsys, tmp_path, form, data, words):
    """Integers past 64 bits became floats and duplicate keys kept the last value, silently."""
    store = tmp_path / "store"
    path = tmp_path / "export"
    path.write_bytes(form(data))
    code, _, err = cli(capsys, "import", path, "--store", store)
    assert code == 1, err
    assert words in err and err.count("\n") == 1, err
    with eventlog.open(store) as log:
        assert log.session_ids() == []


def test_import_keeps_every_64_bit_integer_exactly(capsys, tmp_path):
    store = tmp_path / "store"
    edges = [2**64 - 1, -(2**63), 2**63, 0, -0.0, 1e308, 5e-324]
    path = tmp_path / "export"
    path.write_bytes(_jsonl(orjson.dumps({"edges": edges})))
    assert cli(capsys, "import", path, "--store", store)[0] == 0
    with eventlog.open(store) as log:
        assert list(log.events("s"))[1].data == {"edges": edges}


@pytest.mark.parametrize(("metadata", "words"), [('{"n":18446744073709551616}', "64 bits"),
                                                 ('{"a":1,"a":2}', "duplicate key 'a'")])
def test_create_metadata_is_read_as_strictly(capsys, tmp_path, metadata, words):
    code, _, err = cli(capsys, "create", "s", "--metadata", metadata, "--store", tmp_path / "store")
    assert code == 2 and words in err


# copy ---------------------------------------------------------------------------------------------

def _damage(store: Path, sid: str) -> None:
    [segment] = (store / sid).glob("seg-*.jsonl")
    segment.write_bytes(segment.read_bytes().replace(b'"content":"m1"', b'"content":"mX"'))


def test_copy_copies_every_healthy_session_and_lists_the_damaged(capsys, tmp_path):
    """``copy`` stopped at the first damaged source session with a traceback-free error,
    leaving a partial destination. Now it copies all the others, names the damaged ones
    (none of them half-copied) and exits 1."""
    source, target = tmp_path / "source", tmp_path / "target"
    with eventlog.open(source) as log:
        for sid in ("a", "b", "c", "d"):
            log.create_session(sid, ["x"])
            for i in range(3):
                log.add_message(eventlog.ChatMessage(sender="x", content=f"m{i}", session_id=sid))
    _damage(source, "b")
    _damage(source, "d")
    code, out, _ = cli(capsys, "copy", source, target)
    assert code == 1
    assert "damaged: b:" in out and "damaged: d:" in out, out
    assert out.splitlines()[-1].startswith("copied 2 session(s), 8 event(s)")
    assert "2 damaged session(s) not copied" in out.splitlines()[-1]
    with eventlog.open(source) as src, eventlog.open(target) as dst:
        assert dst.session_ids() == ["a", "c"]
        for sid in ("a", "c"):
            assert list(dst.events(sid)) == list(src.events(sid))
        assert dst.verify().ok
    # Again, leaving out what DST has: the damaged ones are still reported, and still not copied.
    code, out, _ = cli(capsys, "copy", source, target, "--skip-existing")
    assert code == 1 and "skipped 2 existing" in out
