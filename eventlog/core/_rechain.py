"""A fork's copy of a history: the source's record lines, checked against the source's
chain as they pass, sealed again on the fork's chain.

The fork's records 1..``at_seq`` have the source's bodies byte for byte (seq, type, ts,
data, key), but not its digests: the chain starts from a genesis made of the session id
(see ``_codec.genesis``), so every ``h`` of the copy differs, and so does each segment
header's ``prev``. Nothing of the source's storage (a sealed segment, an archive, a row)
can be reused as it is; what is saved is the decoding. Each line keeps its bytes up to its
``h``: one SHA-256 of its data (version 2), one link on each chain, and the new digest in
place of the old. A line the quick test does not take (a tombstone, an idempotency key,
data that ends in a string, damage) goes the careful way, ``ChainReader._read_line``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator

from ._codec import DIGEST_HEX, SUFFIX_LEN, ChainReader, Head, Record, link

_SUFFIX_OPEN = b',"h":"'
_DATA = b',"data":'
_TOMB = b'{"redacted":{'
_new_tuple = tuple.__new__


def rechain(reader: ChainReader, chunks: Iterable[tuple[str, int, list[bytes]]],  # noqa: C901
            head: Head, upto: int) -> Iterator[list[Record]]:
    """The records of ``chunks`` up to seq ``upto`` (a batch per chunk), each checked against
    ``reader``'s chain as it is read (damage raises ``CorruptLogError`` as a read does;
    ``reader`` stands at the last one taken), and sealed again after ``head``.

    The quick test inlined by hand, as in ``ChainReader.read_chunks`` (the fork's hot loop:
    a call per line cost a third more)."""
    sha = hashlib.sha256
    v2 = reader.version != 1
    new_prev = head.digest.encode()
    seq = reader.seq
    for source, first, lines in chunks:
        if seq >= upto:
            return
        batch: list[Record] = []
        append = batch.append
        prev = reader.digest.encode()
        for index, line in enumerate(lines):
            if seq >= upto:
                break
            digest = b""
            if (line[-SUFFIX_LEN:-DIGEST_HEX - 2] == _SUFFIX_OPEN and line[-2:] == b'"}'
                    and reader.torn_at is None and line.startswith(b'{"seq":%d,' % (seq + 1))):
                if v2:
                    start = line.find(_DATA) + 8
                    data = line[start:-SUFFIX_LEN]
                    # Data that ends in a string or members after it (a key), a tombstone, or
                    # no data member: the careful way finds where the data is.
                    if start >= 8 and data[-1:] != b'"' and not data.startswith(_TOMB):
                        body = b'%s"%s"}' % (line[:start], sha(data).hexdigest().encode())
                        if sha(prev + body).hexdigest()[:DIGEST_HEX].encode() == line[-34:-2]:
                            digest = sha(new_prev + body).hexdigest()[:DIGEST_HEX].encode()
                else:
                    body = line[:-SUFFIX_LEN] + b"}"
                    if sha(prev + body).hexdigest()[:DIGEST_HEX].encode() == line[-34:-2]:
                        digest = sha(new_prev + body).hexdigest()[:DIGEST_HEX].encode()
            if digest:
                seq += 1
                prev = line[-34:-2]
            else:
                # The careful way, exactly as a read: it raises for damage, and takes a
                # torn line (None) as the end of what can be copied.
                reader.seq, reader.digest = seq, prev.decode()
                if reader._read_line(source, first + index, line) is None:
                    continue
                seq, prev = reader.seq, reader.digest.encode()
                digest = link(new_prev.decode(), line[:-SUFFIX_LEN] + b"}", reader.version).encode()
            new_prev = digest
            append(_new_tuple(Record, (seq, digest.decode(), line[:-34] + digest + b'"}')))
        reader.seq, reader.digest = seq, prev.decode()
        if batch:
            yield batch
