"""The test proxy (tests/_tcp_proxy.py) itself: it must forward on descriptors numbered
1,024 and up, which a long test run's process reaches (select() can't watch them, and the
proxy quietly closed every connection: CI's proxy tests of Redis and PostgreSQL all failed)."""

from __future__ import annotations

import os
import resource
import socket
import threading
from collections.abc import Iterator

import pytest

from ._tcp_proxy import DroppingProxy


@pytest.fixture
def echo() -> Iterator[tuple[str, int]]:
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                while data := conn.recv(65536):
                    conn.sendall(data)

    threading.Thread(target=serve, daemon=True).start()
    yield listener.getsockname()[:2]
    listener.close()


def test_the_proxy_forwards_on_descriptors_past_1024(echo: tuple[str, int]) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 2048:
        pytest.skip(f"the descriptor limit is {hard}: can't open past 1,024")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 2048), hard))
    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        proxy = DroppingProxy(echo)
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=10) as client:
            assert client.fileno() >= 1024
            client.sendall(b"ping")
            assert client.recv(4) == b"ping"
        proxy.close()
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
