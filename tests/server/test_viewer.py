"""The web viewer in a real headless Chromium (Debian's), driven by Playwright.

It loads the page, finds sessions, opens one, sees a message posted by another process appear
without a reload, and shows hostile content as text. Screenshots of the transcript (laptop and
phone sizes) are kept in tests/artifacts/.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from .support import AUTH, ROOT, ServerProcess, server_env

CHROMIUM = os.environ.get("EVENTLOG_CHROMIUM", "/usr/bin/chromium")
ARTIFACTS = ROOT / "tests" / "artifacts"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]
HOSTILE = "<img src=x onerror=alert(1)>"

if not (os.path.exists(CHROMIUM) or shutil.which(CHROMIUM)):
    if os.environ.get("CI"):
        raise RuntimeError(f"CI must install Chromium ({CHROMIUM}): apt-get install chromium")
    pytest.skip(f"no Chromium at {CHROMIUM}", allow_module_level=True)
pytest.importorskip("playwright.sync_api")

# The page's CSP forbids eval, so Playwright's string predicates cannot run there:
# waits go through locators (expect), which need no script of ours in the page.
from playwright.sync_api import Dialog, expect, sync_playwright  # noqa: E402 - after the skips


@pytest.fixture(scope="module")
def viewer_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(tmp_path_factory.mktemp("viewer"))
    with httpx.Client(base_url=proc.url, headers=AUTH, timeout=10) as c:
        c.post("/api/sessions", json={"session_id": "planning-room",
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
            {"sender": s, "recipient": r, "content": text, "timestamp": now - 600 + 60 * n}
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


def test_viewer_live_transcript(viewer_server: ServerProcess) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    dialogs: list[str] = []
    problems: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            def on_dialog(dialog: Dialog) -> None:
                dialogs.append(dialog.message)
                dialog.dismiss()

            page.on("dialog", on_dialog)
            page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.goto(viewer_server.url + "/")

            # The list, newest activity first, with a filter by id or participant.
            links = page.locator("#sessions a")
            links.first.wait_for()
            expect(links).to_have_count(2)
            assert links.nth(0).get_attribute("data-sid") == "ops-alerts"
            page.fill("#filter", "review")
            expect(links).to_have_count(1)
            assert links.first.get_attribute("data-sid") == "planning-room"
            page.fill("#filter", "")
            expect(links).to_have_count(2)

            # Open the session: transcript, participants, live indicator, verify status.
            page.click("#sessions a[data-sid='planning-room']")
            page.wait_for_selector("#live[data-state='live']")
            assert page.locator("#messages .msg").count() == 5
            assert page.locator("#participants li").all_inner_texts() == ["Planner", "Coder", "Reviewer"]
            page.wait_for_selector("#facts dd.ok")
            page.evaluate("window.__noReload = true")

            # A message posted by another process appears without a reload.
            _post_from_another_process(viewer_server.url, "Server is up; the live view works.")
            page.wait_for_selector("#messages .msg:nth-child(6)", timeout=15_000)
            last = page.locator("#messages .msg").last
            assert last.locator(".content").inner_text() == "Server is up; the live view works."
            assert last.locator(".seq").inner_text() == "#7"
            assert last.locator(".recipient").inner_text() == "Planner"
            # ... and the list follows: the session moves to the top with its new count.
            expect(links.first).to_have_attribute("data-sid", "planning-room")
            expect(links.first.locator(".counts")).to_contain_text("6 messages")

            # Hostile content renders as text: no element, no script, no dialog.
            _post_from_another_process(viewer_server.url, HOSTILE)
            page.wait_for_selector("#messages .msg:nth-child(7)", timeout=15_000)
            assert page.locator("#messages .msg").last.locator(".content").text_content() == HOSTILE
            assert page.locator("#messages img").count() == 0
            page.wait_for_timeout(500)  # give a would-be onerror handler its chance
            assert dialogs == []
            assert page.evaluate("window.__noReload") is True

            page.locator("#messages .msg").last.scroll_into_view_if_needed()
            page.screenshot(path=str(ARTIFACTS / "viewer-transcript.png"))
            page.emulate_media(color_scheme="dark")
            page.screenshot(path=str(ARTIFACTS / "viewer-transcript-dark.png"))
            page.emulate_media(color_scheme="light")

            # A phone: one pane at a time, with a way back to the list.
            page.set_viewport_size({"width": 390, "height": 844})
            page.wait_for_timeout(300)
            assert page.locator(".sidebar").is_hidden() and page.locator(".back").is_visible()
            page.screenshot(path=str(ARTIFACTS / "viewer-phone-transcript.png"))
            page.click(".back")
            page.wait_for_selector(".sidebar", state="visible")
            assert page.locator("#session").is_hidden()
            page.screenshot(path=str(ARTIFACTS / "viewer-phone-list.png"))
        finally:
            browser.close()
    assert problems == [], problems
