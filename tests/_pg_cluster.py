"""A PostgreSQL cluster of the test's own (initdb into a temporary directory, a free port),
for the tests that restart the server: the shared server on 5432 is never restarted.

PostgreSQL refuses to run as root, so as root the cluster is made and run as the
``postgres`` OS user (``runuser``), in a directory it owns. Without ``initdb`` the tests
skip with one line saying why, except under ``CI=true``, where that is a failure.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

BIN = Path(os.environ.get("EVENTLOG_PG_BIN", "/usr/lib/postgresql/15/bin"))
HOST = "127.0.0.1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


class OwnCluster:
    """initdb, pg_ctl start/restart/stop; ``url`` names its database ``postgres``."""

    def __init__(self, *settings: str) -> None:
        if not (BIN / "initdb").exists():
            why = f"{BIN / 'initdb'} is not installed, so no PostgreSQL cluster of the test's own"
            if os.environ.get("CI") == "true":
                pytest.fail(f"{why}; CI=true, so this test must run")
            pytest.skip(why)
        self.root = Path(tempfile.mkdtemp(prefix="eventlog-pg-"))
        self.data = self.root / "data"
        self.port = _free_port()
        self.as_user: list[str] = []
        if os.geteuid() == 0:
            self.as_user = ["runuser", "-u", "postgres", "--"]
            shutil.chown(self.root, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--no-sync")
        conf = ["listen_addresses = '127.0.0.1'", f"port = {self.port}",
                f"unix_socket_directories = '{self.root}'",
                # Durable commits (an acknowledged append must survive an immediate stop),
                # but no fsync: a restart is a process's death, not the machine's.
                "fsync = off", "synchronous_commit = on", "full_page_writes = off",
                "max_connections = 60", "shared_buffers = 32MB", *settings]
        with open(self.data / "postgresql.conf", "a") as f:
            f.write("\n".join(conf) + "\n")
        self.url = f"postgresql://postgres@{HOST}:{self.port}/postgres"

    def _run(self, tool: str, *args: str) -> None:
        done = subprocess.run([*self.as_user, str(BIN / tool), *args], capture_output=True,
                              text=True, timeout=120, cwd=self.root)
        if done.returncode != 0:
            raise AssertionError(f"{tool} {' '.join(args)} failed: {done.stdout}{done.stderr}")

    def _ctl(self, *args: str) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.root / "log"), "-w", "-t", "60", *args)

    def start(self) -> OwnCluster:
        self._ctl("start")
        return self

    def restart(self, mode: str) -> None:
        """``pg_ctl restart -m fast`` (clients told to go) or ``immediate`` (killed: recovery
        from the WAL at the next start, as after a crash)."""
        self._ctl("restart", "-m", mode)

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            try:
                self._ctl("stop", "-m", "immediate")
            except AssertionError:
                pass
        shutil.rmtree(self.root, ignore_errors=True)

    def wait_answering(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((HOST, self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise AssertionError(f"the cluster on port {self.port} did not answer within {timeout} s")
