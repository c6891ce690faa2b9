"""The server-side defects of issue 20, each against a real server process on loopback:
timestamps no reader can show, a read-only server that created its store, a stream resumed
beyond the head, CORS preflights that promised methods not served or answered in plain text."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import eventlog

from .support import AUTH, ROOT, ServerProcess, server_env


@pytest.mark.parametrize("timestamp", [1_796_280_000_000_000_000, 1e300, -5, 253_402_300_800])
def test_a_timestamp_outside_1970_to_9999_is_refused(client: httpx.Client, sid: str,
                                                      timestamp: float) -> None:
    before = client.get(f"/api/sessions/{sid}").json()
    for body in ({"sender": "Ann", "content": "x", "timestamp": timestamp},
                 {"messages": [{"sender": "Ann", "content": "ok"},
                               {"sender": "Ann", "content": "x", "timestamp": timestamp}]}):
        r = client.post(f"/api/sessions/{sid}/messages", json=body, headers=AUTH)
        assert r.status_code == 422, r.text
        assert r.json()["error"] == "invalid_input" and "between 1970 and 9999" in r.json()["message"]
    r = client.post("/api/sessions", json={"session_id": sid + "-t", "created_at": timestamp},
                    headers=AUTH)
    assert r.status_code == 422 and "between 1970 and 9999" in r.json()["message"]
    assert client.get(f"/api/sessions/{sid}").json() == before


def test_a_huge_integer_timestamp_is_a_clean_error(client: httpx.Client, sid: str) -> None:
    # 10**400 used to escape as a raw OverflowError from float(); over HTTP it is a JSON error.
    raw = b'{"sender": "Ann", "content": "x", "timestamp": 1' + b"0" * 400 + b"}"
    r = client.post(f"/api/sessions/{sid}/messages", content=raw,
                    headers={**AUTH, "Content-Type": "application/json"})
    assert r.status_code == 422 and r.json()["error"] == "invalid_input", r.text


def test_read_only_serve_never_creates_a_store(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    for argv, status in (
            (["-m", "eventlog", "serve", "--read-only", "--store", str(missing), "--port", "0"], 1),
            (["-m", "eventlog.server", "--read-only", "--store", str(missing), "--port", "0"], 2)):
        done = subprocess.run([sys.executable, *argv], env=server_env(), cwd=ROOT, capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == status, done.stderr
        assert "no eventlog store at" in done.stderr and "Traceback" not in done.stderr, done.stderr
        assert not missing.exists()
    sqlite = tmp_path / "missing.db"
    done = subprocess.run([sys.executable, "-m", "eventlog", "serve", "--read-only", "--store",
                           f"sqlite:///{sqlite}", "--port", "0"], env=server_env(), cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and "no eventlog store at" in done.stderr, done.stderr
    assert not sqlite.exists()


def test_stream_refuses_a_resume_point_beyond_the_head(client: httpx.Client, sid: str) -> None:
    last = client.get(f"/api/sessions/{sid}").json()["last_seq"]
    for params, headers in (({"after_seq": last + 1}, {}), ({}, {"Last-Event-ID": str(last + 92)})):
        r = client.get(f"/api/sessions/{sid}/stream", params=params, headers=headers)
        assert r.status_code == 409, r.text
        body = r.json()
        assert body["error"] == "beyond_head" and body["current_seq"] == last
    # At the head itself is fine: it means "from now".
    with client.stream("GET", f"/api/sessions/{sid}/stream", params={"after_seq": last}) as r:
        assert r.status_code == 200


@pytest.fixture
def read_only_cors(tmp_path: Path) -> Iterator[ServerProcess]:
    eventlog.open(tmp_path / "store").close()  # a read-only server opens only a store that exists
    proc = ServerProcess(tmp_path / "store", "--read-only", "--cors-origin", "http://viewer.example")
    yield proc
    proc.stop()


def _preflight(url: str, origin: str, method: str) -> httpx.Response:
    return httpx.options(url + "/api/sessions", headers={
        "Origin": origin, "Access-Control-Request-Method": method}, timeout=10)


def test_read_only_cors_preflight_offers_only_reads(read_only_cors: ServerProcess) -> None:
    ok = _preflight(read_only_cors.url, "http://viewer.example", "GET")
    assert ok.status_code == 200
    offered = {m.strip() for m in ok.headers["access-control-allow-methods"].split(",")}
    assert offered == {"GET", "HEAD", "OPTIONS"}, offered
    post = _preflight(read_only_cors.url, "http://viewer.example", "POST")
    assert post.status_code == 400 and post.headers["content-type"] == "application/json"
    assert post.json()["error"] == "cors_refused"


def test_a_preflight_from_another_origin_is_refused_as_json(read_only_cors: ServerProcess) -> None:
    r = _preflight(read_only_cors.url, "http://evil.example", "GET")
    assert r.status_code == 400
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["error"] == "cors_refused" and "http://evil.example" in body["message"]
    assert "access-control-allow-origin" not in r.headers
