"""Real servers on loopback for the tests: a ``python -m eventlog.server`` process, or an app
run by uvicorn in a thread of the test process (for settings the command line has no flag for)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Iterator
from pathlib import Path

import httpx
import uvicorn
from starlette.applications import Starlette

from eventlog.server._serve import _Server

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "test-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
_READY = re.compile(r"eventlog: serving .* at (http://\S+)/ ")


def server_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["EVENTLOG_TOKEN"] = TOKEN
    env.update(extra)
    return env


class ServerProcess:
    """``python -m eventlog.server --port 0 ...``; the URL comes from the line it prints when ready."""

    def __init__(self, store: Path | str, *args: str, env: dict[str, str] | None = None) -> None:
        command = [sys.executable, "-m", "eventlog.server", "--store", str(store), "--port", "0",
                   "--log-level", "warning", *args]
        self.store = Path(store)
        self.proc = subprocess.Popen(command, env=env or server_env(), stderr=subprocess.PIPE,
                                     stdout=subprocess.DEVNULL, text=True, cwd=ROOT)
        self.lines: list[str] = []
        self.url = self._wait_ready()
        self._drain = threading.Thread(target=self._read_rest, daemon=True)
        self._drain.start()

    def _wait_ready(self, timeout: float = 30.0) -> str:
        assert self.proc.stderr is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            self.lines.append(line)
            match = _READY.search(line)
            if match:
                return match.group(1)
        self.proc.kill()
        raise RuntimeError("server did not start:\n" + "".join(self.lines))

    def _read_rest(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def stop(self, sig: int = signal.SIGINT, timeout: float = 15.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise
        self._drain.join(5)
        return self.proc.returncode


@contextlib.contextmanager
def running(app: Starlette) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port in a thread; yield its base URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="on")
    server = _Server(config, app.state.streams, "")
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("in-process server did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(20)
        assert not thread.is_alive(), "server thread did not stop"


def iter_sse(response: httpx.Response) -> Iterator[dict[str, str]]:
    """The events of an open SSE response, each {"id", "event", "data"} as sent."""
    current: dict[str, str] = {}
    for line in response.iter_lines():
        if line == "":
            if "data" in current:
                yield current
            current = {}
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        current[name] = current[name] + "\n" + value if name == "data" and name in current else value


_readers: weakref.WeakKeyDictionary[httpx.Response, Iterator[dict[str, str]]] = (
    weakref.WeakKeyDictionary())


def sse_events(response: httpx.Response, count: int) -> list[dict[str, str]]:
    """The next ``count`` events (fewer if the stream ends first); call again for more."""
    reader = _readers.setdefault(response, iter_sse(response))
    events: list[dict[str, str]] = []
    while len(events) < count:
        event = next(reader, None)
        if event is None:
            break
        events.append(event)
    return events
