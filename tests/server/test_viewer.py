"""The web viewer in a real headless Chromium (Debian's), driven by Playwright.

Each test starts a server (a real process, or an app in a thread of this process over a
memory store where the test is about the viewer rather than storage), opens the page as a
user would, and checks what is shown. Screenshots at 1280 px and 375 px, light and dark, are
kept in tests/artifacts/. The page's CSP forbids eval, so waits go through locators (expect);
``page.evaluate`` (run by the browser's debugger, not the page) measures.
"""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import eventlog
from eventlog import ChatMessage
from eventlog.core._codec import encode_payload
from eventlog.server import create_app

from .support import AUTH, ROOT, TOKEN, ServerProcess, running, server_env

CHROMIUM = os.environ.get("EVENTLOG_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = ROOT / "tests" / "artifacts"
AXE = Path(__file__).parent / "vendor" / "axe.min.js"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]
HOSTILE = "<img src=x onerror=alert(1)>"
BIDI = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"

if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
    if os.environ.get("CI"):
        raise RuntimeError(f"CI must install Chromium ({CHROMIUM}): apt-get install chromium")
    pytest.skip(f"no Chromium at {CHROMIUM}", allow_module_level=True)
pytest.importorskip("playwright.sync_api")

from playwright.sync_api import Browser, Dialog, Page, expect, sync_playwright  # noqa: E402


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        found = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        yield found
        found.close()


class Watch:
    """A page that records every script error and dialog; the test ends checking there were none."""

    def __init__(self, browser: Browser, width: int = 1280, height: int = 800) -> None:
        self.context = browser.new_context(viewport={"width": width, "height": height})
        self.context.grant_permissions(["clipboard-read", "clipboard-write"])
        self.page: Page = self.context.new_page()
        self.problems: list[str] = []
        self.dialogs: list[str] = []

        def on_dialog(dialog: Dialog) -> None:
            self.dialogs.append(dialog.message)
            dialog.dismiss()

        self.page.on("dialog", on_dialog)
        self.page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        self.page.on("console", lambda m: self.problems.append(m.text) if m.type == "error" else None)

    def close(self, *, allow: tuple[str, ...] = ()) -> None:
        self.context.close()
        left = [p for p in self.problems if not any(a in p for a in allow)]
        assert left == [], left
        assert self.dialogs == []


@pytest.fixture
def watch(browser: Browser) -> Iterator[Watch]:
    w = Watch(browser)
    yield w
    w.close(allow=getattr(w, "allow", ()))


def memory_app(log: eventlog.EventLog, **settings: object) -> object:
    app = create_app(log, token=TOKEN)
    for name, value in settings.items():
        setattr(app.state.eventlog.settings, name, value)
    return app


def shot(page: Page, name: str) -> None:
    """Screenshots of what is on screen: 1280 and 375 px wide, light and dark."""
    size = page.viewport_size
    assert size is not None
    for width in (1280, 375):
        page.set_viewport_size({"width": width, "height": size["height"]})
        for scheme in ("light", "dark"):
            page.emulate_media(color_scheme=scheme)
            page.screenshot(path=str(ARTIFACTS / f"viewer-{name}-{width}-{scheme}.png"))
    page.emulate_media(color_scheme="light")
    page.set_viewport_size(size)


def open_session(page: Page, url: str, sid: str, seq: int | None = None, *, timeout: int = 15_000) -> None:
    page.goto(f"{url}/#/s/{sid}" + (f"/{seq}" if seq else ""))
    expect(page.locator("#live")).to_have_attribute("data-state", "live", timeout=timeout)


# The live transcript (and the defects 1, 2 and 5 on the way) ------------------------------------

@pytest.fixture(scope="module")
def viewer_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("viewer"))
    with httpx.Client(base_url=proc.url, headers=AUTH, timeout=10) as c:
        c.post("/api/sessions", json={"session_id": "planning-room", "metadata": {"ticket": 42},
                                      "participants": ["Planner", "Coder", "Reviewer"]})
        now = time.time()
        lines = [
            ("Planner", None, "Morning all. Today: ship the HTTP server for eventlog."),
            ("Coder", "Planner", "On it. Starlette + uvicorn, SSE for the live view."),
            ("Reviewer", "Coder", "Please keep message content as text only:\nno innerHTML, a strict CSP."),
            ("Coder", "Reviewer", "Agreed. textContent everywhere, and a test with a hostile payload."),
            ("Planner", None, "Great. Post progress here; the viewer picks it up live."),
        ]
        c.post("/api/sessions/planning-room/messages", json={"messages": [
            {"sender": s, "recipient": r, "content": text,
             "timestamp": now - 6000 + 60 * n + (3000 if n == 4 else 0),
             **({"metadata": {"model": "m-1"}} if n == 1 else {})}
            for n, (s, r, text) in enumerate(lines)]})
        c.post("/api/sessions", json={"session_id": "ops-alerts", "participants": ["Pager"]})
        c.post("/api/sessions/ops-alerts/messages", json={"sender": "Pager", "content": "disk 71% full"})
    yield proc
    proc.stop()


