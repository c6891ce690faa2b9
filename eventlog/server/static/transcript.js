// The transcript of one session: a window of at most CAP events of a history of any length.
//
// It loads a page (newest, or around a seq or a time), then older pages as the reader scrolls
// up and newer ones as they scroll down, dropping events at the far end so the page never
// holds more than CAP of them. While the window reaches the head and the reader is at the
// bottom, live events are appended in one batch per animation frame; otherwise they are
// counted ("N new") and kept aside, and the window catches up from the server when the
// reader comes back down.

import { api } from "./api.js";
import { eventNode, gapNode, hiddenBy, markRewound } from "./render.js";
import { $, duration, el, highlighter, sessionUrl } from "./util.js";

const PAGE = 150;
const CAP = 500;                   // events in the page at most
const PAGE_BYTES = 512 * 1024;
const CLIP = 2000;
const EDGE_PX = 700;               // how near an end scrolling fetches the next page
const GAP_SECONDS = 120;           // a pause at least this long is shown between events
const LIVE_KEPT = 2 * CAP;         // live events kept aside while the window is away from the head

const encoder = new TextEncoder();

export function matches(event, f) {
  const d = event.data || {};
  const message = event.type === "message";
  if (f.type && f.type.length && !f.type.includes(event.type)) return false;
  if (f.sender || f.recipient || f.to_everyone) {
    if (!message) return false;
    if (f.sender && d.sender !== f.sender) return false;
    if (f.recipient && d.recipient !== f.recipient) return false;
    if (f.to_everyone && d.recipient !== null && d.recipient !== undefined) return false;
  }
  if (!f.q) return true;
  const needle = f.q.toLowerCase();
  const fields = message ? [d.content, d.sender, d.recipient, d.message_type]
    : [event.type, JSON.stringify(event.data)];
  return fields.some((v) => typeof v === "string" && v.toLowerCase().includes(needle));
}

export class Transcript {
  constructor(sid, filters, hooks) {
    this.sid = sid;
    this.filters = filters;
    this.hooks = hooks;              // {changed()}
    this.box = $("transcript");
    this.list = $("events");
    this.items = [];                 // {event, nodes} oldest first
    this.olderBefore = null;         // before_seq of the page before the window (null: none)
    this.newerAfter = null;          // after_seq of the page after it (null: the window is at the head)
    this.loading = false;
    this.pending = [];               // live events waiting for the next frame
    this.aside = [];                 // live events that arrived while away from the head
    this.unseen = 0;
    this.headSeq = 0;
    this.ctx = { sid, mark: highlighter(filters.q), rewinds: [] };
    this.frame = 0;
    this.closed = false;
    this.onScroll = () => this.scrolled();
    this.box.addEventListener("scroll", this.onScroll, { passive: true });
    this.list.replaceChildren();
  }

  // A redaction arrived: the events it erased show as redacted at once, on screen, waiting
  // for the next frame, or kept aside (pages read later come from the server redacted).
  // Their tombstone here holds what the redaction event says; its sha256 stays on the server.
  redact(seqs, tomb) {
    const wanted = new Set(seqs);
    for (const e of [...this.pending, ...this.aside]) {
      if (wanted.has(e.seq)) e.data = { redacted: tomb };
    }
    for (const item of this.items) {
      if (!wanted.has(item.event.seq)) continue;
      item.event = { ...item.event, data: { redacted: tomb } };
      const old = item.nodes[item.nodes.length - 1];
      const fresh = eventNode(this.ctx, item.event);
      old.replaceWith(fresh);
      item.nodes[item.nodes.length - 1] = fresh;
    }
  }

  // The session's rewinds changed (a rewind arrived): mark the events shown again.
  setRewinds(rewinds) {
    this.ctx.rewinds = rewinds || [];
    for (const item of this.items) {
      const node = item.nodes[item.nodes.length - 1];
      markRewound(node, hiddenBy(this.ctx.rewinds, item.event.seq));
    }
  }

  close() {
    this.closed = true;
    cancelAnimationFrame(this.frame);
    this.box.removeEventListener("scroll", this.onScroll);
  }

