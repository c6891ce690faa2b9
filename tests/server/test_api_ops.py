"""Operations (health, stats, verify, metrics), the OpenAPI document against the routes, the viewer's
files and headers, and how failures of the store become statuses."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.routing import Route

import eventlog
from eventlog.server import create_app
from eventlog.server._context import Settings
from eventlog.server._openapi import build_openapi

from .support import AUTH, TOKEN, ServerProcess, running


def _metrics(client: httpx.Client) -> dict[str, float]:
    r = client.get("/metrics")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/plain; version=0.0.4; charset=utf-8"
    samples = {}
    for family in text_string_to_metric_families(r.text):  # Prometheus's own parser
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            samples[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return samples


def test_health(client: httpx.Client) -> None:
    r = client.get("/healthz")
    assert r.status_code == 200 and r.json() == {"status": "ok", "version": eventlog.__version__}


def test_stats(client: httpx.Client, sid: str) -> None:
    client.post(f"/api/sessions/{sid}/messages", headers=AUTH, json={"sender": "Ann", "content": "x"})
    stats = client.get("/api/stats").json()
    assert stats["sessions"] >= 1 and stats["events"] >= 2 and stats["messages"] >= 1
    assert stats["bytes"] > 0 and stats["read_only"] is False and stats["allow_delete"] is True
    assert stats["appended_events"]["message"] >= 1 and stats["appended_events"]["session"] >= 1


def test_metrics_count_appends_and_requests(client: httpx.Client, sid: str) -> None:
    before = _metrics(client)
    client.post(f"/api/sessions/{sid}/messages", headers=AUTH,
                json={"messages": [{"sender": "Ann", "content": str(n)} for n in range(3)]})
    client.post(f"/api/sessions/{sid}/events", headers=AUTH, json={"type": "x"})
    after = _metrics(client)
    key = "eventlog_appended_events_total{kind=%s}"
    assert after[key % "message"] - before[key % "message"] == 3
    assert after[key % "event"] - before[key % "event"] == 1
    assert after["eventlog_append_seconds_count"] - before["eventlog_append_seconds_count"] == 2
    assert after["eventlog_append_seconds_bucket{le=+Inf}"] == after["eventlog_append_seconds_count"]
    assert after["eventlog_append_seconds_sum"] > before["eventlog_append_seconds_sum"]
    assert after["eventlog_sessions"] >= 1 and after["eventlog_store_bytes"] > 0
    assert after["eventlog_http_requests_total{code=201,method=POST}"] >= 2


def test_verify_and_damage(client: httpx.Client, server: ServerProcess, sid: str) -> None:
    client.post(f"/api/sessions/{sid}/messages", headers=AUTH, json={"sender": "Ann", "content": "hello"})
    r = client.get(f"/api/sessions/{sid}/verify").json()
    assert r["ok"] is True and r["events_checked"] == 2 and r["problems"] == [] and r["session_id"] == sid
    listed = {s["session_id"]: s for s in client.get("/api/sessions", params={"q": sid}).json()["sessions"]}
    assert listed[sid]["verify"]["ok"] is True
    failures = _metrics(client)["eventlog_verify_failures_total"]

    # Flip one byte of the message's content on disk: the digest chain must notice.
    segment = next((server.store / sid).glob("seg-*.jsonl"))
    segment.write_bytes(segment.read_bytes().replace(b'"hello"', b'"jello"'))
    report = client.get(f"/api/sessions/{sid}/verify").json()
    assert report["ok"] is False and report["problems"] and sid in report["problems"][0]
    assert _metrics(client)["eventlog_verify_failures_total"] == failures + 1
    store = client.get("/api/verify").json()
    assert store["ok"] is False and store["sessions_checked"] >= 1
    r = client.get(f"/api/sessions/{sid}/messages")
    assert r.status_code == 500 and r.json()["error"] == "corrupt_log" and sid in r.json()["message"]
    assert "Traceback" not in r.text
    # The list still answers, naming the damaged session apart.
    page = client.get("/api/sessions", params={"q": sid}).json()
    assert page["sessions"] == [] and page["unreadable"][0]["session_id"] == sid
    assert client.get("/api/stats").json()["unreadable_sessions"] >= 1
    assert client.delete(f"/api/sessions/{sid}", headers=AUTH).status_code == 204


def test_verify_missing(client: httpx.Client) -> None:
    assert client.get("/api/sessions/missing-one/verify").status_code == 404


# The viewer's files and the headers every answer carries ---------------------------------------

def test_viewer_files_and_headers(client: httpx.Client) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp and "unsafe-inline" not in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    assert "<script" in page.text and "onclick" not in page.text and "style=" not in page.text
    for name, kind in [("app.js", "text/javascript"), ("app.css", "text/css"), ("icon.svg", "image/svg+xml")]:
        r = client.get(f"/static/{name}")
        assert r.status_code == 200 and r.headers["content-type"].startswith(kind) and r.content
    script = client.get("/static/app.js").text
    for sink in (".innerHTML", ".outerHTML", "insertAdjacentHTML", "document.write", "eval(", "Function("):
        assert sink not in script, sink
    for bad in ("/static/nope.js", "/static/..%2Fapp.js", "/static/index.html"):
        r = client.get(bad)
        assert r.status_code == 404 and r.json()["error"] == "not_found"
    assert client.get("/api/sessions").headers["content-security-policy"] == csp


def test_unknown_routes_and_methods(client: httpx.Client) -> None:
    for path in ("/nope", "/api/sessions/", "/api", "/api/sessions/x/y"):
        r = client.get(path)
        assert r.status_code == 404 and r.json()["error"] == "not_found", path
    r = client.put("/api/sessions/x")
    assert r.status_code == 405 and r.json()["error"] == "method_not_allowed"
    assert set(r.headers["allow"].replace(" ", "").split(",")) == {"GET", "HEAD", "DELETE"}
    assert client.request("PATCH", "/api/sessions").status_code == 405
    head = client.head("/healthz")
    assert head.status_code == 200 and head.content == b""


def test_no_cors_unless_configured(client: httpx.Client) -> None:
    r = client.get("/api/sessions", headers={"Origin": "http://evil.example"})
    assert "access-control-allow-origin" not in r.headers
    pre = client.options("/api/sessions", headers={"Origin": "http://evil.example",
                                                   "Access-Control-Request-Method": "POST"})
    assert pre.status_code == 405 and "access-control-allow-origin" not in pre.headers


# The OpenAPI document says exactly what is served -------------------------------------------

def _served(app: object) -> set[tuple[str, str]]:
    found = set()
    for route in app.routes:  # type: ignore[attr-defined]
        assert isinstance(route, Route)
        for method in route.methods or ():
            if method != "HEAD":  # served for every GET by Starlette; OpenAPI leaves it implied
                found.add((route.path, method.lower()))
    return found


def _documented(doc: dict[str, object]) -> set[tuple[str, str]]:
    paths = doc["paths"]
    assert isinstance(paths, dict)
    return {(path, method) for path, ops in paths.items() for method in ops}


@pytest.mark.parametrize(("read_only", "allow_delete", "allow_redact"),
                         [(False, False, False), (False, True, False), (True, False, False),
                          (False, False, True)])
def test_openapi_matches_the_routes(tmp_path: Path, read_only: bool, allow_delete: bool,
                                    allow_redact: bool) -> None:
    with eventlog.open(tmp_path) as log:
        app = create_app(log, token=TOKEN, read_only=read_only, allow_delete=allow_delete,
                         allow_redact=allow_redact)
        doc = build_openapi(Settings(token=TOKEN, read_only=read_only, allow_delete=allow_delete,
                                     allow_redact=allow_redact), eventlog.__version__)
        assert _served(app) == _documented(doc)
        assert (("/api/sessions/{session_id}/redact", "post") in _documented(doc)) == allow_redact
        writes = {m for _, m in _documented(doc)} - {"get"}
        assert writes == (set() if read_only else {"post", "delete"} if allow_delete else {"post"})
        # every $ref resolves
        text = str(doc)
        components = doc["components"]
        assert isinstance(components, dict)
        schemas = components["schemas"]
        for name in {part.split("'")[0] for part in text.split("#/components/schemas/")[1:]}:
            assert name in schemas, name


def test_openapi_served_is_the_one_built(client: httpx.Client) -> None:
    served = client.get("/openapi.json").json()
    expected = build_openapi(Settings(token=TOKEN, allow_delete=True), eventlog.__version__)
    assert served == expected
    assert served["openapi"] == "3.1.0"


# Failures of the store, in in-process servers ------------------------------------------------

@pytest.fixture
def store(tmp_path: Path) -> Path:
    return tmp_path / "store"


def test_internal_error_is_json_without_traceback(store: Path) -> None:
    with eventlog.open(store) as log:
        app = create_app(log, token=TOKEN)

        def broken(*args: object, **kwargs: object) -> None:
            raise RuntimeError("secret internals")

        log.get_session = broken  # type: ignore[method-assign,assignment]
        with running(app) as url:
            r = httpx.get(f"{url}/api/sessions/any")
    assert r.status_code == 500 and r.json()["error"] == "internal_error"
    assert "secret internals" not in r.text and "Traceback" not in r.text


def test_lock_timeout_is_503(store: Path) -> None:
    with eventlog.open(store, lock_timeout=0.2) as log:
        log.create_session("locked")
        app = create_app(log, token=TOKEN)
        fd = os.open(store / "locked" / "lock", os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)  # another writer holds the session
            with running(app) as url:
                r = httpx.post(f"{url}/api/sessions/locked/messages", headers=AUTH,
                               json={"sender": "a", "content": "b"})
        finally:
            os.close(fd)
        assert r.status_code == 503 and r.json()["error"] == "busy" and r.headers["retry-after"] == "1"
        assert log.get_session("locked").last_seq == 1


def test_size_limits(store: Path) -> None:
    with eventlog.open(store, max_event_bytes=1024) as log:
        log.create_session("small")
        app = create_app(log, token=TOKEN, max_body_bytes=8192)
        with running(app) as url:
            r = httpx.post(f"{url}/api/sessions/small/messages", headers=AUTH,
                           json={"sender": "a", "content": "x" * 2000})
            assert r.status_code == 413 and r.json()["error"] == "event_too_large"
            r = httpx.post(f"{url}/api/sessions/small/messages", headers=AUTH,
                           json={"sender": "a", "content": "x" * 9000})
            assert r.status_code == 413 and r.json()["error"] == "body_too_large"
        assert log.get_session("small").last_seq == 1


def test_closed_store_is_503(store: Path) -> None:
    log = eventlog.open(store)
    log.create_session("c")
    app = create_app(log, token=TOKEN)
    log.close()
    with running(app) as url:
        r = httpx.get(f"{url}/api/sessions/c")
    assert r.status_code == 503 and r.json()["error"] == "closed"


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"token": None}, "token"), ({"token": "short"}, "token"),
    ({"token": TOKEN, "read_only": True, "allow_delete": True}, "read_only"),
    ({"token": TOKEN, "max_body_bytes": 10}, "max_body_bytes"),
])
def test_create_app_checks_its_settings(store: Path, kwargs: dict[str, object], message: str) -> None:
    with eventlog.open(store) as log, pytest.raises(eventlog.InvalidInputError, match=message):
        create_app(log, **kwargs)  # type: ignore[arg-type]


def test_read_only_app_needs_no_token(store: Path) -> None:
    with eventlog.open(store) as log:
        create_app(log, token=None, read_only=True)


@pytest.fixture
def cors_server(tmp_path: Path) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path / "store", "--cors-origin", "http://viewer.example")
    yield proc
    proc.stop()


def test_cors_when_configured(cors_server: ServerProcess) -> None:
    with httpx.Client(base_url=cors_server.url, timeout=10) as client:
        ok = client.get("/api/sessions", headers={"Origin": "http://viewer.example"})
        assert ok.headers["access-control-allow-origin"] == "http://viewer.example"
        other = client.get("/api/sessions", headers={"Origin": "http://evil.example"})
        assert "access-control-allow-origin" not in other.headers
        pre = client.options("/api/sessions", headers={
            "Origin": "http://viewer.example", "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type"})
        assert pre.status_code == 200
        assert "POST" in pre.headers["access-control-allow-methods"]


def test_host_header_guards_against_dns_rebinding(client: httpx.Client, server: ServerProcess) -> None:
    port = server.url.rsplit(":", 1)[1]
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}", "LOCALHOST"):
        assert client.get("/api/sessions", headers={"Host": host}).status_code == 200, host
    for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.evil.example", ""):
        r = client.get("/api/sessions", headers={"Host": host})
        assert r.status_code == 400 and r.json()["error"] == "bad_host", host
        assert r.headers["content-security-policy"]


def test_any_host_when_told(store: Path) -> None:
    with eventlog.open(store) as log:
        app = create_app(log, token=TOKEN, allowed_hosts=None)
        with running(app) as url:
            assert httpx.get(f"{url}/healthz", headers={"Host": "box.lan"}).status_code == 200