def _post_from_another_process(url: str, content: str) -> None:
    code = ("import httpx, os, sys; r = httpx.post(sys.argv[1] + '/api/sessions/planning-room/messages', "
            "headers={'Authorization': 'Bearer ' + os.environ['EVENTLOG_TOKEN']}, "
            "json={'sender': 'Coder', 'recipient': 'Planner', 'content': sys.argv[2]}); "
            "assert r.status_code == 201, r.text")
    subprocess.run([sys.executable, "-c", code, url, content], check=True, env=server_env(), timeout=60)


def test_viewer_live_transcript(viewer_server: ServerProcess, watch: Watch) -> None:
    page = watch.page
    page.goto(viewer_server.url + "/")
    links = page.locator("#sessions a")
    expect(links).to_have_count(2)
    assert links.nth(0).get_attribute("data-sid") == "ops-alerts"
    page.fill("#filter", "review")
    expect(links).to_have_count(1)
    assert links.first.get_attribute("data-sid") == "planning-room"
    page.fill("#filter", "")
    expect(links).to_have_count(2)

    page.click("#sessions a[data-sid='planning-room']")
    expect(page.locator("#live")).to_have_attribute("data-state", "live")
    expect(page.locator("#events .msg")).to_have_count(5)
    assert page.locator("#participants li").all_inner_texts() == ["Planner", "Coder", "Reviewer"]
    expect(page.locator("#facts dd.ok")).to_be_visible()
    # Every event is there: the session's creation (with its metadata) too; and a pause shows.
    expect(page.locator("#events .ev")).to_have_count(6)
    assert page.locator("#events .gap").all_inner_texts() == ["51 min later"]
    assert not page.locator("#metadata").is_hidden()
    page.click("#metadata summary")
    expect(page.locator("#metadata-json")).to_contain_text('"ticket": 42')
    page.locator("#events .msg").nth(1).locator("details summary").click()
    expect(page.locator("#events .msg").nth(1).locator("pre")).to_contain_text('"model": "m-1"')
    page.evaluate("window.__noReload = true")

    _post_from_another_process(viewer_server.url, "Server is up; the live view works.")
    last = page.locator("#events .msg").last
    expect(page.locator("#events .msg")).to_have_count(6, timeout=15_000)
    assert last.locator(".content").inner_text() == "Server is up; the live view works."
    assert last.locator(".seq").inner_text() == "#7"
    assert last.locator(".recipient").inner_text() == "Planner"
    links = page.locator("#sessions a")
    expect(links.first).to_have_attribute("data-sid", "planning-room")
    expect(links.first.locator(".counts")).to_contain_text("6 messages")
    # The facts follow while live: the count at once, the size and verify a few seconds later.
    expect(page.locator("#facts")).to_contain_text("#7")
    expect(page.locator("#facts dd.ok")).to_contain_text("7 events", timeout=30_000)

    _post_from_another_process(viewer_server.url, HOSTILE)
    expect(page.locator("#events .msg")).to_have_count(7, timeout=15_000)
    assert page.locator("#events .msg").last.locator(".content").text_content() == HOSTILE
    assert page.locator("#events img").count() == 0
    page.wait_for_timeout(500)  # give a would-be onerror handler its chance
    assert page.evaluate("window.__noReload") is True
    shot(page, "transcript")

    page.set_viewport_size({"width": 375, "height": 800})
    assert page.locator(".sidebar").is_hidden() and page.locator(".back").is_visible()
    page.click(".back")
    expect(page.locator(".sidebar")).to_be_visible()
    assert page.locator("#session").is_hidden()
    shot(page, "list")


def test_custom_events_and_notes_show_live_and_after_reload(browser: Browser) -> None:
    """Defect 2: history loaded only /messages, so custom events vanished on reload."""
    with eventlog.open("memory://") as log, running(memory_app(log)) as url:  # type: ignore[arg-type]
        log.create_session("tools", ["Agent"])
        log.add_message(ChatMessage(sender="Agent", content="calling search", session_id="tools"))
        w = Watch(browser)
        open_session(w.page, url, "tools")
        log.append("tools", "tool.result", {"tool": "search", "hits": [1, 2, 3]})
        log.add_participant("tools", "Helper")
        events = w.page.locator("#events .ev")
        expect(events).to_have_count(4)
        live = events.all_inner_texts()
        w.page.reload()
        expect(w.page.locator("#live")).to_have_attribute("data-state", "live")
        expect(events).to_have_count(4)
        assert events.all_inner_texts() == live
        custom = w.page.locator("#events .custom")
        assert custom.locator(".type").inner_text() == "tool.result"
        custom.locator("summary").click()
        expect(custom.locator("pre")).to_contain_text('"hits": [\n    1,')
        custom.locator(".ev-action").click()
        expect(custom.locator(".ev-action")).to_have_text("Copied")
        copied = w.page.evaluate("navigator.clipboard.readText()")
        assert '"type": "tool.result"' in copied and '"seq": 3' in copied
        assert "Helper" in w.page.locator("#events .note").last.inner_text()
        w.close()


