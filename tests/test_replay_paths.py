"""Replay's fast paths decide exactly as the careful ones: over random logs, damaged or
not, the segment reader's blocks hand out the lines its line-by-line reading does, and the
chain's hot loop yields the events and raises the errors that reading one line at a time
does, with the chain standing at the same place after every event."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from eventlog import CorruptLogError
from eventlog.backends.files import _segments
from eventlog.backends.files._segments import SegmentReader, header_line, trailer_line
from eventlog.core._codec import FORMAT_VERSION, ChainReader, Head, encode_payload, genesis, seal
from eventlog.core._records import Event

SID = "s"
HEX = "0123456789abcdef" * 2


def _record(seq: int, size: int, space: str) -> bytes:
    return b'{"seq":%d,"x":"%s","h":"%s"}%s' % (seq, b"a" * size, HEX.encode(), space.encode())


BATCH = st.tuples(st.just("batch"), st.lists(st.integers(0, 40), min_size=1, max_size=12),
                  st.sampled_from(["", "", "", "  "]))
LINES = st.one_of(
    BATCH, BATCH, BATCH, BATCH,  # mostly what writers write; damage now and then
    st.tuples(st.just("garbage"), st.binary(max_size=30).filter(lambda b: b"\n" not in b),
              st.sampled_from(["", " "])),
    st.tuples(st.just("trailer"), st.booleans(), st.just("")),
    st.tuples(st.just("odd"), st.sampled_from([b"", b'{"seq":', b'{"seq":1 ', b"} ", b" "]),
              st.just("")),
)


def _segment(items: list[tuple[str, Any, str]]) -> bytes:
    out = [header_line(SID, genesis(SID), FORMAT_VERSION) + b"\n"]
    seq = 0
    for kind, arg, extra in items:
        if kind == "batch":
            for index, size in enumerate(arg):
                seq += 1
                # Every member but the last ends in a space (sometimes two: not ours).
                space = "" if index == len(arg) - 1 else (extra or " ")
                out.append(_record(seq, size, space) + b"\n")
        elif kind == "garbage":
            out.append(arg + extra.encode() + b"\n")
        elif kind == "trailer":
            line = trailer_line(Head(seq, HEX))
            out.append((line if arg else line[:-3]) + b"\n")
        else:
            out.append(arg + b"\n")
    return b"".join(out)


def _state(reader: SegmentReader) -> tuple[Any, ...]:
    return reader.good_end, reader.end, reader.lineno, reader.header, reader.sealed


@settings(max_examples=800, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(items=st.lists(LINES, min_size=1, max_size=8), chunk=st.integers(1, 300),
       cut=st.floats(0, 1), torn=st.booleans())
@example(items=[("batch", [1], ""), ("batch", [1, 2, 3], "")], chunk=300, cut=0.95, torn=True)
def test_segment_blocks_hand_out_what_reading_line_by_line_does(
        items: list[tuple[str, Any, str]], chunk: int, cut: float, torn: bool) -> None:
    data = _segment(items)
    if torn:  # a write cut short anywhere after the header
        start = data.index(b"\n") + 1
        data = data[:start + int(cut * (len(data) - start))]

    def pread(fd: int, size: int, offset: int) -> bytes:
        return data[offset:offset + size]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_segments, "CHUNK", chunk)
        careful = SegmentReader(0, "seg", pread=pread)
        expected = list(careful)
        fast = SegmentReader(0, "seg", pread=pread)
        got = [(source, first + index, line) for source, first, lines in fast.chunks()
               for index, line in enumerate(lines)]
    assert got == expected
    assert _state(fast) == _state(careful)


def _chain_lines(rng: random.Random, count: int) -> list[bytes]:
    payloads = [encode_payload("t", 1.5, {"k": "v" * rng.randrange(30)}) for _ in range(count)]
    return [record.line for record in seal(payloads, genesis(SID), 1 << 20)]


def _damage(rng: random.Random, lines: list[bytes]) -> list[Any]:
    damaged: list[Any] = list(lines)
    for _ in range(rng.randrange(3)):
        if not damaged:
            break
        at = rng.randrange(len(damaged))
        line = damaged[at]
        kind = rng.randrange(11)
        if kind == 0:
            del damaged[at]
        elif kind == 1:
            damaged.insert(at, damaged[rng.randrange(len(damaged))])
        elif kind == 2 and isinstance(line, bytes) and line:
            spot = rng.randrange(len(line))
            damaged[at] = line[:spot] + bytes([line[spot] ^ (1 << rng.randrange(8))]) + line[spot + 1:]
        elif kind == 3 and isinstance(line, bytes):
            damaged[at] = line[:rng.randrange(len(line) + 1)]  # torn
        elif kind == 4:
            damaged.insert(at, rng.choice([b"", b"garbage", b"{}", b"[1]", b'{"seq":1}', b"\x00" * 5]))
        elif kind == 5 and isinstance(line, bytes):
            damaged[at] = line.replace(b'"seq":', b'"seq":1', 1)
        elif kind == 6 and isinstance(line, bytes):
            damaged[at] = line.replace(b'"type":"t"', b'"typo":"t"', 1)
        elif kind == 7 and isinstance(line, bytes):
            damaged[at] = line[:-2].upper() + line[-2:]
        elif kind == 8:
            damaged[at] = "a str"  # not bytes: no backend of ours hands that over
        elif kind == 9 and isinstance(line, bytes):  # a newline (or a comma) in the middle
            spot = rng.randrange(len(line) + 1)
            damaged[at:at + 1] = [line[:spot], line[spot:]] if rng.random() < 0.5 else [
                line[:spot] + b"," + line[spot:]]
        elif kind == 10 and isinstance(line, bytes):  # an object left open, closed later
            damaged[at:at + 1] = [line[:-1] + b" ", b'"h":"%s"}' % line[-34:-2]]
    return damaged


def _observe(chain: ChainReader, events: Any) -> tuple[list[Any], str | None, Any]:
    seen: list[Any] = []
    error = None
    try:
        for event in events:
            seen.append((event, chain.head, chain.torn_at))
    except CorruptLogError as exc:
        error = f"{exc} / {exc.seq} / {exc.where}"
    return seen, error, (chain.head, chain.torn_at)


def _line_by_line(chain: ChainReader, chunks: list[tuple[str, int, list[Any]]]) -> Any:
    for source, first, lines in chunks:
        for index, line in enumerate(lines):
            event: Event | None = chain._read_line(source, first + index, line)
            if event is not None:
                yield event


@settings(max_examples=400, deadline=None)
@given(seed=st.integers(0, 2**32), count=st.integers(0, 12), start=st.booleans())
def test_the_chain_hot_loop_decides_as_reading_one_line_at_a_time(
        seed: int, count: int, start: bool) -> None:
    rng = random.Random(seed)
    lines = _damage(rng, _chain_lines(rng, count))
    chunks: list[tuple[str, int, list[Any]]] = []
    at = 0
    while at < len(lines):
        size = rng.randrange(1, 6)
        chunks.append((f"seg{len(chunks)}", 100 + at, lines[at:at + size]))
        at += size
    head = genesis(SID)
    if start and count:  # reading from a later place in the chain, as a kept position does
        skip = rng.randrange(count)
        digest = genesis(SID).digest if skip == 0 else _chain_lines(
            random.Random(seed), count)[skip - 1][-34:-2].decode()
        # Sometimes a seq that does not go with the digest: only the seq check can tell.
        head = Head(skip + rng.choice([0, 0, 1, -1]), digest)
    fast = ChainReader(SID, head, FORMAT_VERSION)
    slow = ChainReader(SID, head, FORMAT_VERSION)
    assert _observe(fast, fast.read_chunks(chunks)) == _observe(slow, _line_by_line(slow, chunks))


def test_a_record_left_open_and_closed_by_the_next_line_is_damage_on_every_path() -> None:
    """Decoded together, a record whose closing ``}`` became a space and a next line that
    closes it (repeating ``"h"``) make one object of five keys, and a line ``1,2`` keeps
    the count of objects: only the check of each line's end tells the record is damaged."""
    lines = _chain_lines(random.Random(1), 3)
    chunk: list[Any] = [lines[0], lines[1][:-1] + b" ", b'"h":"%s"}' % lines[1][-34:-2], b"1,2"]
    fast = ChainReader(SID, genesis(SID), FORMAT_VERSION)
    slow = ChainReader(SID, genesis(SID), FORMAT_VERSION)
    seen = _observe(fast, fast.read_chunks([("seg", 1, chunk)]))
    assert seen == _observe(slow, _line_by_line(slow, [("seg", 1, chunk)]))
    assert seen[1] is not None and "a complete record can't be read" in seen[1]
