"""Replay's fast paths decide exactly as the careful ones: over random logs, damaged or
not, the segment reader's blocks hand out the lines its line-by-line reading does."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from eventlog import _segments
from eventlog._codec import Head, genesis
from eventlog._segments import SegmentReader, header_line, trailer_line

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
    out = [header_line(SID, genesis(SID)) + b"\n"]
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