def test_rewound_events_are_greyed_and_a_fork_links_its_parent(browser: Browser) -> None:
    """Issue 17: rewound events stay in the transcript, greyed out and labelled (live and after
    a reload), the rewind says where it went back to, and a fork links to its parent."""
    with eventlog.open("memory://") as log, running(memory_app(log)) as url:  # type: ignore[arg-type]
        log.create_session("r", ["A"])
        for word in ("one", "two", "three"):
            log.add_message(ChatMessage(sender="A", content=word, session_id="r"))
        w = Watch(browser)
        open_session(w.page, url, "r")
        events = w.page.locator("#events .ev")
        expect(events).to_have_count(4)
        log.rewind("r", 2, reason="wrong turn")
        expect(events).to_have_count(5)
        rewound = w.page.locator("#events .ev.rewound")
        expect(rewound).to_have_count(2)
        expect(rewound.first).to_contain_text("two")
        expect(rewound.first.locator(".rewound-label")).to_have_text("rewound at #5")
        expect(events.last).to_contain_text("rewound to")
        expect(events.last).to_contain_text("wrong turn")
        expect(w.page.locator("#facts")).to_contain_text("1")  # messages: one is visible
        w.page.reload()
        expect(w.page.locator("#live")).to_have_attribute("data-state", "live")
        expect(events).to_have_count(5)
        expect(rewound).to_have_count(2)
        log.fork("r", "r2", at_seq=2)
        open_session(w.page, url, "r2")
        link = w.page.locator("#facts a.forked-from")
        expect(link).to_have_text("r #2")
        link.click()
        expect(w.page).to_have_url(f"{url}/#/s/r/2")
        w.close()


def test_an_event_that_cannot_be_shown_never_stops_the_viewer(browser: Browser) -> None:
    """Defect 1: a nanosecond timestamp left the page on "connecting" (Invalid time value).
    Stored logs may hold such values from before they were refused: they are written here
    beneath the library's check, as an old release would have."""
    with eventlog.open("memory://") as log, running(memory_app(log)) as url:  # type: ignore[arg-type]
        log.create_session("odd", ["A"])
        for ts in (1_796_280_000_000_000_000, 1e300):
            data = {"id": f"x{ts}", "sender": "A", "recipient": None, "content": f"at {ts}"}
            log._append_payloads("odd", [encode_payload("message", ts, data)], None, None)
        log.add_message(ChatMessage(sender="A", content="a sane one", session_id="odd"))
        w = Watch(browser)
        open_session(w.page, url, "odd")
        expect(w.page.locator("#events .msg")).to_have_count(3)
        times = w.page.locator("#events .msg .ev-time").all_inner_texts()
        assert times[0] == "t=1796280000000000000" and times[1] == "t=1e+300", times
        log.add_message(ChatMessage(sender="A", content="still live", session_id="odd"))
        expect(w.page.locator("#events .msg")).to_have_count(4)
        w.page.goto(url + "/")
        expect(w.page.locator("#sessions a")).to_have_count(1)
        w.close()


def test_bidi_overrides_are_shown_not_applied(browser: Browser) -> None:
    """Defect 5: "\\u202egpj.exe\\u202c" read as "exe.jpg"; one RLO in a name reversed the rest."""
    with eventlog.open("memory://") as log, running(memory_app(log)) as url:  # type: ignore[arg-type]
        names = ["Mallory\u202e", "Bob", "Carol"]
        log.create_session("bidi", names)
        log.add_message(ChatMessage(sender=names[0], recipient="Bob", session_id="bidi",
                                    content="open \u202egpj.exe\u202c and " + BIDI))
        w = Watch(browser)
        open_session(w.page, url, "bidi")
        content = w.page.locator("#events .msg .content")
        text = content.inner_text()
        assert not set(BIDI) & set(text), text
        assert text.startswith("open U+202Egpj.exeU+202C and U+202A")
        assert w.page.locator("#events .msg .content .ctl").count() == 2 + len(BIDI)
        assert w.page.locator("#events .msg .sender").inner_text() == "MalloryU+202E"
        boxes = [w.page.locator("#participants li").nth(i).bounding_box() for i in range(3)]
        assert all(b is not None for b in boxes)
        assert boxes[0]["x"] < boxes[1]["x"] < boxes[2]["x"]  # type: ignore[index]
        assert w.page.locator("#participants li").all_inner_texts() == ["MalloryU+202E", "Bob", "Carol"]
        # Text that cannot hold a mark element (an <option>, the graph's SVG labels, a link's
        # text) goes through the same neutralising step: the From/To options showed it applied.
        for select in ("#f-sender", "#f-recipient"):
            option = w.page.locator(f"{select} option").filter(has_text="Mallory")
            expect(option).to_have_text("MalloryU+202E")
            assert option.get_attribute("value") == names[0]  # the filter still matches the name
        w.page.select_option("#f-sender", names[0])
        expect(w.page.locator("#events .msg")).to_have_count(1)
        w.page.click("#graph-toggle")
        expect(w.page.locator("#graph .node-label").first).to_be_visible()
        labels = w.page.locator("#graph .node-label").all_text_contents()
        assert "MalloryU+202E" in labels and not set(BIDI) & set("".join(labels)), labels
        log.fork("bidi", "‮forked", at_seq=2)
        log.fork("‮forked", "grandchild")
        open_session(w.page, url, "grandchild")
        expect(w.page.locator("#facts a.forked-from")).to_have_text("U+202Eforked #3")
        w.close()


