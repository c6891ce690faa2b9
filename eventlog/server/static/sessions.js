// The sidebar: every session, a page at a time (the server's cursor), with the catalog's
// filters; and search across every session's messages, with the matches marked.

import { api } from "./api.js";
import {
  $, ago, bytes, debounce, el, highlighter, plural, putText, sessionHash, sessionUrl, shownText, textEl,
} from "./util.js";

const PAGE = 100;
const REFRESH_MS = 5000;
const VERIFY_AHEAD = 30;
const SEARCH_PAGE = 30;

function verifyBadge(s) {
  const v = s.verify;
  if (!v) return el("span", "badge", "unchecked");
  if (!v.ok) return el("span", "badge bad", "\u2717 " + plural(v.problems.length, "problem"));
  const stale = v.events_checked < s.last_seq;
  return el("span", stale ? "badge" : "badge ok", stale ? "\u2713 to #" + v.events_checked : "\u2713 verified");
}

// "key=value" (the value as JSON if it parses, else as text) -> the metadata filter's JSON.
function metadataFilter(text) {
  const at = text.indexOf("=");
  if (at < 1) return null;
  const key = text.slice(0, at).trim();
  const raw = text.slice(at + 1).trim();
  let value = raw;
  try {
    value = JSON.parse(raw);
  } catch (_) { /* plain text */ }
  return JSON.stringify({ [key]: value });
}

export class SessionList {
  constructor(hooks) {
    this.hooks = hooks;          // {current(): id or null}
    this.sessions = [];
    this.unreadable = [];
    this.next = null;
    this.total = 0;
    this.verifying = false;
    this.searching = null;       // {query, hits, next} while searching every session
    this.generation = 0;
    const reload = debounce(() => this.reload(), 250);
    for (const id of ["filter", "f-participant", "f-metadata", "f-prefix"]) $(id).addEventListener("input", reload);
    for (const id of ["f-active", "f-order"]) $(id).addEventListener("change", () => this.reload());
    $("more-sessions").addEventListener("click", () => this.more());
    $("sessions-box").addEventListener("scroll", () => {
      const box = $("sessions-box");
      if (box.scrollHeight - box.scrollTop - box.clientHeight < 300) this.more();
    }, { passive: true });
    $("global-search").addEventListener("input", debounce(() => this.search(), 300));
    $("more-hits").addEventListener("click", () => this.moreHits());
    setInterval(() => { if (!document.hidden) this.refresh(); }, REFRESH_MS);
  }

  params(cursor) {
    const order = $("f-order").value;
    const within = Number($("f-active").value);
    return {
      limit: PAGE, cursor, q: $("filter").value.trim(), participant: $("f-participant").value.trim(),
      metadata: metadataFilter($("f-metadata").value), prefix: $("f-prefix").value.trim(),
      active_after: within ? Date.now() / 1000 - within : null,
      order, descending: order === "session_id" ? "false" : "true",
    };
  }

  async reload() {
    const generation = ++this.generation;
    try {
      const page = await api("/api/sessions", this.params(null));
      if (generation !== this.generation) return;
      this.sessions = page.sessions;
      this.unreadable = page.unreadable;
      this.next = page.next_cursor;
      this.total = page.total;
      this.render();
      this.verifyAhead();
    } catch (error) {
      $("list-status").textContent = shownText("Cannot load sessions: " + error.message);
    }
  }

  async more() {
    if (!this.next || this.loadingMore) return;
    this.loadingMore = true;
    const generation = this.generation;
    try {
      const page = await api("/api/sessions", this.params(this.next));
      if (generation !== this.generation) return;
      const known = new Set(this.sessions.map((s) => s.session_id));
      this.sessions.push(...page.sessions.filter((s) => !known.has(s.session_id)));
      this.next = page.next_cursor;
      this.render();
    } catch (error) {
      $("list-status").textContent = shownText("Cannot load more sessions: " + error.message);
    } finally {
      this.loadingMore = false;
    }
  }

  // The periodic refresh re-reads the first page only while no more than it is shown.
  refresh() {
    if (this.sessions.length <= PAGE && !this.loadingMore) this.reload();
  }

  // The open session changed (live): its row follows without waiting for a refresh.
  touch(summary) {
    const listed = this.sessions.find((s) => s.session_id === summary.session_id);
    if (!listed) return;
    Object.assign(listed, summary);
    if (!this.pending) {
      this.pending = true;
      requestAnimationFrame(() => {
        this.pending = false;
        if ($("f-order").value === "last_activity") {
          this.sessions.sort((a, b) => b.last_activity - a.last_activity
            || (a.session_id < b.session_id ? -1 : 1));
        }
        this.render();
      });
    }
  }

