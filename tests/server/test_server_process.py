"""``python -m eventlog.server`` as a process: tokens, read-only mode, shutdown, and the extra."""

from __future__ import annotations

import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

import eventlog
from eventlog.server._serve import _loopback

from .support import AUTH, ROOT, TOKEN, ServerProcess, server_env, sse_events


def test_import_without_the_extra_names_the_fix() -> None:
    code = "import sys; sys.modules['starlette'] = None; import eventlog.server"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                       env=server_env())
    assert r.returncode == 1
    last = r.stderr.strip().splitlines()[-1]
    assert last == "ImportError: eventlog.server needs the server extra: pip install 'eventlog[server]'"
    assert "During handling" not in r.stderr  # one error, not a chain


def test_help_has_an_example() -> None:
    r = subprocess.run([sys.executable, "-m", "eventlog.server", "--help"], capture_output=True,
                       text=True, cwd=ROOT, env=server_env())
    assert r.returncode == 0
    assert "--read-only" in r.stdout and "example:" in r.stdout and "--store" in r.stdout


def _no_env_token(tmp_path: Path) -> dict[str, str]:
    env = server_env(XDG_CONFIG_HOME=str(tmp_path / "config"))
    del env["EVENTLOG_TOKEN"]
    return env


def test_token_is_made_once_kept_private_and_needed(tmp_path: Path) -> None:
    env = _no_env_token(tmp_path)
    first = ServerProcess(tmp_path / "store", env=env)
    try:
        token_file = tmp_path / "config" / "eventlog" / "token"
        token = token_file.read_text().strip()
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        assert stat.S_IMODE(token_file.parent.stat().st_mode) == 0o700
        assert token in first.output and len(token) >= 32
        with httpx.Client(base_url=first.url, timeout=10) as client:
            good = client.post("/api/sessions", json={}, headers={"Authorization": f"Bearer {token}"})
            assert good.status_code == 201
            assert client.post("/api/sessions", json={}, headers=AUTH).status_code == 401
    finally:
        assert first.stop() == 0
    second = ServerProcess(tmp_path / "store", env=env)
    try:
        assert token not in second.output  # shown only when made
        assert token_file.read_text().strip() == token
    finally:
        second.stop()


def test_token_file_flag_and_env(tmp_path: Path) -> None:
    path = tmp_path / "my-token"
    proc = ServerProcess(tmp_path / "store", "--token-file", str(path), env=_no_env_token(tmp_path))
    try:
        token = path.read_text().strip()
        with httpx.Client(base_url=proc.url, timeout=10) as client:
            r = client.post("/api/sessions", json={}, headers={"Authorization": f"Bearer {token}"})
            assert r.status_code == 201
    finally:
        proc.stop()
    assert not (tmp_path / "config").exists()  # the default file was not touched


@pytest.mark.parametrize(("setup", "message"), [
    ("group-readable", "chmod 600"), ("short", "at least 16"), ("env-short", "EVENTLOG_TOKEN"),
])
def test_bad_tokens_are_refused(tmp_path: Path, setup: str, message: str) -> None:
    path = tmp_path / "token"
    env = _no_env_token(tmp_path)
    args = ["--token-file", str(path)]
    if setup == "group-readable":
        path.write_text(TOKEN)
        path.chmod(0o640)
    elif setup == "short":
        path.write_text("abc")
        path.chmod(0o600)
    else:
        env["EVENTLOG_TOKEN"] = "abc"
        args = []
    r = subprocess.run([sys.executable, "-m", "eventlog.server", "--store", str(tmp_path / "s"),
                        "--port", "0", *args], capture_output=True, text=True, cwd=ROOT, env=env,
                       timeout=30)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr


