// One event as one list item: a message card, a join/leave note, or a custom event with its
// data as expandable, pretty-printed JSON. An event that cannot be shown becomes a card that
// says so, with its raw JSON: the transcript never dies on one event.

import { api } from "./api.js";
import {
  bytes, clock, colourOf, el, fullDate, isoDate, plural, putText, sessionHash, sessionUrl, shownText, textEl,
} from "./util.js";

const COLLAPSE_CHARS = 1500;     // longer content starts collapsed
const COLLAPSE_LINES = 18;
const INLINE_MAX = 2 * 1024 * 1024;  // bigger events open as raw JSON instead of in the page

function timeNode(ts) {
  const time = el("time", "ev-time", clock(ts));
  const iso = isoDate(ts);
  if (iso) time.dateTime = iso;
  time.title = fullDate(ts);
  return time;
}

function seqLink(ctx, seq) {
  const link = el("a", "seq", "#" + seq);
  link.href = sessionHash(ctx.sid, seq);
  link.title = "Link to this event";
  return link;
}

async function fullEvent(ctx, event) {
  if (!event.clipped) return event;
  return api(sessionUrl(ctx.sid, "/events/" + event.seq));
}

function rawJson(event) {
  const { seq, type, ts, data } = event;
  return JSON.stringify({ seq, type, ts, data }, null, 2);
}

function copyButton(ctx, event) {
  const button = el("button", "ev-action", "Copy JSON");
  button.type = "button";
  button.setAttribute("aria-label", "Copy JSON of event #" + event.seq);
  button.addEventListener("click", async () => {
    try {
      const whole = await fullEvent(ctx, event);
      await navigator.clipboard.writeText(rawJson(whole));
      button.textContent = "Copied";
    } catch (error) {
      button.textContent = "Copy failed";
    }
    setTimeout(() => { button.textContent = "Copy JSON"; }, 1500);
  });
  return button;
}

// A <details> whose pretty-printed JSON is built only when it is opened.
function jsonDetails(label, value, load) {
  const details = el("details", "json");
  const summary = el("summary", null, label);
  const pre = el("pre", "json-body");
  details.append(summary, pre);
  details.addEventListener("toggle", async () => {
    if (!details.open || pre.dataset.filled) return;
    pre.dataset.filled = "1";
    try {
      const shown = load ? await load() : value;
      putText(pre, JSON.stringify(shown, null, 2));
    } catch (error) {
      pre.textContent = shownText("Could not load: " + error.message);
    }
  });
  return details;
}

function head(ctx, event, parts) {
  const row = el("div", "ev-head");
  row.append(...parts, timeNode(event.ts), seqLink(ctx, event.seq), copyButton(ctx, event));
  return row;
}

function contentBlock(ctx, event, d) {
  const text = typeof d.content === "string" ? d.content : JSON.stringify(d.content);
  const block = el("div", "content");
  block.dir = "auto";
  putText(block, text, ctx.mark);
  const total = event.clipped ? event.content_length : text.length;
  const lines = text.length > COLLAPSE_CHARS ? 0 : text.split("\n").length;
  if (!event.clipped && text.length <= COLLAPSE_CHARS && lines <= COLLAPSE_LINES) return [block];
  block.classList.add("collapsed");
  const more = el("button", "more", event.clipped
    ? "Show all (" + plural(total, "character") + ", " + bytes(event.size) + ")" : "Show more");
  more.type = "button";
  more.setAttribute("aria-expanded", "false");
  more.addEventListener("click", async () => {
    if (block.classList.contains("collapsed") && event.clipped) {
      if (event.size > INLINE_MAX) {
        window.open(sessionUrl(ctx.sid, "/events/" + event.seq), "_blank", "noopener");
        return;
      }
      more.textContent = "Loading\u2026";
      try {
        const whole = await fullEvent(ctx, event);
        block.replaceChildren();
        putText(block, whole.data.content, ctx.mark);
        event.clipped = false;
        event.data = whole.data;
      } catch (error) {
        more.textContent = shownText("Could not load: " + error.message);
        return;
      }
    }
    const collapsed = block.classList.toggle("collapsed");
    more.textContent = collapsed ? "Show more" : "Show less";
    more.setAttribute("aria-expanded", String(!collapsed));
  });
  return [block, more];
}

function messageNode(ctx, event) {
  const d = event.data || {};
  const item = el("li", "ev msg");
  const who = [textEl("span", "sender " + colourOf(String(d.sender)), d.sender, ctx.mark),
    el("span", "arrow", "\u2192")];
  who.push(d.recipient === null || d.recipient === undefined
    ? el("span", "recipient everyone", "everyone") : textEl("span", "recipient", d.recipient, ctx.mark));
  if (d.message_type && d.message_type !== "text") who.push(textEl("span", "kind", d.message_type, ctx.mark));
  item.append(head(ctx, event, who), ...contentBlock(ctx, event, d));
  if (d.metadata && Object.keys(d.metadata).length) item.append(jsonDetails("metadata", d.metadata));
  return item;
}

function noteNode(ctx, event, parts) {
  const item = el("li", "ev note");
  item.append(head(ctx, event, parts));
  return item;
}

