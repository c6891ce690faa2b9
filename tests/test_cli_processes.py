"""The command line run as a user runs it: ``python -m eventlog ...`` in its own process,
with standard input, ``tail -f`` against another process that posts, Ctrl-C, and the demo."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import eventlog

ROOT = str(Path(eventlog.__file__).resolve().parent.parent)


def env(extra: dict[str, str] | None = None) -> dict[str, str]:
    found = {**os.environ, **(extra or {})}
    found["PYTHONPATH"] = os.pathsep.join(filter(None, [ROOT, found.get("PYTHONPATH")]))
    found.pop("EVENTLOG_STORE", None)
    return found


def eventlog_cmd(*args: str | Path, stdin: bytes | None = None, timeout: float = 60,
                 extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([sys.executable, "-m", "eventlog", *map(str, args)], input=stdin,
                          capture_output=True, env=env(extra_env), timeout=timeout, check=False)
    return subprocess.CompletedProcess(done.args, done.returncode, done.stdout.decode(),
                                       done.stderr.decode())


def test_python_dash_m(tmp_path):
    store = tmp_path / "s"
    done = eventlog_cmd("create", "team", "-p", "A", "--store", store)
    assert (done.returncode, done.stdout, done.stderr) == (0, "team\n", "")
    done = eventlog_cmd("show", "nope", "--store", store)
    assert (done.returncode, done.stdout, done.stderr) == (1, "", "eventlog: session 'nope' does not exist\n")
    done = eventlog_cmd("--version")
    assert (done.returncode, done.stdout) == (0, f"eventlog {eventlog.__version__}\n")


def test_post_reads_standard_input(tmp_path):
    store = tmp_path / "s"
    with eventlog.open(store) as log:
        log.create_session("team")
    done = eventlog_cmd("post", "team", "--sender", "ci", "-", "--store", store,
                        stdin="line one\nline two ✓\n".encode())
    assert (done.returncode, done.stdout) == (0, "posted to team as seq 2\n")
    done = eventlog_cmd("post", "team", "--sender", "ci", "-", "--store", store, stdin=b"\xff\xfe")
    assert done.returncode == 1 and "standard input is not UTF-8 text" in done.stderr
    with eventlog.open(store) as log:
        [m] = log.get_messages("team")
    assert m.content == "line one\nline two ✓"  # the final newline ends the input, not the message


def test_import_from_standard_input(tmp_path):
    store = tmp_path / "s"
    with eventlog.open(store) as log:
        log.create_session("team", ["A"])
    exported = eventlog_cmd("export", "team", "--store", store).stdout.encode()
    done = eventlog_cmd("import", "-", "--session", "again", "--store", store, stdin=exported)
    assert (done.returncode, done.stdout) == (0, "imported 1 events into session again (0 messages)\n")


class Lines:
    """Lines a process prints, collected by a thread so a test can wait with a timeout."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.queue: queue.Queue[str] = queue.Queue()
        assert proc.stdout is not None
        stream = proc.stdout

        def pump() -> None:
            for line in stream:
                self.queue.put(line.decode())

        threading.Thread(target=pump, daemon=True).start()

    def take(self, count: int, timeout: float = 20) -> list[str]:
        return [self.queue.get(timeout=timeout) for _ in range(count)]


