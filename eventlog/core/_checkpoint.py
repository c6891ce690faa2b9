"""Checkpoints: a head of the digest chain (or of every session's) that someone keeps
outside the store, so that a log cut short, rewritten or made anew can't pass for the one
that was there.

A session checkpoint is its head: ``(session id, seq, digest)``. A store checkpoint commits
to every session's head in one digest, the root of a Merkle tree (RFC 6962's hashing:
``leaf = SHA-256(0x00 + leaf bytes)``, ``node = SHA-256(0x01 + left + right)``, the split
at the largest power of two below the count) over the heads sorted by id, each leaf the
compact JSON ``["<id>",<seq>,"<digest>"]``; an empty store's root is SHA-256 of nothing.
The heads travel with the root (``heads``), so that verify can say which session changed;
the root is what to publish or sign, and it proves the heads.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ._errors import InvalidInputError

FORMAT = "eventlog-checkpoint/1"
Heads = tuple[tuple[str, int, str], ...]


def merkle_root(heads: Sequence[tuple[str, int, str]]) -> str:
    """The Merkle root (64 hex) of heads sorted by id (see the module docstring)."""
    leaves = [hashlib.sha256(b"\0" + json.dumps([sid, seq, digest], separators=(",", ":"),
                                                ensure_ascii=False).encode()).digest()
              for sid, seq, digest in sorted(heads)]
    return _tree(leaves).hex() if leaves else hashlib.sha256(b"").hexdigest()


def _tree(nodes: list[bytes]) -> bytes:
    # Bottom-up, pairing as RFC 6962's recursive split does: a left subtree of the largest
    # power of two below n leaves. Iterative, so 10,000 sessions need no deep recursion.
    if len(nodes) == 1:
        return nodes[0]
    split = 1 << (math.ceil(math.log2(len(nodes))) - 1)
    return hashlib.sha256(b"\1" + _tree(nodes[:split]) + _tree(nodes[split:])).digest()


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A session's head (``session_id`` set; ``digest`` its last record's ``h``), or the
    store's (``session_id`` None; ``seq`` the number of sessions, ``digest`` the Merkle root
    of ``heads``), taken at ``time`` (Unix seconds). ``signature``: an Ed25519 signature
    (hex) of ``signed_bytes()``, when signed (see ``eventlog.sign``)."""

    session_id: str | None
    seq: int
    digest: str
    time: float = field(default_factory=time.time)
    heads: Heads = ()
    signature: str | None = None

    def signed_bytes(self) -> bytes:
        """What a signature covers: the checkpoint without its heads (the root proves them)
        and without the signature."""
        return json.dumps({"format": FORMAT, "session_id": self.session_id, "seq": self.seq,
                           "digest": self.digest, "time": self.time},
                          separators=(",", ":"), ensure_ascii=False).encode()

    def to_json(self) -> str:
        obj: dict[str, Any] = {"format": FORMAT, "session_id": self.session_id, "seq": self.seq,
                               "digest": self.digest, "time": self.time}
        if self.session_id is None:
            obj["heads"] = [list(head) for head in self.heads]
        if self.signature is not None:
            obj["signature"] = self.signature
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)

    @staticmethod
    def from_json(text: str | bytes) -> Checkpoint:
        """Read ``to_json``'s output back; ``InvalidInputError`` for anything else, or for a
        store checkpoint whose heads don't hash to its root."""
        try:
            obj = json.loads(text)
        except ValueError as exc:
            raise InvalidInputError(f"not a checkpoint: {exc}") from None
        if not isinstance(obj, dict) or obj.get("format") != FORMAT:
            raise InvalidInputError(f"not a checkpoint (no \"format\": \"{FORMAT}\")")
        sid, seq, digest, when = (obj.get(k) for k in ("session_id", "seq", "digest", "time"))
        signature = obj.get("signature")
        if not ((sid is None or type(sid) is str) and type(seq) is int and seq >= 0
                and type(digest) is str and type(when) in (int, float)
                and (signature is None or type(signature) is str)):
            raise InvalidInputError("not a checkpoint: session_id, seq, digest or time is missing "
                                    "or of the wrong type")
        heads: Heads = ()
        if sid is None:
            raw = obj.get("heads")
            if not isinstance(raw, list) or not all(
                    isinstance(h, list) and len(h) == 3 and type(h[0]) is str and type(h[1]) is int
                    and type(h[2]) is str for h in raw):
                raise InvalidInputError("not a store checkpoint: heads must be [id, seq, digest] lists")
            heads = tuple((h[0], h[1], h[2]) for h in raw)
            if merkle_root(heads) != digest or len(heads) != seq:
                raise InvalidInputError("the checkpoint's heads do not hash to its digest: it was "
                                        "altered")
        return Checkpoint(sid, seq, digest, float(when), heads, signature)  # type: ignore[arg-type]
