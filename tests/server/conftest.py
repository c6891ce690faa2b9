from __future__ import annotations

import importlib.util
import os
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

_MISSING = [m for m in ("starlette", "uvicorn", "httpx") if importlib.util.find_spec(m) is None]
if _MISSING and os.environ.get("CI"):
    raise RuntimeError(f"CI must install the server's test dependencies; missing: {_MISSING}")
if _MISSING:  # a checkout without pip install '.[test]': leave the server's tests out
    collect_ignore_glob = ["test_*.py"]
else:
    import httpx

    from .support import AUTH, ServerProcess

if TYPE_CHECKING:
    import httpx

    from .support import ServerProcess


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One server process (writes and deletes allowed) shared by the API tests."""
    proc = ServerProcess(tmp_path_factory.mktemp("store"), "--allow-delete")
    yield proc
    assert proc.stop() == 0, proc.output
    assert "Traceback" not in proc.output, proc.output


@pytest.fixture
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=20) as c:
        yield c


@pytest.fixture
def sid(client: httpx.Client) -> str:
    """A fresh session with two participants."""
    session_id = "s-" + uuid.uuid4().hex[:12]
    r = client.post("/api/sessions", json={"session_id": session_id, "participants": ["Ann", "Bob"]},
                    headers=AUTH)
    assert r.status_code == 201, r.text
    return session_id