def test_the_graph_shortens_names_between_characters_not_inside_them(browser: Browser) -> None:
    """A long name is cut to 15 characters and an ellipsis: characters as a reader counts them,
    so an emoji (two UTF-16 units, or several joined) is kept whole or dropped whole."""
    fox, family = "\U0001F98A", "\U0001F468\u200d\U0001F469\u200d\U0001F467"
    names = {fox * 20: fox * 15 + "\u2026", family * 17: family * 15 + "\u2026",
             "a" + fox * 16: "a" + fox * 14 + "\u2026", "Bob": "Bob"}
    with eventlog.open("memory://") as log, running(memory_app(log)) as url:  # type: ignore[arg-type]
        log.create_session("emoji", list(names))
        for sender in names:
            log.add_message(ChatMessage(sender=sender, recipient="Bob" if sender != "Bob" else fox * 20,
                                        session_id="emoji", content="hi"))
        w = Watch(browser)
        open_session(w.page, url, "emoji")
        w.page.click("#graph-toggle")
        expect(w.page.locator("#graph .node-label").first).to_be_visible()
        labels = w.page.locator("#graph .node-label").all_text_contents()
        assert sorted(labels) == sorted(names.values()), labels
        w.close()


def test_nothing_overflows_a_phone(browser: Browser) -> None:
    """Defect 4: 12 participants widened a 375 px page to 1,481 px."""
    with eventlog.open("memory://") as log, running(memory_app(log)) as url:  # type: ignore[arg-type]
        people = [f"Agent-with-a-long-name-{i:02d}" for i in range(12)]
        log.create_session("crowd-" + "x" * 100, people, {"k" * 80: "v" * 300})
        sid = "crowd-" + "x" * 100
        log.add_messages([ChatMessage(sender=people[i], recipient=people[(i + 1) % 12], session_id=sid,
                                      content="y" * 500 + " " + "z" * 40, message_type="t" * 60)
                          for i in range(12)])
        log.append(sid, "tool.result", {"w" * 200: "q" * 900})
        w = Watch(browser, 375, 800)
        page = w.page
        page.goto(url + "/")
        expect(page.locator("#sessions a")).to_have_count(1)
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
        open_session(page, url, sid)
        page.click("#graph-toggle")
        expect(page.locator("#graph .pair")).to_have_count(12)
        page.click("#metadata summary")
        for _ in range(2):
            assert page.evaluate("document.documentElement.scrollWidth") <= 375
            assert page.evaluate("document.body.scrollWidth") <= 375
            assert page.evaluate(
                "[...document.querySelectorAll('#session *')].every(e => e.getBoundingClientRect().right"
                " <= 376 || e.closest('.transcript, .graph, .json-body, .participants') !== null"
                " && e.closest('.transcript, .graph, .json-body, .participants').scrollWidth"
                " <= e.closest('.transcript, .graph, .json-body, .participants').clientWidth + 1)")
            page.click("#events .custom summary")
        shot(page, "crowd")
        w.close()


# Run before the page's own scripts: records each task that held the main thread over 50 ms.
LONG_TASKS = """window.longTasks = [];
new PerformanceObserver((list) => list.getEntries().forEach((e) => window.longTasks.push(e.duration)))
  .observe({ type: "longtask", buffered: true });"""


