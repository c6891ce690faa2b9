"""``eventlog redact``, ``eventlog checkpoint`` and ``eventlog keygen``, and the checkpoint
``eventlog verify --checkpoint`` reads."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..core._checkpoint import Checkpoint
from ..core._errors import InvalidInputError
from ._args import CliError, open_store, positive, session_id
from ._output import output_file
from ._terminal import print_json, safe


def redact_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("session", metavar="SESSION", type=session_id, help="the session id")
    p.add_argument("seqs", metavar="SEQ", type=positive, nargs="+", help="the events to erase")
    p.add_argument("--reason", required=True, help="why (kept in the tombstones and the log)")
    p.add_argument("--json", action="store_true", help="print the redaction event as JSON")


def cmd_redact(args: argparse.Namespace) -> int:
    with open_store(args) as log:
        event = log.redact(args.session, args.seqs, reason=args.reason)
    if args.json:
        print_json({"seq": event.seq, "type": event.type, "ts": event.ts, "data": event.data})
    else:
        print(f"redacted seq(s) {', '.join(map(str, event.data['seqs']))} of "
              f"{safe(args.session)}: the redaction is seq {event.seq}")
    return 0


def checkpoint_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("session", metavar="SESSION", type=session_id, nargs="?",
                   help="one session's head (default: every session's, under one Merkle root)")
    p.add_argument("--sign", metavar="KEYFILE", type=Path,
                   help="sign it with this Ed25519 private key (see eventlog keygen)")
    p.add_argument("-o", "--output", metavar="FILE", type=Path,
                   help="write it to FILE (default: print it)")


def cmd_checkpoint(args: argparse.Namespace) -> int:
    with open_store(args) as log:
        checkpoint = log.checkpoint(args.session)
    if args.sign is not None:
        from ._signing import sign
        checkpoint = sign(checkpoint, args.sign)
    text = checkpoint.to_json() + "\n"
    if args.output is None:
        print(text, end="")
        return 0
    with output_file(args.output) as out:
        out.write(text.encode())
    what = f"session {safe(args.session)} at seq {checkpoint.seq}" if args.session else \
        f"{checkpoint.seq} session(s)"
    print(f"checkpoint of {what} written to {safe(str(args.output))}"
          f"{' (signed)' if checkpoint.signature else ''}; digest {checkpoint.digest}")
    return 0


def keygen_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("keyfile", metavar="KEYFILE", type=Path,
                   help="the private key's file (0600); the public key goes to KEYFILE.pub")


def cmd_keygen(args: argparse.Namespace) -> int:
    from ._signing import write_key_pair
    public = write_key_pair(args.keyfile)
    print(f"wrote the private key {safe(str(args.keyfile))} (mode 0600) and the public key "
          f"{safe(str(public))}")
    return 0


def verify_checkpoint_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", metavar="FILE", type=Path,
                   help="also report the sessions cut short, rewritten, made anew or deleted "
                        "since this checkpoint (from eventlog checkpoint)")
    p.add_argument("--public-key", metavar="PUBFILE", type=Path,
                   help="require the checkpoint's signature to verify with this public key")


def read_checkpoint(args: argparse.Namespace) -> Checkpoint | None:
    """The checkpoint ``verify`` was given (its signature checked when asked), or None."""
    if args.checkpoint is None:
        if args.public_key is not None:
            raise CliError("--public-key checks a checkpoint's signature: give --checkpoint FILE", 2)
        return None
    try:
        checkpoint = Checkpoint.from_json(args.checkpoint.read_bytes())
    except OSError as exc:
        raise CliError(f"can't read {args.checkpoint}: {exc}") from None
    except InvalidInputError as exc:
        raise CliError(f"{args.checkpoint}: {exc}") from None
    if args.public_key is not None:
        from ._signing import check_signature
        check_signature(checkpoint, args.public_key)
    return checkpoint
