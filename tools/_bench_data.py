"""The benchmark's data: the same messages, byte for byte, for every store and every process.

Everything derives from ``(seed, index)``, so a child process regenerates exactly the
slice its parent means without the data crossing a pipe, and no store ever sees data
another store did not. Nothing here is timed.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import NamedTuple

CONTENT_CHARS = 300
SENDERS = ("Agent-1", "Agent-2", "Agent-3", "Agent-4")
_POOL_SIZE = 97
_WORDS = ("the", "session", "agent", "replied", "with", "a", "plan", "to", "search", "for", "results",
          "and", "then", "summarise", "them;", "tool", "call", "returned", "3", "hits,", "\"quoted\"",
          "naïve", "café", "ok.", "next", "step:", "verify", "output", "line\nbreak", "{json}")
DAY = 86_400.0


class Msg(NamedTuple):
    """One chat message as every store receives it."""

    id: str
    sender: str
    recipient: str | None
    content: str
    ts: float


def _bodies(seed: int) -> list[str]:
    """The seed's pool of message bodies, each exactly ``CONTENT_CHARS`` minus the prefix long."""
    bodies = _BODIES.get(seed)
    if bodies is None:
        rng = random.Random(seed)
        bodies = []
        for _ in range(_POOL_SIZE):
            words: list[str] = []
            while sum(len(w) + 1 for w in words) < CONTENT_CHARS:
                words.append(rng.choice(_WORDS))
            bodies.append(" ".join(words)[:CONTENT_CHARS - _PREFIX])
        _BODIES[seed] = bodies
    return bodies


_BODIES: dict[int, list[str]] = {}
_PREFIX = len("#00000000 ")


def messages(seed: int, lo: int, hi: int, base_ts: float) -> list[Msg]:
    """Messages ``lo..hi-1`` (0-based) of the stream ``seed``: about 300 characters, unique ids.

    One comprehension, not a call per message: a million-message session is generated once
    per column, and this is most of the untimed set-up of the stores that are fast.
    """
    bodies, senders, tag = _bodies(seed), SENDERS, f"{seed:08x}"
    # The index prefix makes every content unique, so a damaged or swapped record shows.
    return [Msg(f"{tag}{i:024x}", senders[i % 4], None if i % 3 == 0 else senders[(i + 1) % 4],
                f"#{i:08d} {bodies[i % _POOL_SIZE]}", base_ts + i * 0.001) for i in range(lo, hi)]


def batches(seed: int, lo: int, hi: int, base_ts: float, size: int) -> Iterator[list[Msg]]:
    """``messages(seed, lo, hi, ...)`` in lists of at most ``size``, never all in memory at once."""
    for start in range(lo, hi, size):
        yield messages(seed, start, min(hi, start + size), base_ts)