def test_long_messages_collapse_and_huge_ones_do_not_block_the_page(browser: Browser) -> None:
    """Defect 6: a 100 KB message was a 26,000 px card; five 15 MiB ones blanked the page 21 s."""
    with eventlog.open("memory://") as log, running(memory_app(log)) as url:  # type: ignore[arg-type]
        log.create_session("big", ["A"])
        hundred_kb = "".join(f"line {i} of a long report\n" for i in range(4300))
        log.add_message(ChatMessage(sender="A", content=hundred_kb, session_id="big"))
        log.add_messages([ChatMessage(sender="A", content=f"{i}" + "x" * (15 << 20), session_id="big")
                          for i in range(5)])
        log.add_message(ChatMessage(sender="A", content="the last one", session_id="big"))
        w = Watch(browser)
        page = w.page
        page.add_init_script(LONG_TASKS)
        open_session(page, url, "big", timeout=60_000)
        # How long the server takes to read 75 MB depends on the machine's load, so no clock
        # here: what blanked the page was the page itself taking the 75 MB in. It must fetch
        # a few KB, and its main thread must never be busy for long (tasks measured: 0.1 s).
        expect(page.locator("#events .msg")).to_have_count(7, timeout=60_000)
        fetched = page.evaluate("performance.getEntriesByType('resource')"
                                ".filter(e => new URL(e.name).pathname.startsWith('/api/'))"
                                ".reduce((sum, e) => sum + e.decodedBodySize, 0)")
        assert 0 < fetched < 256 * 1024, fetched
        longest = page.evaluate("Math.max(0, ...window.longTasks)")
        assert longest < 2000, f"the page's main thread was busy for {longest} ms at once"
        cards = page.locator("#events .msg")
        first = cards.nth(0)
        height = first.bounding_box()
        assert height is not None and height["height"] < 500, height
        button = first.locator(".more")
        assert "Show all" in (button.text_content() or "")
        button.click()
        expect(button).to_have_text("Show less")
        assert len(first.locator(".content").inner_text()) >= len(hundred_kb) - 1
        huge = cards.nth(3).bounding_box()
        assert huge is not None and huge["height"] < 500
        assert "15.0 MB" in (cards.nth(3).locator(".more").text_content() or "")
        shot(page, "long-messages")
        w.close()


def test_reconnects_with_backoff_after_a_503_and_catches_up(browser: Browser) -> None:
    """Defect 3: after a 503 (every stream slot taken) the viewer said "disconnected" forever."""
    with eventlog.open("memory://") as log, running(memory_app(log, max_streams=1)) as url:  # type: ignore[arg-type]
        log.create_session("busy", ["A"])
        log.add_message(ChatMessage(sender="A", content="before", session_id="busy"))
        release = threading.Event()

        def hold_the_only_slot() -> None:
            with httpx.stream("GET", f"{url}/api/sessions/busy/stream", timeout=30) as r:
                assert r.status_code == 200
                release.wait(30)

        holder = threading.Thread(target=hold_the_only_slot)
        holder.start()
        time.sleep(0.5)
        w = Watch(browser)
        w.allow = ("503",)  # type: ignore[attr-defined]  # the refused connections log themselves
        page = w.page
        page.goto(f"{url}/#/s/busy")
        expect(page.locator("#live")).to_have_attribute("data-state", "reconnecting")
        expect(page.locator("#events .msg")).to_have_count(1)
        log.add_message(ChatMessage(sender="A", content="while refused", session_id="busy"))
        release.set()
        holder.join()
        expect(page.locator("#live")).to_have_attribute("data-state", "live", timeout=20_000)
        expect(page.locator("#events .msg")).to_have_count(2)
        log.add_message(ChatMessage(sender="A", content="after", session_id="busy"))
        expect(page.locator("#events .msg")).to_have_count(3)
        assert page.locator("#events .msg .content").all_inner_texts() == ["before", "while refused", "after"]
        w.close(allow=("503",))


def test_a_3000_event_burst_shows_within_a_second_of_arrival(browser: Browser) -> None:
    """Defect 7: three batches of 1,000 events took 13 s to show."""
    with eventlog.open("memory://") as log, running(memory_app(log)) as url:  # type: ignore[arg-type]
        log.create_session("burst", ["A", "B"])
        w = Watch(browser)
        page = w.page
        open_session(page, url, "burst")
        page.evaluate("""() => {
            window.__shown = {};
            const want = [1001, 2001, 3001];
            // A batch counts as shown once its last event, or a later one, is on the page:
            // events that arrive together may be windowed past an earlier batch's last one.
            new MutationObserver(() => {
                let newest = 0;
                for (const el of document.querySelectorAll('#events .ev[id^="ev-"]')) {
                    newest = Math.max(newest, Number(el.id.slice(3)));
                }
                for (const seq of want) {
                    if (!window.__shown[seq] && newest >= seq) {
                        window.__shown[seq] = performance.now();
                    }
                }
            }).observe(document.getElementById('events'), {childList: true});
        }""")
        sent = {}
        with httpx.Client(base_url=url, headers=AUTH, timeout=30) as c:
            for batch in range(3):
                body = {"messages": [{"sender": "AB"[i % 2], "content": f"burst {batch}-{i}"}
                                     for i in range(1000)]}
                r = c.post("/api/sessions/burst/messages", json=body)
                assert r.status_code == 201
                sent[r.json()["last_seq"]] = page.evaluate("performance.now()")
        expect(page.locator("#ev-3001")).to_be_attached(timeout=10_000)
        shown = page.evaluate("window.__shown")
        delays = {seq: shown[str(seq)] - at for seq, at in sent.items()}
        assert all(d < 1000 for d in delays.values()), delays
        assert page.locator("#events .ev").count() <= 500
        w.close()


