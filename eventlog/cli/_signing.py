"""Ed25519 signatures of checkpoints, for the command line (the ``eventlog[sign]`` extra:
the ``cryptography`` package). Keys are PEM files: the private key PKCS#8 without a
passphrase, written 0600; the public key SubjectPublicKeyInfo."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from ..core._checkpoint import Checkpoint
from ..core._newfile import write_new_file
from ._args import CliError


def _crypto() -> Any:
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ed25519
    except ImportError:
        raise CliError("signing needs the cryptography package: pip install 'eventlog[sign]'") from None
    return serialization, ed25519


def write_key_pair(path: Path) -> Path:
    """A new key pair: the private key at ``path`` (0600, never over an existing file), the
    public key at ``path`` + ``.pub``; return the public key's path."""
    serialization, ed25519 = _crypto()
    key = ed25519.Ed25519PrivateKey.generate()
    public = Path(f"{path}.pub")
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    for target in (path, public):
        if target.exists():
            raise CliError(f"{target} exists: keygen never overwrites a key")
    try:
        write_new_file(path, private_pem, 0o600)
    except FileExistsError:
        raise CliError(f"{path} exists: keygen never overwrites a key") from None
    except OSError as exc:
        raise CliError(f"can't write the key pair: {exc}") from None
    try:
        write_new_file(public, public_pem, 0o644)
    except OSError as exc:
        path.unlink()  # ours, made just now: a pair or nothing, so that keygen can run again
        if isinstance(exc, FileExistsError):
            raise CliError(f"{public} exists: keygen never overwrites a key") from None
        raise CliError(f"can't write the key pair: {exc}") from None
    return public


def _load(path: Path, private: bool) -> Any:
    serialization, ed25519 = _crypto()
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CliError(f"can't read key {path}: {exc}") from None
    try:
        key = (serialization.load_pem_private_key(data, password=None) if private
               else serialization.load_pem_public_key(data))
    except (ValueError, TypeError) as exc:
        raise CliError(f"{path} is not a PEM {'private' if private else 'public'} key: {exc}") from None
    wanted = ed25519.Ed25519PrivateKey if private else ed25519.Ed25519PublicKey
    if not isinstance(key, wanted):
        raise CliError(f"{path} is not an Ed25519 key")
    return key


def sign(checkpoint: Checkpoint, key_path: Path) -> Checkpoint:
    key = _load(key_path, private=True)
    return replace(checkpoint, signature=key.sign(checkpoint.signed_bytes()).hex())


def check_signature(checkpoint: Checkpoint, public_path: Path) -> None:
    """Return if ``checkpoint`` carries a signature the public key verifies; ``CliError``
    (exit 1) otherwise."""
    from cryptography.exceptions import InvalidSignature
    key = _load(public_path, private=False)
    if checkpoint.signature is None:
        raise CliError("the checkpoint is not signed, but --public-key asks for a signature")
    try:
        key.verify(bytes.fromhex(checkpoint.signature), checkpoint.signed_bytes())
    except (InvalidSignature, ValueError):
        raise CliError(f"the checkpoint's signature does not verify with {public_path}: the "
                       "checkpoint was altered, or signed with another key") from None