  render() {
    const current = this.hooks.current();
    const broken = this.unreadable.map((u) => {
      const link = el("a");
      link.href = sessionHash(u.session_id);
      const top = el("div", "row");
      top.append(textEl("span", "sid", u.session_id), el("span", "badge bad", "\u2717 unreadable"));
      link.append(top, textEl("div", "who", u.error));
      const item = el("li");
      item.append(link);
      return item;
    });
    const items = this.sessions.map((s) => {
      const link = el("a");
      link.href = sessionHash(s.session_id);
      link.dataset.sid = s.session_id;
      if (current === s.session_id) link.setAttribute("aria-current", "true");
      const top = el("div", "row");
      top.append(textEl("span", "sid", s.session_id), el("span", "when", ago(s.last_activity)));
      const who = el("div", "who");
      who.dir = "auto";
      if (!s.participants.length) who.textContent = "no participants";
      s.participants.forEach((p, i) => {
        if (i) who.append(", ");
        who.append(textEl("span", "name", p));
      });
      const counts = el("div", "counts");
      counts.append(el("span", null, plural(s.message_count, "message") + " \u00b7 " + bytes(s.size_bytes)),
        verifyBadge(s));
      link.append(top, who, counts);
      const item = el("li");
      item.append(link);
      return item;
    });
    $("sessions").replaceChildren(...broken, ...items);
    $("store-count").textContent = plural(this.total, "session");
    const filtered = this.params(null);
    const any = filtered.q || filtered.participant || filtered.metadata || filtered.prefix || filtered.active_after;
    $("list-status").textContent = !this.sessions.length ? (any ? "No session matches." : "No sessions yet.")
      : this.next ? "Showing " + this.sessions.length + " of " + this.total + "." : "";
    $("more-sessions").hidden = !this.next;
  }

  async verifyAhead() {
    if (this.verifying || document.hidden) return;
    const todo = this.sessions.slice(0, VERIFY_AHEAD)
      .filter((s) => !s.verify || s.verify.events_checked < s.last_seq);
    if (!todo.length) return;
    this.verifying = true;
    try {
      for (const s of todo) {
        const report = await api(sessionUrl(s.session_id, "/verify")).catch(() => null);
        if (report) s.verify = report;
      }
    } finally {
      this.verifying = false;
    }
    this.render();
  }

  // Search every session --------------------------------------------------------------

  async search() {
    const query = $("global-search").value.trim();
    const box = $("app");
    if (!query) {
      this.searching = null;
      box.dataset.searching = "false";
      return;
    }
    box.dataset.searching = "true";
    this.searching = { query, hits: [], next: null };
    $("hits").replaceChildren();
    $("hits-status").textContent = "Searching\u2026";
    await this.moreHits();
  }

  async moreHits() {
    const search = this.searching;
    if (!search) return;
    try {
      const page = await api("/api/search", { q: search.query, limit: SEARCH_PAGE, cursor: search.next,
        clip: 300 });
      if (search !== this.searching) return;
      search.next = page.next_cursor;
      search.hits.push(...page.hits);
      const mark = highlighter(search.query);
      $("hits").append(...page.hits.map((hit) => this.hitNode(hit, mark)));
      $("hits-status").textContent = search.hits.length
        ? plural(search.hits.length, "match") + (search.next ? " so far" : "")
        : search.next ? "No match yet (searched " + page.events_scanned + " events)" : "No match.";
      $("more-hits").hidden = !search.next;
    } catch (error) {
      $("hits-status").textContent = shownText("Search failed: " + error.message);
    }
  }

  hitNode(hit, mark) {
    const e = hit.event;
    const d = e.data || {};
    const link = el("a");
    link.href = sessionHash(hit.session_id, e.seq);
    const top = el("div", "row");
    top.append(textEl("span", "sid", hit.session_id), el("span", "when", "#" + e.seq));
    const who = el("div", "who");
    if (e.type === "message") {
      who.append(textEl("span", "name", d.sender, mark), " \u2192 ",
        d.recipient === null || d.recipient === undefined ? "everyone" : textEl("span", "name", d.recipient, mark));
    } else {
      who.append(textEl("span", "name", e.type, mark));
    }
    const text = el("div", "snippet");
    text.dir = "auto";
    putText(text, hit.snippet, mark);
    link.append(top, who, text);
    const item = el("li");
    item.append(link);
    return item;
  }
}