def test_a_100000_message_session_scrolls_without_loading_it_whole(browser: Browser) -> None:
    with eventlog.open("memory://") as log, running(memory_app(log)) as url:  # type: ignore[arg-type]
        start = time.time() - 200_000
        log.create_session("long", ["A", "B"], created_at=start - 1)
        for k in range(10):
            log.add_messages([ChatMessage(sender="AB"[i % 2], content=f"message {k * 10_000 + i}",
                                          session_id="long", timestamp=start + k * 10_000 + i)
                              for i in range(10_000)])
        w = Watch(browser)
        page = w.page
        fetched: list[int] = []

        def count(response: object) -> None:
            if "/transcript" in response.url:  # type: ignore[attr-defined]
                fetched.append(len(response.json()["events"]))  # type: ignore[attr-defined]

        page.on("response", count)
        open_session(page, url, "long")
        expect(page.locator("#ev-100001")).to_be_attached()
        for step in range(8):
            first = page.locator("#events .ev").first.get_attribute("data-seq")
            page.evaluate("document.getElementById('transcript').scrollTop = 0")
            expect(page.locator("#events .ev").first).not_to_have_attribute("data-seq", first or "",
                                                                               timeout=10_000)
            assert page.locator("#events .ev").count() <= 500, step
        lowest = int(page.locator("#events .ev").first.get_attribute("data-seq") or 0)
        assert lowest < 100_001 - 8 * 140
        assert sum(fetched) < 2_000, fetched
        # Jump to the middle by seq, then by time; and back to the newest.
        page.fill("#jump", "#50000")
        page.press("#jump", "Enter")
        expect(page.locator("#ev-50000.target")).to_be_visible()
        when = int(start + 70_000.5)  # the jump box takes whole seconds, in local time
        page.fill("#jump", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(when)))
        page.press("#jump", "Enter")
        first_after = math.ceil(when - start) + 2  # message n is seq n + 2, at start + n
        expect(page.locator(f"#ev-{first_after}.target")).to_be_visible()
        assert page.locator("#events .ev").count() <= 500
        log.add_message(ChatMessage(sender="A", content="the newest", session_id="long"))
        expect(page.locator("#new-events")).to_have_text("1 new event \u2193")
        page.click("#new-events")
        expect(page.locator("#ev-100002")).to_be_visible()
        assert sum(fetched) < 3_000, fetched
        w.close()


# Search, filters, jump, the agent picture, permalinks, export ------------------------------------

@pytest.fixture(scope="module")
def team_app() -> Iterator[tuple[str, eventlog.EventLog]]:
    with eventlog.open("memory://") as log, running(memory_app(log)) as url:  # type: ignore[arg-type]
        start = time.time() - 10_000
        log.create_session("team", ["Planner", "Coder", "Tester"])
        talk = [("Planner", "Coder"), ("Coder", "Planner"), ("Coder", "Tester"), ("Tester", None)]
        log.add_messages([ChatMessage(sender=s, recipient=r, session_id="team", timestamp=start + i * 30,
                                      content=f"step {i}: " + ("the disk is FULL" if i % 7 == 3 else "fine"))
                          for i in range(80) for s, r in [talk[i % 4]]])
        log.append("team", "tool.result", {"tool": "df", "disk": "full"})
        log.create_session("other", ["Ops"])
        log.add_message(ChatMessage(sender="Ops", content="Disk full on db-2", session_id="other"))
        yield url, log


def test_search_in_a_session_and_across_sessions(team_app: tuple[str, eventlog.EventLog],
                                                  watch: Watch) -> None:
    url, _ = team_app
    page = watch.page
    open_session(page, url, "team")
    page.fill("#in-search", "disk is full")
    events = page.locator("#events .ev")
    expect(events).to_have_count(11)  # steps 3, 10, ..., 73
    marks = page.locator("#events mark").all_text_contents()
    assert len(marks) == 11 and set(marks) == {"disk is FULL"}
    expect(page.locator("#range")).to_contain_text("(filtered)")
    shot(page, "search-in-session")
    page.click("#clear-filters")
    expect(events).to_have_count(82)

    page.fill("#global-search", "FULL")
    hits = page.locator("#hits a")
    expect(hits).to_have_count(13)  # other's one message; team's 11 and its tool.result
    assert hits.nth(0).locator(".sid").inner_text() == "other"
    assert hits.nth(0).locator("mark").inner_text() == "full"
    assert hits.nth(12).locator(".sid").inner_text() == "team"
    assert '"disk":"full"' in (hits.nth(12).locator(".snippet").text_content() or "")
    shot(page, "search-everywhere")
    hits.nth(0).click()
    expect(page.locator("#ev-2.target")).to_be_visible()
    assert page.url.endswith("#/s/other/2")