  get atHead() {
    return this.newerAfter === null;
  }

  params(extra) {
    const f = this.filters;
    return { limit: PAGE, max_bytes: PAGE_BYTES, clip: CLIP, q: f.q, sender: f.sender,
      recipient: f.recipient, to_everyone: f.to_everyone, type: f.type, ...extra };
  }

  async fetchPage(extra) {
    const page = await api(sessionUrl(this.sid, "/transcript"), this.params(extra));
    this.headSeq = Math.max(this.headSeq, page.last_seq);
    return page;
  }

  // The newest page, or the page around `anchor` ({around_seq} or {at_ts}).
  async load(anchor) {
    this.loading = true;
    try {
      const page = await this.fetchPage(anchor || {});
      if (this.closed) return null;
      this.items = [];
      this.list.replaceChildren();
      this.olderBefore = page.older_before_seq;
      this.newerAfter = page.newer_after_seq;
      this.unseen = 0;
      this.insert(page.events, "end");
      if (this.atHead) this.rejoin(page.last_seq);
      this.hooks.changed();
      return page;
    } finally {
      this.loading = false;
    }
  }

  // Show events `events` (oldest first) at one end of the window.
  insert(events, where) {
    if (!events.length) return;
    const fragment = document.createDocumentFragment();
    const added = [];
    let previous = where === "end" && this.items.length ? this.items[this.items.length - 1].event : null;
    for (const event of events) {
      const nodes = [];
      if (previous && event.ts - previous.ts >= GAP_SECONDS) {
        nodes.push(gapNode(event.ts - previous.ts, duration(event.ts - previous.ts) + " later"));
      }
      nodes.push(eventNode(this.ctx, event));
      fragment.append(...nodes);
      added.push({ event, nodes });
      previous = event;
    }
    if (where === "end") {
      this.list.append(fragment);
      this.items.push(...added);
    } else {
      const first = this.items[0];
      if (first && first.event.ts - previous.ts >= GAP_SECONDS && first.nodes.length === 1) {
        const gap = gapNode(first.event.ts - previous.ts, duration(first.event.ts - previous.ts) + " later");
        first.nodes.unshift(gap);
        first.nodes[1].before(gap);
      }
      this.list.prepend(fragment);
      this.items.unshift(...added);
    }
  }

  drop(count, where) {
    const gone = where === "start" ? this.items.splice(0, count) : this.items.splice(this.items.length - count);
    for (const item of gone) item.nodes.forEach((n) => n.remove());
    if (where === "start" && this.items.length) {
      this.olderBefore = this.items[0].event.seq;
      const first = this.items[0];
      if (first.nodes.length > 1) first.nodes.shift().remove();
    } else if (where === "end" && this.items.length) {
      this.newerAfter = this.items[this.items.length - 1].event.seq;
    }
  }

  nearBottom() {
    return this.box.scrollHeight - this.box.scrollTop - this.box.clientHeight < 80;
  }

  scrolled() {
    if (this.loading || this.closed) return;
    if (this.box.scrollTop < EDGE_PX && this.olderBefore !== null) this.older();
    else if (this.newerAfter !== null
             && this.box.scrollHeight - this.box.scrollTop - this.box.clientHeight < EDGE_PX) this.newer();
  }

  async older() {
    if (this.loading || this.olderBefore === null) return;
    this.loading = true;
    try {
      const page = await this.fetchPage({ before_seq: this.olderBefore });
      if (this.closed) return;
      const height = this.box.scrollHeight;
      const top = this.box.scrollTop;
      this.insert(page.events, "start");
      this.olderBefore = page.older_before_seq;
      if (this.items.length > CAP) this.drop(this.items.length - CAP, "end");
      this.box.scrollTop = top + (this.box.scrollHeight - height);
      this.hooks.changed();
    } finally {
      this.loading = false;
    }
  }