function customNode(ctx, event) {
  const item = el("li", "ev custom");
  item.append(head(ctx, event, [textEl("span", "type", event.type, ctx.mark)]));
  const label = "data (" + bytes(event.size) + ")";
  if (event.clipped && event.size > INLINE_MAX) {
    const link = el("a", "raw-link", "Open the whole event as JSON (" + bytes(event.size) + ")");
    link.href = sessionUrl(ctx.sid, "/events/" + event.seq);
    link.target = "_blank";
    link.rel = "noopener";
    item.append(textEl("p", "preview", event.preview, ctx.mark), link);
  } else if (event.clipped) {
    item.append(textEl("p", "preview", event.preview, ctx.mark),
      jsonDetails(label, null, async () => (await fullEvent(ctx, event)).data));
  } else {
    const inline = JSON.stringify(event.data);
    if (ctx.mark && inline && inline.length < 400) item.append(textEl("p", "preview", inline, ctx.mark));
    item.append(jsonDetails(label, event.data));
  }
  return item;
}

function tombstoneOf(d) {
  const t = d && typeof d === "object" && !Array.isArray(d) && Object.keys(d).length === 1 ? d.redacted : null;
  return t && typeof t === "object" && typeof t.sha256 === "string" ? t : null;
}

// An event whose data was erased by redact(): its seq, type and time stay, with why and by which event.
function redactedNode(ctx, event, tomb) {
  const item = el("li", "ev redacted");
  const parts = [textEl("span", "type", event.type, ctx.mark), el("span", "kind", "redacted")];
  item.append(head(ctx, event, parts));
  const note = el("p", "redacted-note");
  note.append(el("span", null, "Erased by the redaction at "));
  const link = el("a", null, "#" + tomb.seq);
  link.href = "#ev-" + tomb.seq;
  note.append(link, el("span", null, ": "), textEl("span", "reason", String(tomb.reason), ctx.mark));
  item.append(note);
  return item;
}

function build(ctx, event) {
  const d = event.data || {};
  const tomb = tombstoneOf(event.data);
  if (tomb) return redactedNode(ctx, event, tomb);
  switch (event.type) {
    case "session.redacted":
      return noteNode(ctx, event, [el("span", null, "redacted " + (d.seqs || []).map((s) => "#" + s).join(", ")),
        textEl("span", "reason", d.reason, ctx.mark)]);
    case "message":
      return messageNode(ctx, event);
    case "session.participant_joined":
      return noteNode(ctx, event, [textEl("span", "who", d.participant, ctx.mark), el("span", null, "joined")]);
    case "session.participant_left":
      return noteNode(ctx, event, [textEl("span", "who", d.participant, ctx.mark), el("span", null, "left")]);
    case "session.rewound": {
      const parts = [el("span", null, "\u27f2 rewound to"), seqLink(ctx, d.to_seq)];
      if (d.reason) parts.push(textEl("span", "who", d.reason, ctx.mark));
      return noteNode(ctx, event, parts);
    }
    case "session.forked": {
      const parent = el("a", "who", String(d.parent) + " #" + d.seq);
      parent.href = sessionHash(String(d.parent), d.seq);
      return noteNode(ctx, event, [el("span", null, "forked from"), parent]);
    }
    case "session.created": {
      const people = (d.participants || []).length ? "with " + d.participants.join(", ") : "";
      const item = noteNode(ctx, event, [el("span", null, "session created"), textEl("span", "who", people)]);
      if (d.metadata && Object.keys(d.metadata).length) item.append(jsonDetails("session metadata", d.metadata));
      return item;
    }
    default:
      return customNode(ctx, event);
  }
}

export function eventNode(ctx, event) {
  let item;
  try {
    item = build(ctx, event);
  } catch (error) {
    item = el("li", "ev broken");
    item.append(el("p", null, "Event #" + event.seq + " (" + String(event.type) + ") could not be shown: "
      + error.message));
    item.append(textEl("pre", "json-body", JSON.stringify(event)));
  }
  item.dataset.seq = String(event.seq);
  item.id = "ev-" + event.seq;
  markRewound(item, hiddenBy(ctx.rewinds, event.seq));
  return item;
}

// The rewind ([to_seq, seq]) that hides event `seq`, or null: rewound events stay in the
// transcript, greyed out and labelled, as they stay in the log.
export function hiddenBy(rewinds, seq) {
  for (const pair of rewinds || []) {
    if (pair[0] < seq && seq < pair[1]) return pair;
  }
  return null;
}

export function markRewound(item, pair) {
  const old = item.querySelector(":scope > .rewound-label");
  if (old) old.remove();
  item.classList.toggle("rewound", pair !== null);
  if (pair) {
    const label = el("span", "rewound-label", "rewound at #" + pair[1]);
    label.title = "Hidden by the rewind at #" + pair[1] + " (to #" + pair[0] + "); kept in the log";
    item.prepend(label);
  }
}

export function gapNode(seconds, text) {
  const item = el("li", "gap");
  item.append(el("span", null, text));
  item.dataset.gap = String(Math.round(seconds));
  return item;
}
