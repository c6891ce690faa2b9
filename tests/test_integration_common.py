"""Framework-free parts of eventlog.integrations: optional imports, the marker fold and the store
resolution (writes that outlive a cancellation: tests/test_async.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import eventlog
from eventlog.integrations._common import append_events, read_live, resolve_store

# A child interpreter that sees eventlog as this test does, with some modules made unimportable.
SOURCE_ROOT = str(Path(eventlog.__file__).resolve().parent.parent)
BLOCKER = """
import sys
class Blocker:
    blocked = {blocked!r}
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.blocked:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
sys.meta_path.insert(0, Blocker())
"""


def run_hidden(blocked: list[str], code: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": SOURCE_ROOT}
    return subprocess.run([sys.executable, "-c", BLOCKER.format(blocked=blocked) + code],
                          capture_output=True, text=True, env=env, timeout=120)


def test_eventlog_imports_without_any_framework() -> None:
    done = run_hidden(["langchain_core", "agents", "openai", "langgraph", "google", "pydantic_ai"],
                      "import eventlog, eventlog.integrations\n"
                      "assert not any(m.split('.')[0] in ('langchain_core', 'agents', 'langgraph', "
                      "'google', 'pydantic_ai') for m in sys.modules)\n"
                      "print('ok')")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


@pytest.mark.parametrize(("module", "blocked", "package", "extra"), [
    ("eventlog.integrations.langchain", "langchain_core", "langchain-core", "langchain"),
    ("eventlog.integrations.openai_agents", "agents", "openai-agents", "openai-agents"),
    ("eventlog.integrations.langgraph", "langgraph", "langgraph", "langgraph"),
    ("eventlog.integrations.adk", "google", "google-adk", "adk"),
    ("eventlog.integrations.pydantic_ai", "pydantic_ai", "pydantic-ai", "pydantic-ai"),
])
def test_an_integration_without_its_framework_fails_with_one_line(module: str, blocked: str,
                                                                   package: str, extra: str) -> None:
    done = run_hidden([blocked], f"import {module}")
    assert done.returncode == 1
    last = done.stderr.strip().splitlines()[-1]
    assert last == (f"ImportError: {module} needs {package}, "
                    f"which is not installed (no module named {blocked!r}): "
                    f"pip install 'eventlog[{extra}]'")
    # ``from None``: no chained "During handling of the above exception" traceback.
    assert "During handling" not in done.stderr
    assert "ModuleNotFoundError" not in done.stderr


def test_import_error_is_catchable_and_names_the_module() -> None:
    done = run_hidden(["langchain_core"],
                      "try:\n    import eventlog.integrations.langchain\n"
                      "except ImportError as exc:\n    print(exc.name)\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "langchain_core"


# The marker fold ----------------------------------------------------------------------

@pytest.fixture
def log(tmp_path: Path) -> Iterator[eventlog.EventLog]:
    with eventlog.open(tmp_path / "store") as store:
        yield store


def _items(log: eventlog.EventLog, sid: str, limit: int | None = None) -> list[object]:
    live = read_live(log, sid, item="t.item", cleared="t.cleared", retracted="t.gone", limit=limit)
    return [event.data for event in live.items]


def test_read_live_folds_markers_and_ignores_other_events(log: eventlog.EventLog) -> None:
    events = append_events(log, "s", [("t.item", n) for n in range(5)], metadata={})
    assert [e.seq for e in events] == [2, 3, 4, 5, 6]  # seq 1: the session's creation
    log.append("s", "t.gone", {"seq": 4})             # hides item 2
    log.append("s", "other.thing", {"x": 1})          # not ours: ignored
    log.add_message(eventlog.ChatMessage(sender="a", content="hi", session_id="s"))
    assert _items(log, "s") == [0, 1, 3, 4]
    assert _items(log, "s", limit=3) == [1, 3, 4]
    assert read_live(log, "s", item="t.item", cleared="t.cleared").head_seq == 9
    log.append("s", "t.cleared", {})
    log.append("s", "t.item", "after")
    assert _items(log, "s") == ["after"]
    assert _items(log, "s", limit=5) == ["after"]
    # Without a retracted type, the same log reads its markers as foreign events.
    assert [e.data for e in read_live(log, "s", item="t.item", cleared="none").items] == [
        0, 1, 2, 3, 4, "after"]


def test_read_live_of_a_missing_session_is_empty(log: eventlog.EventLog) -> None:
    live = read_live(log, "nobody", item="t.item", cleared="t.cleared")
    assert live.items == [] and live.head_seq == 0
    assert not log.session_exists("nobody")


def test_read_live_refuses_a_malformed_marker(log: eventlog.EventLog) -> None:
    append_events(log, "s", [("t.item", 1)], metadata={})
    log.append("s", "t.gone", {"seq": "2"})
    with pytest.raises(eventlog.CorruptLogError, match=r"seq 3: a 't.gone' event must carry"):
        _items(log, "s")


@pytest.mark.parametrize("limit", [0, -1])
def test_read_live_refuses_a_limit_below_one(log: eventlog.EventLog, limit: int) -> None:
    with pytest.raises(eventlog.InvalidInputError):
        _items(log, "s", limit=limit)


def test_append_events_creates_the_session_once_with_metadata(log: eventlog.EventLog) -> None:
    append_events(log, "s", [("t.item", 1)], metadata={"integration": "test"})
    append_events(log, "s", [("t.item", 2)], metadata={"integration": "other"})
    state = log.get_session("s")
    assert state.metadata == {"integration": "test"}
    assert state.last_seq == 3


def test_append_events_refuses_bad_data_before_creating_anything(log: eventlog.EventLog) -> None:
    with pytest.raises(eventlog.InvalidEventError):
        append_events(log, "s", [("t.item", 1), ("t.item", {1, 2})], metadata={})
    with pytest.raises(eventlog.InvalidEventError, match="reserved"):
        append_events(log, "s", [("message.x", 1)], metadata={})
    assert not log.session_exists("s")


# Store resolution -----------------------------------------------------------------------

def test_resolve_store_shares_one_log_per_location(tmp_path: Path) -> None:
    root = tmp_path / "shared"
    first = resolve_store(str(root))
    assert resolve_store(root) is first
    assert resolve_store(str(tmp_path / "." / "shared")) is first
    assert resolve_store(first) is first
    url = resolve_store(f"file://{tmp_path / 'other'}")
    assert url is not first
    first.close()  # someone closed the shared store: the next user gets a live one
    again = resolve_store(root)
    assert again is not first
    assert again.create_session("s").session_id == "s"


def test_a_relative_store_stays_where_it_was_opened(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    log = resolve_store("relative-store")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    log.create_session("s")
    with eventlog.open(tmp_path / "relative-store") as there:
        assert there.session_exists("s")
    assert not (tmp_path / "elsewhere" / "relative-store").exists()
    assert resolve_store("../relative-store") is log


@pytest.mark.parametrize("bad", ["", None, 42, b"bytes"])
def test_resolve_store_refuses_what_is_not_a_store(bad: object) -> None:
    with pytest.raises(eventlog.InvalidInputError):
        resolve_store(bad)  # type: ignore[arg-type]