  async newer() {
    if (this.loading || this.newerAfter === null) return;
    this.loading = true;
    try {
      const page = await this.fetchPage({ after_seq: this.newerAfter });
      if (this.closed) return;
      this.insert(page.events, "end");
      this.newerAfter = page.newer_after_seq;
      if (this.items.length > CAP) {
        const top = this.box.scrollTop;
        const height = this.box.scrollHeight;
        this.drop(this.items.length - CAP, "start");
        this.box.scrollTop = top - (height - this.box.scrollHeight);
      }
      if (this.atHead) this.rejoin(page.last_seq);
      this.hooks.changed();
    } finally {
      this.loading = false;
    }
  }

  // The window reached the head as the server saw it at `lastSeq`: show the live events
  // that arrived meanwhile, if none is missing; else fetch the next page instead.
  rejoin(lastSeq) {
    const later = this.aside.filter((e) => e.seq > lastSeq);
    this.aside = [];
    if (later.length && later[0].seq > lastSeq + 1 && this.missedAside) {
      this.newerAfter = lastSeq;  // some were dropped while away: read them from the log
      this.missedAside = false;
      return;
    }
    this.missedAside = false;
    this.unseen = 0;
    const shown = this.items.length ? this.items[this.items.length - 1].event.seq : 0;
    this.pending.push(...later.filter((e) => e.seq > shown && matches(e, this.filters)));
    this.schedule();
  }

  // Events from the live stream, in seq order.
  live(events) {
    if (this.closed) return;
    for (const e of events) {
      // The stream sends events whole; pages say how big each is. Say it for these too.
      if (e.size === undefined) e.size = encoder.encode(JSON.stringify(e.data)).length;
    }
    this.headSeq = Math.max(this.headSeq, events[events.length - 1].seq);
    if (!this.atHead) {
      this.aside.push(...events);
      if (this.aside.length > LIVE_KEPT) {
        this.aside.splice(0, this.aside.length - LIVE_KEPT);
        this.missedAside = true;
      }
      this.unseen += events.filter((e) => matches(e, this.filters)).length;
      this.hooks.changed();
      return;
    }
    const kept = events.filter((e) => matches(e, this.filters));
    if (!kept.length) return;
    this.pending.push(...kept);
    this.schedule();
  }

  schedule() {
    if (this.frame || !this.pending.length) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.flush();
    });
  }

  flush() {
    if (this.closed || !this.pending.length) return;
    const batch = this.pending;
    this.pending = [];
    const stick = this.nearBottom();
    if (!stick && this.items.length + batch.length > CAP) {
      // The reader is up in the history: leave the window where it is, and count.
      this.newerAfter = this.items.length ? this.items[this.items.length - 1].event.seq : 0;
      this.aside.push(...batch);
      this.unseen += batch.length;
      this.hooks.changed();
      return;
    }
    const shown = batch.length > CAP ? batch.slice(batch.length - CAP) : batch;
    if (shown.length < batch.length) {
      this.drop(this.items.length, "start");
      this.olderBefore = shown[0].seq;  // the ones skipped are in the log, a scroll away
    } else if (this.items.length + shown.length > CAP) {
      this.drop(this.items.length + shown.length - CAP, "start");
    }
    const fresh = shown.length <= 20;
    this.insert(shown, "end");
    if (fresh) {
      for (const item of this.items.slice(-shown.length)) item.nodes[item.nodes.length - 1].classList.add("fresh");
    }
    if (stick) this.box.scrollTop = this.box.scrollHeight;
    this.hooks.changed();
  }

  // Put the event `seq` in view and mark it (a permalink or a jump).
  reveal(seq) {
    for (const n of this.list.querySelectorAll(".target")) n.classList.remove("target");
    const found = this.items.find((item) => item.event.seq >= seq);
    if (!found) return null;
    const node = found.nodes[found.nodes.length - 1];
    node.classList.add("target");
    node.scrollIntoView({ block: "center" });
    return found.event.seq;
  }

  scrollToEnd() {
    this.box.scrollTop = this.box.scrollHeight;
  }

  range() {
    if (!this.items.length) return null;
    return [this.items[0].event.seq, this.items[this.items.length - 1].event.seq];
  }
}

export function emptyNote(text) {
  return el("li", "empty", text);
}
