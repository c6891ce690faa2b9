"""Redis for the tests: the shared server on 127.0.0.1:6379, and servers of a test's own.

Every test run works under a key prefix of its own and deletes its keys afterwards.
Without a server the Redis tests skip with one line saying why, except under
``CI=true``, where a missing server is a failure: CI must run them.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

try:
    import redis
except ImportError:  # pragma: no cover - the extra is not installed
    if os.environ.get("CI") == "true":
        raise
    pytest.skip("the redis package is not installed (pip install '.[redis]')", allow_module_level=True)

__all__ = ["HOST", "PORT", "OwnServer", "delete_prefixed", "free_port", "redis", "run_prefix",
           "shared_server"]

HOST, PORT = "127.0.0.1", 6379


def shared_server() -> redis.Redis:
    """A client of the shared test server, or skip (fail under CI=true) if none answers."""
    client = redis.Redis(host=HOST, port=PORT, socket_connect_timeout=1, socket_timeout=5)
    try:
        client.ping()
    except redis.RedisError as exc:
        client.close()
        why = f"no Redis server answers on {HOST}:{PORT} ({exc})"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{why}; CI=true, so the Redis tests must run")
        pytest.skip(why)
    return client


def run_prefix() -> Iterator[str]:
    """A key prefix for one test run; its keys are deleted when the run ends."""
    client = shared_server()
    prefix = f"eventlog-test-{uuid.uuid4().hex[:12]}:"
    try:
        yield prefix
    finally:
        delete_prefixed(client, prefix)
        client.close()


def delete_prefixed(client: redis.Redis, prefix: str) -> None:
    keys = list(client.scan_iter(match=prefix + "*", count=1000))
    for start in range(0, len(keys), 500):
        client.delete(*keys[start:start + 500])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


class OwnServer:
    """A redis-server of the test's own, on a port of its own, stopped by its PID."""

    def __init__(self, directory: Path, *args: str, tls: bool = False) -> None:
        if shutil.which("redis-server") is None:
            if os.environ.get("CI") == "true":
                pytest.fail("redis-server is not installed; CI=true, so the Redis tests must run")
            pytest.skip("redis-server is not installed")
        self.directory = directory
        self.port = free_port()
        self.args = args
        self.tls = tls
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> OwnServer:
        self.proc = subprocess.Popen(
            ["redis-server", "--bind", HOST, *self._ports(), "--dir", str(self.directory),
             "--save", "", "--daemonize", "no", *self.args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((HOST, self.port), timeout=0.2):
                    return self
            except OSError:
                if self.proc.poll() is not None:
                    raise AssertionError(f"redis-server exited with {self.proc.returncode}") from None
                time.sleep(0.02)
        raise AssertionError("redis-server did not start within 10 s")

    def _ports(self) -> list[str]:
        if self.tls:  # TLS only: no plain-text port
            return ["--port", "0", "--tls-port", str(self.port)]
        return ["--port", str(self.port)]

    def stop(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            self.proc.wait(10)
        self.proc = None