def test_filters_the_agent_picture_and_permalinks(team_app: tuple[str, eventlog.EventLog],
                                                  watch: Watch) -> None:
    url, _ = team_app
    page = watch.page
    open_session(page, url, "team")
    page.click("#graph-toggle")
    pairs = page.locator("#graph .pair")
    expect(pairs).to_have_count(4)
    assert [p.split("\n")[0] for p in pairs.all_inner_texts()] == [
        "Coder\u2192Planner20 messages", "Coder\u2192Tester20 messages",
        "Planner\u2192Coder20 messages", "Tester\u2192everyone20 messages"] or all(
        "20 messages" in p for p in pairs.all_inner_texts())
    assert page.locator("#graph svg .edge").count() == 4
    shot(page, "agents")
    pairs.filter(has_text="everyone").click()
    events = page.locator("#events .ev")
    expect(events).to_have_count(20)
    assert set(page.locator("#events .sender").all_text_contents()) == {"Tester"}
    assert set(page.locator("#events .recipient").all_text_contents()) == {"everyone"}
    page.select_option("#f-recipient", "")
    page.select_option("#f-sender", "Coder")
    expect(events).to_have_count(40)
    page.select_option("#f-sender", "")
    page.select_option("#f-type", "tool.result")
    expect(events).to_have_count(1)
    page.click("#clear-filters")
    expect(events).to_have_count(82)

    page.goto(f"{url}/#/s/team/40")
    expect(page.locator("#ev-40.target")).to_be_visible()
    link = page.locator("#ev-41 a.seq")
    assert link.get_attribute("href") == "#/s/team/41"
    page.reload()
    expect(page.locator("#ev-40.target")).to_be_visible()


def test_export_from_the_browser(team_app: tuple[str, eventlog.EventLog], watch: Watch) -> None:
    url, _ = team_app
    page = watch.page
    open_session(page, url, "team")
    for selector, first_line in (("#export-jsonl", '{"eventlog_export":1,"session_id":"team"}'),
                                 ("#export-md", "# Session team")):
        with page.expect_download() as info:
            page.click(selector)
        path = info.value.path()
        text = Path(path).read_text()
        assert text.splitlines()[0] == first_line
    assert len(text.splitlines()) > 80
    assert info.value.suggested_filename == "team.md"


def test_accessibility_has_no_serious_or_critical_violations(
        team_app: tuple[str, eventlog.EventLog], watch: Watch) -> None:
    url, _ = team_app
    page = watch.page
    source = AXE.read_text()
    found = {}
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        for name, path in (("list", "/"), ("session", "/#/s/team")):
            page.goto(url + path)
            if name == "session":
                expect(page.locator("#live")).to_have_attribute("data-state", "live")
                page.click("#graph-toggle")
                expect(page.locator("#graph .pair")).to_have_count(4)
                page.click("#events .custom summary")
            else:
                expect(page.locator("#sessions a")).to_have_count(2)
            result = page.evaluate(source + "\n;axe.run(document, {resultTypes: ['violations']})")
            found[(scheme, name)] = [
                (v["id"], v["impact"], [n["target"] for n in v["nodes"]][:3])
                for v in result["violations"] if v["impact"] in ("serious", "critical")]
    assert all(v == [] for v in found.values()), found


def test_the_session_list_pages_through_every_session(browser: Browser) -> None:
    """Issue 15: the sidebar reaches every session a page (100) at a time as it is scrolled,
    not the newest 1,000; ids as users write them (``thread/12``, an RLO) are listed
    neutralised and open their own transcript."""
    with eventlog.open("memory://") as log, running(memory_app(log)) as url:  # type: ignore[arg-type]
        ids = [f"user:{i:03d}" for i in range(230)] + ["thread/12", "\u202eevil"]
        for i, sid in enumerate(ids):
            log.create_session(sid, ["A"], created_at=1_700_000_000.0 + i)
        w = Watch(browser)
        w.page.goto(url)
        rows = w.page.locator("#sessions a[data-sid]")
        expect(rows).to_have_count(100, timeout=15_000)
        for want in (200, len(ids)):
            w.page.locator("#sessions-box").evaluate("box => box.scrollTop = box.scrollHeight")
            expect(rows).to_have_count(want, timeout=15_000)
        listed = [rows.nth(i).get_attribute("data-sid") or "" for i in range(len(ids))]
        assert sorted(listed) == sorted(ids)  # each once, every one
        evil = w.page.locator('#sessions a[data-sid="\u202eevil"] .sid')
        assert "\u202e" not in evil.inner_text()
        w.page.locator('#sessions a[data-sid="thread/12"]').click()
        expect(w.page.locator("#live")).to_have_attribute("data-state", "live", timeout=15_000)
        assert "thread%2F12" in w.page.url or "thread/12" in w.page.url


