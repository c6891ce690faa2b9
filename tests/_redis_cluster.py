"""A real Redis Cluster on loopback for the tests: six ``redis-server --cluster-enabled yes``
nodes (three masters, each with a replica) on ports the OS hands out, joined with
``redis-cli --cluster create``, stopped by their PIDs and their directory removed after.

Without ``redis-server`` (or ``redis-cli``) the cluster tests skip with one line saying why,
except under ``CI=true``, where that is a failure: CI must run them.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from ._redis_support import HOST, free_port, redis

NODE_TIMEOUT_MS = 1000  # how long a master may be silent before its replica takes over


def _need(binary: str) -> None:
    if shutil.which(binary) is None:
        why = f"{binary} is not installed (a Redis Cluster needs it)"
        if os.environ.get("CI") == "true":
            pytest.fail(f"{why}; CI=true, so the Redis Cluster tests must run")
        pytest.skip(why)


class Node:
    """One cluster node: a redis-server process of the test's own."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.port = free_port()
        self.bus_port = free_port()  # by default port + 10000, which may be taken or past 65535
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--bind", HOST, "--port", str(self.port), "--cluster-enabled", "yes",
             "--cluster-port", str(self.bus_port),
             "--cluster-config-file", f"nodes-{self.port}.conf",
             "--cluster-node-timeout", str(NODE_TIMEOUT_MS), "--dir", str(self.directory),
             "--save", "", "--appendonly", "no", "--daemonize", "no",
             # Keep a replica eligible however long its master was gone (the tests kill masters).
             "--cluster-replica-validity-factor", "0",
             # A replica (re)joining gets its first copy at once, not after the default 5 s
             # wait for other replicas to share the transfer with.
             "--repl-diskless-sync-delay", "0",
             "--logfile", str(self.directory / f"{self.port}.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def client(self) -> redis.Redis:
        return redis.Redis(host=HOST, port=self.port, socket_connect_timeout=1, socket_timeout=5)

    def call(self, *args: str) -> object:
        with self.client() as client:
            return client.execute_command(*args)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def role(self) -> str:
        with self.client() as client:
            return str(client.info("replication")["role"])

    def replication(self) -> dict[str, object]:
        with self.client() as client:
            return dict(client.info("replication"))


class Cluster:
    """Six nodes, three masters with one replica each; ``url`` reaches it through any node."""

    def __init__(self) -> None:
        _need("redis-server")
        _need("redis-cli")
        self.directory = Path(tempfile.mkdtemp(prefix="eventlog-cluster-"))
        self.nodes = [Node(self.directory) for _ in range(6)]

    @property
    def url(self) -> str:
        return f"redis+cluster://{HOST}:{self.nodes[0].port}/0"

    def start(self) -> Cluster:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        for node in self.nodes:
            node.start()
        for node in self.nodes:
            self._wait_for(lambda n=node: n.call("PING") in (True, b"PONG"), f"node {node.port} up")
        subprocess.run(["redis-cli", "--cluster", "create",
                        *(f"{HOST}:{node.port}" for node in self.nodes),
                        "--cluster-replicas", "1", "--cluster-yes"],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=60)
        self.wait_healthy()

    def _wait_for(self, check: object, what: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        last: Exception | None = None
        while time.monotonic() < deadline:
            try:
                if check():  # type: ignore[operator]
                    return
            except redis.RedisError as exc:
                last = exc
            time.sleep(0.05)
        raise AssertionError(f"Redis Cluster: {what} not reached within {timeout:g} s ({last})")

    def _healthy(self) -> bool:
        """Every live node says the cluster is ok, and three masters each have a replica."""
        masters = replicas = 0
        for node in self.nodes:
            if not node.alive():
                return False
            info = node.call("CLUSTER", "INFO")
            text = info.decode() if isinstance(info, bytes) else str(info)
            if "cluster_state:ok" not in text:
                return False
            role = node.role()
            masters += role == "master"
            replicas += role == "slave"
        if (masters, replicas) != (3, 3):
            return False
        # Each replica must be in sync with its master (not still loading from it).
        for node in self.nodes:
            if node.role() == "slave" and node.replication().get("master_link_status") != "up":
                return False
        return True

    def wait_healthy(self, timeout: float = 30.0) -> None:
        self._wait_for(self._healthy, "cluster_state:ok with 3 masters and 3 replicas", timeout)

    def node_of(self, key: str) -> Node:
        """The master that holds ``key``'s slot now (as the live nodes see it)."""
        for asked in self.nodes:
            if not asked.alive():
                continue
            slot = int(asked.call("CLUSTER", "KEYSLOT", key))  # type: ignore[call-overload]
            for first, last, master, *_replicas in asked.call("CLUSTER", "SLOTS"):  # type: ignore[attr-defined]
                if first <= slot <= last:
                    return next(n for n in self.nodes if n.port == int(master[1]))
        raise AssertionError(f"no master holds the slot of {key!r}")

    def replica_of(self, master: Node) -> Node:
        with master.client() as client:
            my_id = client.execute_command("CLUSTER", "MYID")
        my_id = my_id.decode() if isinstance(my_id, bytes) else my_id
        for node in self.nodes:
            if node is not master and node.alive() and node.role() == "slave":
                with node.client() as client:
                    info = client.execute_command("CLUSTER", "NODES")
                text = info.decode() if isinstance(info, bytes) else str(info)
                for line in text.splitlines():
                    fields = line.split()
                    if "myself" in fields[2] and fields[3] == my_id:
                        return node
        raise AssertionError(f"master {master.port} has no replica")

    def restart(self, node: Node) -> None:
        """Start a killed node again: it rejoins (as a replica of whoever took its slots)."""
        node.kill()
        node.start()

    def stop(self) -> None:
        for node in self.nodes:
            node.kill()
        shutil.rmtree(self.directory, ignore_errors=True)
