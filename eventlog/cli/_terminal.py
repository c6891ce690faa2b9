"""What the command line shows people: times, sizes, tables, transcripts and progress bars."""

from __future__ import annotations

import re
import sys
import threading
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any, TextIO

import orjson

from ..core._records import ChatMessage

_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([smhd])")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# C0 and C1 control characters other than newline and tab: message content is written by
# agents, and an escape sequence in it must not be able to drive the reader's terminal. And the
# bidirectional embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069): with them
# "\u202egpj.exe" reads as "exe.jpg", and one in a name reverses the rest of the line. And the
# backslash itself: else an id spelling the six characters of an escape looks like the real one.
_CONTROL = re.compile("[\\\\\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")


def parse_duration(text: str) -> float:
    """Seconds in ``90s``, ``15m``, ``12h``, ``7d``, ``1.5d`` or ``1d12h``; ValueError otherwise."""
    parts = _DURATION_PART.findall(text)
    if not text or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"invalid duration {text!r}: use a number and a unit s, m, h or d "
                         "(90s, 15m, 12h, 7d, 1d12h)")
    seconds = sum(float(n) * _UNIT_SECONDS[u] for n, u in parts)
    if seconds <= 0:
        raise ValueError(f"invalid duration {text!r}: it must be longer than zero")
    return seconds


def print_json(value: Any) -> None:
    print(orjson.dumps(value, option=orjson.OPT_INDENT_2).decode())


def local_time(ts: float) -> str:
    """``2024-05-01 14:03:07`` in the local time zone (the raw number if out of range)."""
    try:
        return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")
    except (OverflowError, OSError, ValueError):
        return repr(ts)


def iso_time(ts: float) -> str:
    """ISO 8601 in UTC with microseconds, for ``--json`` output (the raw number if out of range)."""
    try:
        return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="microseconds")
    except (OverflowError, OSError, ValueError):
        return repr(ts)


def age(seconds: float) -> str:
    """A rough age: ``40 days``, ``3 hours``, ``12 s``."""
    for unit, size in (("days", 86400), ("hours", 3600), ("min", 60)):
        if seconds >= 2 * size:
            return f"{seconds / size:.0f} {unit}"
    return f"{seconds:.0f} s"


def human_bytes(count: int) -> str:
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{count} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def safe(text: str) -> str:
    """``text`` with control and bidi-override characters shown as escapes (``\\x1b``,
    ``\\u202e``), so it can neither drive a terminal nor reorder what is shown; and a
    backslash as ``\\\\``, so text that spells an escape is never taken for one."""
    return _CONTROL.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    if char == "\\":
        return "\\\\"
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def format_message(message: ChatMessage) -> str:
    """One transcript line: time, seq, sender -> recipient, content (continuation lines indented)."""
    to = "all" if message.recipient is None else safe(message.recipient)
    kind = "" if message.message_type == "text" else f" [{safe(message.message_type)}]"
    content = safe(message.content).replace("\n", "\n    ")
    return (f"{local_time(message.timestamp)}  #{message.seq}  {safe(message.sender)} -> {to}{kind}: "
            f"{content}")


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int] = ()) -> str:
    """Columns padded to their widest cell; ``right`` lists the columns aligned right (numbers)."""
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    return "\n".join([line(headers), *(line(r) for r in rows)])


def shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[:width - 3] + "..."


class Progress:
    """A progress bar on stderr, drawn only when stderr is a terminal (silent otherwise).

    ``total=None`` draws a spinner with a running count instead of a bar. Redraws at most
    ten times a second, so ticking it per event costs next to nothing.
    """

    _SPIN = "|/-\\"

    def __init__(self, label: str, total: int | None, *, stream: TextIO | None = None,
                 unit: str = "") -> None:
        self.stream = sys.stderr if stream is None else stream
        self.enabled = _is_terminal(self.stream)
        self.label = label
        self.total = total
        self.unit = unit
        self.done = 0
        self._drawn = 0.0
        self._frame = 0
        self._lock = threading.Lock()

    def __enter__(self) -> Progress:
        self._draw(force=True)
        return self

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.stream.write("\r\x1b[K")
            self.stream.flush()

    def advance(self, amount: int = 1) -> None:
        self.done += amount
        self._draw()

    def _draw(self, *, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._drawn < 0.1:
            return
        with self._lock:
            self._drawn = now
            self._frame += 1
            if self.total:
                share = min(1.0, self.done / self.total)
                bar = "#" * int(share * 30)
                text = (f"{self.label} [{bar:<30}] {share:4.0%} "
                        f"{self._count(self.done)}/{self._count(self.total)}")
            else:
                text = f"{self.label} {self._SPIN[self._frame % 4]} {self._count(self.done)}"
            self.stream.write("\r\x1b[K" + text)
            self.stream.flush()

    def _count(self, n: int) -> str:
        return human_bytes(n) if self.unit == "bytes" else str(n)

    def spin_while(self) -> _Spinner:
        """A context that keeps a spinner turning from a thread, for one long call."""
        return _Spinner(self)


class _Spinner:
    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._turn, daemon=True)

    def _turn(self) -> None:
        while not self._stop.wait(0.1):
            self.progress._draw(force=True)

    def __enter__(self) -> _Spinner:
        if self.progress.enabled:
            self.progress.__enter__()
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress.enabled:
            self._stop.set()
            self._thread.join()
            self.progress.__exit__()


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