def test_read_only_serves_no_write_route(tmp_path: Path) -> None:
    env = _no_env_token(tmp_path)
    eventlog.open(tmp_path / "store").close()  # a read-only server creates no store
    proc = ServerProcess(tmp_path / "store", "--read-only", env=env)
    try:
        assert "read-only" in proc.output
        assert not (tmp_path / "config").exists()  # no token is made for a read-only server
        with httpx.Client(base_url=proc.url, timeout=10) as client:
            for method, path in [("POST", "/api/sessions"), ("POST", "/api/sessions/x/messages"),
                                 ("POST", "/api/sessions/x/events"), ("DELETE", "/api/sessions/x")]:
                for headers in ({}, AUTH):
                    r = client.request(method, path, json={}, headers=headers)
                    assert r.status_code == 405, (method, path, r.status_code)
                    assert r.json()["error"] == "method_not_allowed"
            assert client.get("/api/sessions").status_code == 200
            doc = client.get("/openapi.json").json()
            assert {m for ops in doc["paths"].values() for m in ops} == {"get"}
            assert client.get("/api/stats").json()["read_only"] is True
    finally:
        proc.stop()


def test_delete_needs_the_flag(tmp_path: Path) -> None:
    proc = ServerProcess(tmp_path / "store")
    try:
        with httpx.Client(base_url=proc.url, timeout=10) as client:
            assert client.post("/api/sessions", json={"session_id": "keep"}, headers=AUTH).status_code == 201
            assert client.delete("/api/sessions/keep", headers=AUTH).status_code == 405
            assert client.get("/api/sessions/keep").status_code == 200
    finally:
        proc.stop()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_stops_promptly_with_streams_open(tmp_path: Path, sig: int) -> None:
    proc = ServerProcess(tmp_path / "store")
    with httpx.Client(base_url=proc.url, timeout=10) as client:
        client.post("/api/sessions", json={"session_id": "w"}, headers=AUTH)
        streams = [client.send(client.build_request("GET", "/api/sessions/w/stream",
                                                    params={"after_seq": 0}), stream=True)
                   for _ in range(3)]
        for s in streams:
            assert len(sse_events(s, 1)) == 1
        started = time.monotonic()
        code = proc.stop(sig, timeout=10)
        assert time.monotonic() - started < 5
        for s in streams:
            assert sse_events(s, 1) == []  # ended cleanly, not cut
            s.close()
    # SIGINT is a normal stop; uvicorn hands SIGTERM back to the default handler.
    assert code in ((0,) if sig == signal.SIGINT else (0, -signal.SIGTERM)), proc.output
    assert "Traceback" not in proc.output


def test_loopback_detection() -> None:
    assert _loopback("127.0.0.1") and _loopback("::1") and _loopback("localhost")
    assert _loopback("127.8.9.10")
    assert not _loopback("0.0.0.0") and not _loopback("::") and not _loopback("example.com")


def test_port_in_use_is_a_clear_failure(tmp_path: Path) -> None:
    proc = ServerProcess(tmp_path / "store")
    try:
        port = proc.url.rsplit(":", 1)[1]
        r = subprocess.run([sys.executable, "-m", "eventlog.server", "--store", str(tmp_path / "s"),
                            "--port", port], capture_output=True, text=True, cwd=ROOT,
                           env=server_env(), timeout=30)
        assert r.returncode != 0 and "address already in use" in r.stderr.lower()
    finally:
        proc.stop()


def test_bad_store_is_a_clear_failure(tmp_path: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "eventlog.server", "--store", "nope://x", "--port", "0"],
                       capture_output=True, text=True, cwd=ROOT, env=server_env(), timeout=30)
    assert r.returncode == 2 and "unknown store scheme" in r.stderr and "Traceback" not in r.stderr


def test_load_tool_small_run() -> None:
    """tools/loadtest.py itself, at a tenth of its default size: it must pass its own checks."""
    r = subprocess.run([sys.executable, str(ROOT / "tools" / "loadtest.py"), "--clients", "8",
                        "--messages", "25", "--listeners", "2"], capture_output=True, text=True,
                       cwd=ROOT, env=server_env(), timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "PASS" in r.stdout and "requests/s" in r.stdout
    assert r.stdout.count("in order without gaps: True, each message once: True") == 2
