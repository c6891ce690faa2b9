"""A TCP proxy in front of a Redis server that can drop a connection mid-command.

It forwards bytes both ways. Armed with a command name, it drops the connection of the
next request holding that command: before forwarding it (the server never sees it), or
after the server has answered but before the answer is forwarded (the command ran; its
reply is lost). That is what a dropped connection does to a client, at exactly the
worst moment, without patching the client. Armed with no command, it drops the
``skip + 1``-th request of any kind; ``on_drop`` runs right then, while the client still
waits for its answer, so other clients' work lands between a lost reply and its retry.

``cut()`` closes every connection at once, and ``down()``/``up()`` refuse new ones in
between: what a client sees of a server restart, or of a network link cut and restored,
while the server itself runs on.
"""

from __future__ import annotations

import select
import socket
import threading
from collections.abc import Callable


class DroppingProxy:
    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.armed: tuple[bytes | None, str] | None = None
        self.dropped = 0
        self.requests = 0  # requests seen since the last arm()
        self._skip = 0
        self._on_drop: Callable[[], None] | None = None
        self._lock = threading.Lock()
        self._closing = False
        self._down = False
        self._open: set[socket.socket] = set()
        self.cut_links = 0  # connections closed by cut() and down()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def arm(self, command: bytes | None, when: str, *, skip: int = 0,
            on_drop: Callable[[], None] | None = None) -> None:
        """Drop the connection of the next request with ``command`` (None: of any request,
        after ``skip`` of them): ``when`` is "before" (not forwarded) or "after" (forwarded,
        executed, reply swallowed). ``on_drop`` runs before the client learns of it."""
        assert when in ("before", "after")
        with self._lock:
            self.armed = (command, when)
            self.requests = 0
            self._skip = skip
            self._on_drop = on_drop

    def disarm(self) -> None:
        with self._lock:
            self.armed = None

    def cut(self) -> None:
        """Close every connection now (both ends), as a restarting server or a cut link does."""
        with self._lock:
            socks, self._open = list(self._open), set()
            self.cut_links += len(socks) // 2
        for sock in socks:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def down(self) -> None:
        """Cut every connection, and close new ones at once until ``up()``."""
        with self._lock:
            self._down = True
        self.cut()

    def up(self) -> None:
        with self._lock:
            self._down = False

    def _take(self, data: bytes) -> str | None:
        with self._lock:
            self.requests += 1
            if self.armed is not None and (self.armed[0] is None or self.armed[0] in data):
                if self._skip > 0:
                    self._skip -= 1
                    return None
                when = self.armed[1]
                self.armed = None
                self.dropped += 1
                return when
        return None

    def _dropping(self) -> None:
        if self._on_drop is not None:
            self._on_drop()

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                down = self._down
            if down:
                client.close()
                continue
            server = socket.create_connection(self.upstream)
            with self._lock:
                self._open.update((client, server))
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        try:
            while True:
                ready = _readable([client, server], 0.5)
                if self._closing:
                    return
                for sock in ready:
                    data = sock.recv(65536)
                    if not data:
                        return
                    if sock is server:
                        client.sendall(data)
                        continue
                    when = self._take(data)
                    if when == "before":
                        # The server's end first: a pipelined request's earlier statements
                        # (PostgreSQL's row lock) may have gone ahead in an earlier write,
                        # and their transaction must end before others work meanwhile.
                        _close(server)
                        self._dropping()
                        return
                    server.sendall(data)
                    if when == "after":
                        _swallow_reply(client, server)
                        self._dropping()
                        return
        except (OSError, ValueError):  # ValueError: a socket cut() closed (its fileno is -1)
            return
        finally:
            with self._lock:
                self._open.difference_update((client, server))
            client.close()
            server.close()

    def close(self) -> None:
        self._closing = True
        self.listener.close()


def _swallow_reply(client: socket.socket, server: socket.socket) -> None:
    """Forward the client's bytes until the server answers, and swallow the answer, which
    the client never gets. A pipelined request may come in more than one write (the
    PostgreSQL client sends its Sync after the statements), and the server answers only
    once it has the last of them."""
    while True:
        ready = _readable([client, server], 10.0)
        if not ready or server in ready:
            if ready:
                server.recv(65536)
            return
        data = client.recv(65536)
        if not data:
            return
        server.sendall(data)


def _readable(socks: list[socket.socket], timeout: float) -> list[socket.socket]:
    """The sockets with something to read (or closed), within ``timeout`` seconds. poll,
    not select: select() can't watch a descriptor numbered 1,024 or more, and a long test
    run's process can hold that many (the proxy then quietly closed every connection)."""
    poller = select.poll()
    by_fd = {}
    for sock in socks:
        fd = sock.fileno()
        if fd < 0:
            raise ValueError("a closed socket")
        poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
        by_fd[fd] = sock
    return [by_fd[fd] for fd, _ in poller.poll(timeout * 1000)]


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
