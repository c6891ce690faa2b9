"""A TCP proxy in front of a Redis server that can drop a connection mid-command.

It forwards bytes both ways. Armed with a command name, it drops the connection of the
next request holding that command: before forwarding it (the server never sees it), or
after the server has answered but before the answer is forwarded (the command ran; its
reply is lost). That is what a dropped connection does to a client, at exactly the
worst moment, without patching the client.
"""

from __future__ import annotations

import select
import socket
import threading


class DroppingProxy:
    def __init__(self, upstream: tuple[str, int]) -> None:
        self.upstream = upstream
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.armed: tuple[bytes, str] | None = None
        self.dropped = 0
        self._lock = threading.Lock()
        self._closing = False
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def arm(self, command: bytes, when: str) -> None:
        """Drop the connection of the next request with ``command``: ``when`` is "before"
        (not forwarded) or "after" (forwarded, executed, reply swallowed)."""
        assert when in ("before", "after")
        with self._lock:
            self.armed = (command, when)

    def _take(self, data: bytes) -> str | None:
        with self._lock:
            if self.armed is not None and self.armed[0] in data:
                when = self.armed[1]
                self.armed = None
                self.dropped += 1
                return when
        return None

    def _accept(self) -> None:
        while not self._closing:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            server = socket.create_connection(self.upstream)
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    def _pump(self, client: socket.socket, server: socket.socket) -> None:
        try:
            while True:
                ready, _, _ = select.select([client, server], [], [], 0.5)
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
                        return
                    server.sendall(data)
                    if when == "after":
                        server.recv(65536)  # the reply, which the client never gets
                        return
        except OSError:
            return
        finally:
            client.close()
            server.close()

    def close(self) -> None:
        self._closing = True
        self.listener.close()