def _as_from_a_terminal() -> None:
    """In the child: SIGINT as a shell gives it (default action, not blocked). A child
    inherits an ignored or blocked SIGINT from the process that starts it, and in the
    whole suite something before this test leaves the runner so (CI's tail never saw the
    Ctrl-C; alone, the test passed): what is tested is eventlog's Ctrl-C, not that."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def test_tail_follow_sees_another_process_post_and_ctrl_c_exits_0(tmp_path):
    store = tmp_path / "s"
    with eventlog.open(store) as log:
        log.create_session("team", ["A", "B"])
        for i in range(5):
            log.add_message(eventlog.ChatMessage(sender="A", content=f"old {i}", session_id="team"))
    tail = subprocess.Popen([sys.executable, "-m", "eventlog", "tail", "-n", "2", "-f", "team",
                             "--store", str(store)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env(), preexec_fn=_as_from_a_terminal)
    try:
        lines = Lines(tail)
        assert [line.split(": ", 1)[1] for line in lines.take(2)] == ["old 3\n", "old 4\n"]
        for i in range(3):  # another process posts, one message per run
            posted = eventlog_cmd("post", "team", "--sender", "B", "--to", "A", f"new {i}",
                                  "--store", store)
            assert posted.returncode == 0
        followed = lines.take(3)
        assert [line.split("  ", 2)[1:] for line in followed] == [
            [f"#{7 + i}", f"B -> A: new {i}\n"] for i in range(3)]
        tail.send_signal(signal.SIGINT)
        _, err = tail.communicate(timeout=20)
        assert tail.returncode == 0 and err == b""
    finally:
        if tail.poll() is None:
            tail.kill()
            tail.wait()


def test_demo_end_to_end_counts_match_the_store(tmp_path):
    store = tmp_path / "demo"
    with eventlog.open(store) as log:  # someone else's session, old enough to be cleaned up
        log.create_session("not-the-demos", created_at=time.time() - 90 * 86400)
    started = time.monotonic()
    done = eventlog_cmd("demo", "--agents", "3", "--messages", "4", "--store", store, timeout=120,
                        extra_env={"TMPDIR": str(tmp_path)})
    assert done.returncode == 0, done.stdout + done.stderr
    assert time.monotonic() - started < 30
    out = done.stdout
    assert done.stderr == ""
    assert out.startswith(f"Store: {store} (given by --store)\n")
    [posted] = re.findall(r"posted (\d+) messages in", out)
    assert int(posted) == 12
    proofs = re.findall(r"  (demo-\w+-\w+): last \d+ of (\d+) messages", out)
    found = re.findall(r"proof:  expected (\d+) messages, found (\d+): lost (\d+), "
                       r"duplicated (\d+), unexpected (\d+)", out)
    assert len(proofs) == len(found) == 2
    with eventlog.open(store) as log:
        for (sid, shown), (expected, got, lost, dup, unexpected) in zip(proofs, found, strict=True):
            messages = log.get_messages(sid)
            assert int(shown) == int(got) == int(expected) == len(messages) == 6
            assert (lost, dup, unexpected) == ("0", "0", "0")
            assert len({m.id for m in messages}) == 6
            assert sorted(m.sender for m in messages) == ["Agent-1"] * 2 + ["Agent-2"] * 2 + ["Agent-3"] * 2
            assert log.verify(sid).ok
        # The old session the demo made was really removed; the stranger was left alone
        # (the cleanup ran in a separate store, and the demo says so).
        [old] = re.findall(r"created (demo-\w+-old):", out)
        assert not log.session_exists(old)
        assert log.session_exists("not-the-demos")
        assert "this step runs in a separate temporary store" in out
        assert {s.session_id for s in log.list_sessions()} == {"not-the-demos", *(p[0] for p in proofs)}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo"]  # its scratch stores are gone
    assert "seqs 1..7 gapless" in out and "verify ok" in out
    assert f"retention: removed {old}; gone from the store" in out
    assert "all checks passed" in out


def test_demo_in_a_new_temporary_directory_by_default(tmp_path):
    done = eventlog_cmd("demo", "--agents", "2", "--messages", "2", timeout=120,
                        extra_env={"TMPDIR": str(tmp_path)})
    assert done.returncode == 0, done.stdout + done.stderr
    [location] = re.findall(r"^Store: (\S+) \(a new temporary directory", done.stdout, re.M)
    assert Path(location).parent == tmp_path and Path(location).name.startswith("eventlog-demo-")
    with eventlog.open(location) as log:
        sessions = log.list_sessions()
    assert len(sessions) == 2 and all(s.session_id.startswith("demo-") for s in sessions)
    assert sum(s.message_count for s in sessions) == 4
    assert re.search(r"\bremoved demo-\w+-old; gone from the store", done.stdout)
    assert "separate store" not in done.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["--agents", "0"], "argument --agents: it must be at least 1"),
    (["--agents", "65"], "--agents: at most 64 agent processes"),
    (["--store", "memory://"], "not memory://"),
])
def test_demo_usage_errors(args, message):
    done = eventlog_cmd("demo", *args)
    assert done.returncode == 2 and message in done.stderr and done.stdout == ""


def readme_cli_section() -> str:
    text = (Path(ROOT) / "README.md").read_text()
    return text[text.index("<!-- section: cli -->"):text.index("<!-- /section: cli -->")]


def test_readme_walkthrough_runs(tmp_path, monkeypatch, capsys):
    """Each line of the README's shell walkthrough, run in-process (one process per line
    would cost seconds): ``export``, ``echo ... | eventlog ... -`` and ``eventlog ...``."""
    import io
    import shlex

    from eventlog.cli._main import run
    section = readme_cli_section()
    start = section.index("```sh\n") + 6
    monkeypatch.chdir(tmp_path)
    out = []
    for line in section[start:section.index("\n```", start)].splitlines():
        words = shlex.split(line, comments=True)
        if words[0] == "export":
            name, value = words[1].split("=", 1)
            monkeypatch.setenv(name, value)
            continue
        if words[0] == "echo":
            bar = words.index("|")
            piped = io.TextIOWrapper(io.BytesIO((" ".join(words[1:bar]) + "\n").encode()))
            monkeypatch.setattr(sys, "stdin", piped)
            words = words[bar + 1:]
        assert words[0] == "eventlog", line
        code = run(words[1:])
        printed, err = capsys.readouterr()
        assert (code, err) == (0, ""), line
        out.append(printed)
    text = "".join(out)
    assert text.startswith("team\nposted to team as seq 2\nposted to team as seq 3\n")
    assert "imported 3 events into session team-copy (2 messages)" in text
    assert "copied 2 session(s), 6 event(s)" in text
    with eventlog.open(tmp_path / "backup") as log:
        assert [m.content for m in log.get_messages("team-copy")] == ["build is green", "deploying now"]


def test_readme_documents_every_command():
    from eventlog.cli._commands import COMMANDS
    section = readme_cli_section()
    for command in COMMANDS:
        assert f"| `eventlog {command.name}" in section, command.name


def test_progress_bar_on_a_terminal_stderr_only(tmp_path):
    import pty
    store = tmp_path / "s"
    with eventlog.open(store) as log:
        for i in range(3):
            log.create_session(f"s{i}")
    leader, follower = pty.openpty()
    try:
        done = subprocess.run([sys.executable, "-m", "eventlog", "verify", "--store", str(store)],
                              stdout=subprocess.PIPE, stderr=follower, env=env(), timeout=60,
                              check=False)
        os.close(follower)
        drawn = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the terminal's other end is closed and drained
                break
            if not chunk:
                break
            drawn += chunk
    finally:
        os.close(leader)
    assert done.returncode == 0
    assert done.stdout == b"verified 3 session(s), 3 event(s): ok\n"  # stdout stays clean
    assert b"verifying [" in drawn and drawn.endswith(b"\r\x1b[K")


def test_serve_runs_the_server_until_ctrl_c(tmp_path):
    pytest.importorskip("starlette")
    pytest.importorskip("uvicorn")
    import json
    import socket
    import urllib.request
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    store = tmp_path / "s"
    with eventlog.open(store) as log:
        log.create_session("team", ["A"])
    server = subprocess.Popen([sys.executable, "-m", "eventlog", "serve", "--store", str(store),
                               "--port", str(port), "--read-only"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=env())
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
                    assert json.loads(r.read())["status"] == "ok"
                    break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
        server.send_signal(signal.SIGINT)
        _, err = server.communicate(timeout=20)
        assert server.returncode == 0 and b"Traceback" not in err
    finally:
        if server.poll() is None:
            server.kill()
            server.wait()


@pytest.mark.parametrize("command", [["-m", "eventlog.server", "--store", "x"],
                                     ["-m", "eventlog", "serve", "--store", "x"]],
                         ids=["python -m eventlog.server", "eventlog serve"])
def test_the_server_without_its_extra_says_which_extra(tmp_path, command):
    """Without Starlette (the server extra), one line names the extra: no traceback."""
    fake = tmp_path / "no-extra"
    fake.mkdir()
    (fake / "starlette.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'starlette'\", name='starlette')\n")
    run_env = env()
    run_env["PYTHONPATH"] = os.pathsep.join((str(fake), run_env["PYTHONPATH"]))
    done = subprocess.run([sys.executable, *command], cwd=tmp_path, env=run_env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and "pip install 'eventlog[server]'" in lines[0], done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["no-extra"]