@pytest.mark.parametrize("dots", [".", ".."])
def test_a_dot_id_opens_like_any_other(browser: Browser, dots: str) -> None:
    """``.`` and ``..`` are dot segments: the page asked for /api/sessions/../transcript, which
    the browser resolves (``%2E%2E`` too) to /api/transcript, and said "not found"."""
    with eventlog.open("memory://") as log, running(memory_app(log)) as url:  # type: ignore[arg-type]
        log.create_session(dots, ["A", "B"])
        log.add_message(ChatMessage(sender="A", recipient="B", content="dot content", session_id=dots))
        w = Watch(browser)
        open_session(w.page, url, dots)  # live: the stream's route was reached too
        expect(w.page.locator("#events .msg .content")).to_have_text("dot content")
        expect(w.page.locator("#facts")).to_contain_text("#2")
        expect(w.page.locator("#facts")).to_contain_text("ok")  # its verify
        expect(w.page.locator("#f-sender option")).to_have_count(3)  # its graph: anyone, A, B
        log.add_message(ChatMessage(sender="B", content="live one", session_id=dots))
        expect(w.page.locator("#events .msg")).to_have_count(2)
        href = w.page.locator("#export-jsonl").get_attribute("href")
        assert href is not None
        export = w.page.request.get(url + href)
        assert export.ok, export.text()
        assert export.text().splitlines()[0] == f'{{"eventlog_export":1,"session_id":"{dots}"}}'
        w.page.goto(url + "/")
        w.page.locator(f'#sessions a[data-sid="{dots}"]').click()
        expect(w.page.locator("#events .msg")).to_have_count(2)
        w.close()


def test_redacted_events_show_as_such(browser: Browser) -> None:
    """Issue 18: a redacted event keeps its place, type and time, says who erased it and why,
    and shows none of its content; the redaction event itself is a note."""
    with eventlog.open("memory://") as log, running(memory_app(log)) as url:  # type: ignore[arg-type]
        log.create_session("gdpr", ["A"])
        log.add_message(ChatMessage(sender="A", content="my card is 4111", session_id="gdpr"))
        log.append("gdpr", "tool.result", {"address": "1 Main St"})
        log.add_message(ChatMessage(sender="A", content="kept", session_id="gdpr"))
        log.redact("gdpr", [2, 3], reason="erasure request")
        w = Watch(browser)
        open_session(w.page, url, "gdpr")
        events = w.page.locator("#events .ev")
        expect(events).to_have_count(5)
        redacted = w.page.locator("#events .redacted")
        expect(redacted).to_have_count(2)
        for text in redacted.all_inner_texts():
            assert "Erased by the redaction at #5" in text and "erasure request" in text
        assert "message" in redacted.first.inner_text()
        assert "tool.result" in redacted.last.inner_text()
        page = w.page.locator("#events").inner_text()
        assert "4111" not in page and "Main St" not in page and "kept" in page
        assert "redacted #2, #3" in w.page.locator("#events .note").last.inner_text()
        w.close()


def test_a_redaction_and_a_rewind_change_the_events_on_screen_live(browser: Browser) -> None:
    """The events a redaction erases, already on screen, show as redacted as soon as the
    redaction event arrives (they kept their content until a reload); a rewind greys out the
    events it hides on screen at once, and both hold after a reload."""
    with eventlog.open("memory://") as log, running(memory_app(log)) as url:  # type: ignore[arg-type]
        log.create_session("live", ["A"])
        log.add_message(ChatMessage(sender="Mallory", content="my card is 4111", session_id="live"))
        log.append("live", "tool.result", {"address": "1 Main St"})
        log.add_message(ChatMessage(sender="A", content="kept", session_id="live"))
        w = Watch(browser)
        open_session(w.page, url, "live")
        events = w.page.locator("#events .ev")
        expect(events).to_have_count(4)
        expect(w.page.locator("#events")).to_contain_text("4111")
        expect(w.page.locator("#participants")).to_contain_text("Mallory")
        log.redact("live", [2, 3], reason="erasure request")
        expect(events).to_have_count(5)
        redacted = w.page.locator("#events .redacted")
        expect(redacted).to_have_count(2)
        for text in redacted.all_inner_texts():
            assert "Erased by the redaction at #5" in text and "erasure request" in text
        expect(w.page.locator("#events")).not_to_contain_text("4111")
        expect(w.page.locator("#events")).not_to_contain_text("Main St")
        expect(w.page.locator("#participants")).not_to_contain_text("Mallory")
        log.rewind("live", 3, reason="wrong turn")
        rewound = w.page.locator("#events .ev.rewound")
        expect(rewound).to_have_count(2)  # "kept" and the redaction event
        expect(rewound.first).to_contain_text("kept")
        w.page.reload()
        expect(w.page.locator("#live")).to_have_attribute("data-state", "live")
        expect(events).to_have_count(6)
        expect(redacted).to_have_count(2)
        expect(rewound).to_have_count(2)
        w.close()
