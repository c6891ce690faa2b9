"""``eventlog redact``, ``checkpoint``, ``keygen`` and ``verify --checkpoint``, with and
without Ed25519 signatures."""

from __future__ import annotations

import io
import json
import resource
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest

import eventlog
from eventlog import ChatMessage
from eventlog.cli._main import run

from . import _procs
from ._tmpfs import fill, tmpfs


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = run(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def store(tmp_path: Path) -> str:
    location = str(tmp_path / "store")
    with eventlog.open(location) as log:
        for sid in ("team", "other"):
            log.create_session(sid, ["A"])
            log.add_messages([ChatMessage(sender="A", content=f"{sid} secret {i}", session_id=sid)
                              for i in range(4)])
    return location


def test_redact_from_the_command_line(store: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "redact", "team", "3", "2", "--reason", "erasure", "--store", store)
    assert code == 0 and out == "redacted seq(s) 2, 3 of team: the redaction is seq 6\n"
    code, _, err = cli(capsys, "redact", "team", "1", "--reason", "no", "--store", store)
    assert code == 2 and "session.created" in err  # bad input, as for every command
    code, _, err = cli(capsys, "redact", "team", "4", "--store", store)
    assert code == 2 and "--reason" in err
    code, out, _ = cli(capsys, "verify", "--store", store)
    assert code == 0
    with eventlog.open(store) as log:
        assert [m.content for m in log.get_messages("team")] == ["", "", "team secret 2",
                                                                 "team secret 3"]


def test_checkpoint_then_verify_finds_a_rewrite(store: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "cp.json"
    code, out, _ = cli(capsys, "checkpoint", "-o", str(target), "--store", store)
    assert code == 0 and "checkpoint of 2 session(s)" in out
    assert json.loads(target.read_text())["seq"] == 2
    code, out, _ = cli(capsys, "checkpoint", "team", "--store", store)
    assert code == 0 and json.loads(out)["session_id"] == "team"
    cli(capsys, "redact", "team", "2", "--reason", "r", "--store", store)
    code, out, _ = cli(capsys, "verify", "--checkpoint", str(target), "--store", store)
    assert code == 0, out
    with eventlog.open(store) as log:
        log.delete_session("other")
        log.create_session("other", ["A"])
    code, out, _ = cli(capsys, "verify", "--checkpoint", str(target), "--store", store)
    assert code == 1 and "'other': truncated" in out
    code, out, _ = cli(capsys, "verify", "team", "--checkpoint", str(target), "--store", store)
    assert code == 0


def test_signed_checkpoints(store: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("cryptography", reason="needs eventlog[sign]")
    key = tmp_path / "audit.key"
    code, out, _ = cli(capsys, "keygen", str(key))
    assert code == 0 and stat.S_IMODE(key.stat().st_mode) == 0o600
    assert Path(f"{key}.pub").read_text().startswith("-----BEGIN PUBLIC KEY-----")
    code, _, err = cli(capsys, "keygen", str(key))
    assert code == 1 and "never overwrites" in err
    cp = tmp_path / "cp.json"
    code, out, _ = cli(capsys, "checkpoint", "--sign", str(key), "-o", str(cp), "--store", store)
    assert code == 0 and "(signed)" in out
    code, out, _ = cli(capsys, "verify", "--checkpoint", str(cp), "--public-key", f"{key}.pub",
                       "--store", store)
    assert code == 0, out
    # Another key's public half: refused, clearly.
    cli(capsys, "keygen", str(tmp_path / "other.key"))
    code, _, err = cli(capsys, "verify", "--checkpoint", str(cp), "--public-key",
                       str(tmp_path / "other.key.pub"), "--store", store)
    assert code == 1 and "signature does not verify" in err
    # A tampered checkpoint: its time changed (the signature covers it) ...
    forged = json.loads(cp.read_text())
    forged["time"] += 1
    (tmp_path / "forged.json").write_text(json.dumps(forged))
    code, _, err = cli(capsys, "verify", "--checkpoint", str(tmp_path / "forged.json"),
                       "--public-key", f"{key}.pub", "--store", store)
    assert code == 1 and "signature does not verify" in err
    # ... or its heads (the root they must hash to refuses them).
    forged = json.loads(cp.read_text())
    forged["heads"][0][1] = 1
    (tmp_path / "forged.json").write_text(json.dumps(forged))
    code, _, err = cli(capsys, "verify", "--checkpoint", str(tmp_path / "forged.json"),
                       "--public-key", f"{key}.pub", "--store", store)
    assert code == 1 and "altered" in err
    # An unsigned checkpoint where a signature is asked for.
    cli(capsys, "checkpoint", "-o", str(tmp_path / "plain.json"), "--store", store)
    code, _, err = cli(capsys, "verify", "--checkpoint", str(tmp_path / "plain.json"),
                       "--public-key", f"{key}.pub", "--store", store)
    assert code == 1 and "not signed" in err


def _file_size_limit() -> None:  # in the child: writes past 2,000 bytes fail (EFBIG)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (2000, 2000))


@pytest.mark.parametrize("command", [["checkpoint"], ["export", "s0", "--format", "json"]])
def test_output_that_fails_to_write_leaves_no_file(tmp_path: Path, command: list[str]) -> None:
    """``-o FILE`` writes FILE whole or not at all: a write that fails part way (here the file
    size limit) leaves neither FILE nor the temporary file beside it (checkpoint left
    ``.FILE.<pid>.tmp``: outside tester's repro 04)."""
    store = tmp_path / "store"
    with eventlog.open(store) as log:
        for i in range(60):
            log.create_session(f"s{i}", ["A"])
            log.append("s0", "note", {"text": "x" * 100})
    out = tmp_path / "out"
    out.mkdir()
    done = subprocess.run([sys.executable, "-m", "eventlog", "--store", str(store), *command,
                           "-o", str(out / "result.json")], env=_procs.worker_env(),
                          capture_output=True, text=True, preexec_fn=_file_size_limit, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert f"can't write {out / 'result.json'}" in done.stderr, done.stderr
    assert list(out.iterdir()) == []


def test_keygen_on_a_full_disk_leaves_nothing_and_can_run_again(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The private key was created in place, then written: a full disk left an empty key
    file, and every later keygen refused it as an existing key."""
    pytest.importorskip("cryptography", reason="needs eventlog[sign]")
    with tmpfs(tmp_path / "disk", "size=16k") as disk:
        fill(disk)
        key = disk / "audit.key"
        code, _, err = cli(capsys, "keygen", str(key))
        assert code == 1 and "can't write the key pair" in err, err
        assert sorted(p.name for p in disk.iterdir()) == ["filler"]
        (disk / "filler").unlink()
        code, _, err = cli(capsys, "keygen", str(key))
        assert code == 0, err
        assert key.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
        assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_a_token_file_is_made_whole_or_not_at_all(tmp_path: Path) -> None:
    """A server's first start writes its token file; on a full disk it raises and leaves
    no file, so the next start makes a whole one (an empty one was read as the token)."""
    from eventlog.server._token import load_token

    with tmpfs(tmp_path / "disk", "size=16k") as disk:
        fill(disk)
        path = disk / "token"
        with pytest.raises(OSError):
            load_token(str(path), out=io.StringIO())
        assert sorted(p.name for p in disk.iterdir()) == ["filler"]
        (disk / "filler").unlink()
        token = load_token(str(path), out=io.StringIO())
        assert path.read_text() == f"{token}\n" and len(token) >= 32
