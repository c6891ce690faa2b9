// The open session: its facts (kept current while it is live), participants and metadata, the
// toolbar (search in it, filters, jump, the agent picture, export), its transcript, and the
// live stream that feeds both.

import { api, LiveStream } from "./api.js";
import { renderGraph } from "./graph.js";
import { emptyNote, Transcript } from "./transcript.js";
import {
  $, bytes, colourOf, debounce, el, fullDate, plural, putText, resetColours, sessionHash, sessionUrl, shownText,
  textEl,
} from "./util.js";

const FACTS_MS = 3000;       // size re-read at most this often while events arrive
const VERIFY_MS = 8000;      // and the verify status re-checked at most this often
const GRAPH_MS = 2000;

// "#123" or "123": a seq; otherwise a local date and time ("2024-05-01 14:03", "14:03").
export function parseJump(text) {
  const value = text.trim();
  if (/^#?\d+$/.test(value)) return { around_seq: Number(value.replace("#", "")) };
  let when = value;
  if (/^\d{1,2}:\d{2}(:\d{2})?$/.test(value)) {
    const today = new Date();
    const pad = (n) => String(n).padStart(2, "0");
    when = `${today.getFullYear()}-${pad(today.getMonth() + 1)}-${pad(today.getDate())}T${value}`;
  } else if (/^\d{4}-\d{2}-\d{2} /.test(value)) {
    when = value.replace(" ", "T");
  }
  const ms = Date.parse(when);
  return Number.isNaN(ms) ? null : { at_ts: ms / 1000 };
}

function option(value, text) {
  const node = el("option", null, text);
  node.value = value;
  return node;
}

export class SessionView {
  constructor(list) {
    this.list = list;
    this.id = null;
    this.summary = null;
    this.stream = null;
    this.transcript = null;
    this.graph = null;
    this.dirty = false;
    this.lastFacts = 0;
    this.lastVerify = 0;
    $("in-search").addEventListener("input", debounce(() => this.refilter(), 300));
    for (const id of ["f-sender", "f-recipient", "f-type"]) $(id).addEventListener("change", () => this.refilter());
    $("clear-filters").addEventListener("click", () => this.clearFilters());
    $("jump-form").addEventListener("submit", (event) => {
      event.preventDefault();
      this.jump($("jump").value);
    });
    $("older").addEventListener("click", () => this.transcript && this.transcript.older());
    $("newer").addEventListener("click", () => this.transcript && this.transcript.newer());
    $("new-events").addEventListener("click", () => this.toLatest());
    $("graph-toggle").addEventListener("click", () => this.toggleGraph());
    $("retry").addEventListener("click", () => this.stream && this.stream.retryNow());
    setInterval(() => this.tick(), 1000);
  }

  current() {
    return this.id;
  }

  filters() {
    const recipient = $("f-recipient").value;
    return {
      q: $("in-search").value.trim(),
      sender: $("f-sender").value || null,
      recipient: recipient && recipient !== "\u0000everyone" ? recipient : null,
      to_everyone: recipient === "\u0000everyone",
      type: $("f-type").value ? [$("f-type").value] : [],
    };
  }

  async open(id, seq) {
    if (this.id === id && this.transcript && seq) {
      await this.showSeq(seq);
      return;
    }
    this.close();
    this.id = id;
    $("session-title").replaceChildren();
    putText($("session-title"), id);
    $("events").replaceChildren();
    $("graph").hidden = true;
    $("graph-toggle").setAttribute("aria-expanded", "false");
    for (const sel of ["f-sender", "f-recipient", "f-type"]) $(sel).replaceChildren(option("", "anyone"));
    $("f-type").replaceChildren(option("", "any type"));
    $("in-search").value = "";
    $("jump").value = "";
    $("export-jsonl").href = sessionUrl(id, "/export", { format: "jsonl" });
    $("export-md").href = sessionUrl(id, "/export", { format: "markdown" });
    this.setLive("connecting", "connecting");
    let summary;
    try {
      summary = await api(sessionUrl(id));
    } catch (error) {
      if (this.id !== id) return;
      $("facts").replaceChildren(el("div", null, error.message));
      $("participants").replaceChildren();
      this.setLive("ended", error.status === 404 ? "not found" : "error");
      return;
    }
    if (this.id !== id) return;
    this.summary = summary;
    resetColours(summary.participants);
    this.renderHead();
    this.loadGraph();
    await this.start(seq ? { around_seq: seq } : null, seq);
    api(sessionUrl(id, "/verify")).then((report) => this.verified(id, report)).catch(() => {});
  }

  close() {
    if (this.stream) this.stream.stop();
    if (this.transcript) this.transcript.close();
    this.stream = null;
    this.transcript = null;
    this.id = null;
    this.summary = null;
  }

  // A transcript (filtered as the toolbar says), then the stream from the head it saw.
  async start(anchor, seq) {
    const id = this.id;
    if (this.transcript) this.transcript.close();
    const transcript = new Transcript(id, this.filters(), { changed: () => this.transcriptChanged() });
    this.transcript = transcript;
    transcript.setRewinds(this.summary ? this.summary.rewinds : []);
    let page;
    try {
      page = await transcript.load(anchor);
    } catch (error) {
      if (this.transcript === transcript) $("events").replaceChildren(emptyNote("Cannot load: " + error.message));
      return;
    }
    if (!page || this.transcript !== transcript) return;
    if (seq || (anchor && anchor.at_ts)) {
      const shown = transcript.reveal(seq || page.anchor_seq || 1);
      $("jump-status").textContent = shown === null ? "Nothing there." : "";
    } else {
      transcript.scrollToEnd();
    }
    if (!this.stream) {
      this.stream = new LiveStream(sessionUrl(id, "/stream"), page.last_seq, {
        events: (events) => this.onEvents(events),
        state: (name, detail) => this.onState(name, detail),
        gone: (status) => this.onGone(status),
      });
    }
    this.transcriptChanged();
  }

  async showSeq(seq) {
    const found = this.transcript.items.find((item) => item.event.seq === seq);
    if (found) this.transcript.reveal(seq);
    else await this.start({ around_seq: seq }, seq);
  }

  refilter() {
    const f = this.filters();
    $("clear-filters").hidden = !(f.q || f.sender || f.recipient || f.to_everyone || f.type.length);
    this.start(null, null);
  }

  clearFilters() {
    $("in-search").value = "";
    for (const id of ["f-sender", "f-recipient", "f-type"]) $(id).value = "";
    this.refilter();
  }

  jump(text) {
    const anchor = parseJump(text);
    if (!anchor) {
      $("jump-status").textContent = "Give a seq (#123) or a time (2024-05-01 14:03).";
      return;
    }
    $("jump-status").textContent = "";
    this.start(anchor, anchor.around_seq || null);
  }

  toLatest() {
    this.start(null, null);
  }

  // Live --------------------------------------------------------------------------------

  onEvents(events) {
    const s = this.summary;
    if (!s) return;
    let people = false;
    let rewound = false;
    const redactions = [];
    for (const event of events) {
      const d = event.data || {};
      s.last_seq = event.seq;
      if (typeof event.ts === "number" && event.ts > s.last_activity) s.last_activity = event.ts;
      if (event.type === "message") {
        s.message_count += 1;
        for (const who of [d.sender, d.recipient]) {
          if (who && !s.participants.includes(who)) {
            s.participants.push(who);
            people = true;
          }
        }
      } else if (event.type === "session.participant_joined" && !s.participants.includes(d.participant)) {
        s.participants.push(d.participant);
        people = true;
      } else if (event.type === "session.participant_left") {
        s.participants = s.participants.filter((p) => p !== d.participant);
        people = true;
      } else if (event.type === "session.rewound") {
        rewound = true;
      } else if (event.type === "session.redacted") {
        redactions.push(event);
      }
    }
    this.transcript.live(events);
    for (const event of redactions) {
      const d = event.data || {};
      this.transcript.redact(d.seqs || [], { reason: String(d.reason), seq: event.seq, sha256: "" });
    }
    // Both change the visible state (a redaction may erase a participant): the server folds it.
    if (rewound || redactions.length) this.refold();
    this.dirty = true;
    this.headDirty = true;
    this.peopleDirty = this.peopleDirty || people;
    this.list.touch({ session_id: s.session_id, message_count: s.message_count, last_seq: s.last_seq,
      last_activity: s.last_activity, participants: s.participants.slice() });
  }

  // A rewind or a redaction came: the visible state is an older one, or lost a sender, and
  // only the server folds it. Read it again, and mark the events a rewind hides.
  refold() {
    const id = this.id;
    api(sessionUrl(id)).then((fresh) => {
      if (this.id !== id || !this.summary) return;
      for (const name of ["message_count", "participants", "metadata", "rewinds"]) {
        this.summary[name] = fresh[name];
      }
      if (this.transcript) this.transcript.setRewinds(fresh.rewinds);
      this.headDirty = true;
      this.peopleDirty = true;
    }).catch(() => {});
  }

  // Once a second: the head re-drawn if events came; size and verify re-read now and then.
  tick() {
    const s = this.summary;
    if (!s || !this.id) return;
    if (this.headDirty) {
      this.headDirty = false;
      this.renderFacts();
      if (this.peopleDirty) {
        this.peopleDirty = false;
        this.renderParticipants();
      }
    }
    const now = Date.now();
    if (this.dirty && now - this.lastFacts > FACTS_MS) {
      this.lastFacts = now;
      const id = this.id;
      api(sessionUrl(id)).then((fresh) => {
        if (this.id !== id) return;
        this.summary.size_bytes = fresh.size_bytes;
        this.renderFacts();
      }).catch(() => {});
      if (!$("graph").hidden && now - (this.graphAt || 0) > GRAPH_MS) this.loadGraph();
    }
    if (this.dirty && now - this.lastVerify > VERIFY_MS) {
      this.lastVerify = now;
      this.dirty = false;
      const id = this.id;
      api(sessionUrl(id, "/verify")).then((report) => this.verified(id, report)).catch(() => {});
    }
  }

  verified(id, report) {
    if (this.id !== id || !this.summary) return;
    this.summary.verify = report;
    this.lastVerify = Date.now();
    this.renderFacts();
    this.list.touch({ session_id: id, verify: report });
  }

  onState(name, detail) {
    $("retry").hidden = name !== "reconnecting";
    if (name === "live") this.setLive("live", "live");
    else if (name === "connecting") this.setLive("connecting", "connecting");
    else {
      const seconds = Math.max(1, Math.round(detail.wait / 1000));
      this.setLive("reconnecting", "reconnecting in " + seconds + " s", detail.error);
    }
  }

  onGone(status) {
    if (status === 409) {  // another life of this id, shorter than the one shown: start again
      const id = this.id;
      this.close();
      this.open(id, null);
      return;
    }
    this.setLive("ended", status === 404 ? "deleted" : "stopped");
  }

  setLive(which, text, title) {
    const live = $("live");
    live.dataset.state = which;
    live.textContent = shownText(text);
    live.title = shownText(title);
  }

  transcriptChanged() {
    const t = this.transcript;
    if (!t) return;
    $("older").hidden = t.olderBefore === null;
    $("newer").hidden = t.atHead;
    const button = $("new-events");
    button.hidden = t.atHead || t.unseen === 0;
    button.textContent = plural(t.unseen, "new event") + " \u2193";
    const range = t.range();
    const f = this.filters();
    const filtered = f.q || f.sender || f.recipient || f.to_everyone || f.type.length;
    $("no-events").hidden = t.items.length > 0;
    $("no-events").textContent = filtered ? "No event matches." : "No events yet.";
    $("range").textContent = range ? "#" + range[0] + "\u2013#" + range[1] + " of #" + t.headSeq
      + (filtered ? " (filtered)" : "") : "";
  }

  // The head ------------------------------------------------------------------------------

  renderHead() {
    this.renderFacts();
    this.renderParticipants();
    const meta = this.summary.metadata || {};
    const box = $("metadata");
    box.hidden = !Object.keys(meta).length;
    const pre = $("metadata-json");
    pre.replaceChildren();
    putText(pre, JSON.stringify(meta, null, 2));
  }

  renderFacts() {
    const s = this.summary;
    const facts = [
      ["messages", String(s.message_count), null],
      ["last seq", "#" + s.last_seq, null],
      ["size", bytes(s.size_bytes), null],
      ["created", fullDate(s.created_at), "wide"],
      ["last activity", fullDate(s.last_activity), "wide"],
    ];
    const rows = facts.map(([name, value, cls]) => {
      const row = el("div", cls);
      row.append(el("dt", null, name), el("dd", null, value));
      return row;
    });
    const v = s.verify;
    let text = "not checked yet";
    let cls = null;
    if (v) {
      const upTo = v.events_checked < s.last_seq ? " up to #" + v.events_checked
        : " (" + plural(v.events_checked, "event") + ")";
      text = v.ok ? "\u2713 ok" + upTo : "\u2717 " + plural(v.problems.length, "problem");
      cls = v.ok ? "ok" : "bad";
    }
    const verify = el("div");
    verify.append(el("dt", null, "verify"), el("dd", cls, text));
    rows.push(verify);
    if (s.forked_from) {
      const parent = el("a", "forked-from", s.forked_from.session_id + " #" + s.forked_from.seq);
      parent.href = sessionHash(s.forked_from.session_id, s.forked_from.seq);
      const dd = el("dd");
      dd.append(parent);
      const row = el("div", "wide");
      row.append(el("dt", null, "forked from"), dd);
      rows.push(row);
    }
    $("facts").replaceChildren(...rows);
    const problems = v && !v.ok ? v.problems : [];
    $("problems").hidden = problems.length === 0;
    $("problem-list").replaceChildren(...problems.map((p) => textEl("li", null, p)));
  }

  renderParticipants() {
    const people = this.summary.participants.map((name) => textEl("li", colourOf(name), name));
    $("participants").replaceChildren(...people);
  }

  // Filters and the agent picture ---------------------------------------------------------

  async loadGraph() {
    const id = this.id;
    this.graphAt = Date.now();
    let data;
    try {
      data = await api(sessionUrl(id, "/graph"));
    } catch (_) {
      return;
    }
    if (this.id !== id) return;
    this.graph = data;
    this.fillFilters(data);
    if (!$("graph").hidden) {
      renderGraph($("graph-body"), data, (pair) => this.pick(pair));
    }
  }

  fillFilters(data) {
    const names = [...new Set([...data.participants, ...data.pairs.map((p) => p.sender),
      ...data.pairs.map((p) => p.recipient).filter((r) => r !== null)])];
    const keep = (id, options) => {
      const select = $(id);
      const chosen = select.value;
      select.replaceChildren(...options);
      select.value = chosen;
      if (select.value !== chosen) select.value = "";
    };
    keep("f-sender", [option("", "anyone"), ...names.map((n) => option(n, n))]);
    keep("f-recipient", [option("", "anyone"), option("\u0000everyone", "everyone"),
      ...names.map((n) => option(n, n))]);
    keep("f-type", [option("", "any type"), ...data.types.map((t) => option(t.type, t.type + " (" + t.count + ")"))]);
  }

  toggleGraph() {
    const panel = $("graph");
    panel.hidden = !panel.hidden;
    $("graph-toggle").setAttribute("aria-expanded", String(!panel.hidden));
    if (!panel.hidden) this.loadGraph();
  }

  pick(pair) {
    this.fillFilters(this.graph);
    $("f-sender").value = pair.sender;
    $("f-recipient").value = pair.recipient === null ? "\u0000everyone" : pair.recipient;
    this.refilter();
  }
}
