// Small helpers every part of the viewer uses: building elements, showing untrusted text
// safely, and formatting times and sizes without ever throwing on an odd value.
//
// Everything agents write is untrusted: it only reaches the page through text nodes (never
// innerHTML), and the characters that can reorder or hide text are shown as visible marks.

// Bidirectional embeddings, overrides and isolates (U+202A-U+202E, U+2066-U+2069): with them
// "\u202egpj.exe" reads as "exe.jpg". And C0/C1 controls other than tab and newline, which a
// browser draws as nothing.
const HIDDEN = /[\u202a-\u202e\u2066-\u2069\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g;

export const $ = (id) => document.getElementById(id);

function codeOf(ch) {
  return "U+" + ch.charCodeAt(0).toString(16).toUpperCase().padStart(4, "0");
}

// `text` as a string with each hidden character written as its code ("U+202E"): the one
// neutralising step for text set where no mark element can go (an <option>, an SVG <text>,
// a title, anything `el` is given). putText shows the same codes, as marked elements.
export function shownText(text) {
  return (text === null || text === undefined ? "" : String(text)).replace(HIDDEN, codeOf);
}

// An element; its `text` (untrusted or not) is neutralised, so no caller can forget to.
export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined && text !== null) node.textContent = shownText(text);
  return node;
}

function escapeRegExp(text) {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

// A case-insensitive matcher for a search query, or null.
export function highlighter(query) {
  if (!query) return null;
  try {
    return new RegExp(escapeRegExp(query), "giu");
  } catch (_) {
    return null;
  }
}

// Appends `text` to `parent` as text nodes: hidden characters become visible marks, and
// matches of `mark` (a RegExp from highlighter) are wrapped in <mark>.
export function putText(parent, text, mark) {
  const value = text === null || text === undefined ? "" : String(text);
  const pieces = [];
  let last = 0;
  if (mark) {
    mark.lastIndex = 0;
    for (const found of value.matchAll(mark)) {
      if (!found[0]) break;
      pieces.push([value.slice(last, found.index), false], [found[0], true]);
      last = found.index + found[0].length;
    }
  }
  pieces.push([value.slice(last), false]);
  for (const [piece, marked] of pieces) {
    if (!piece) continue;
    const target = marked ? parent.appendChild(el("mark")) : parent;
    let at = 0;
    HIDDEN.lastIndex = 0;
    for (const found of piece.matchAll(HIDDEN)) {
      if (found.index > at) target.append(piece.slice(at, found.index));
      const code = codeOf(found[0]);
      const shown = el("span", "ctl", code);
      shown.title = "hidden character " + code + " (shown, not applied)";
      target.append(shown);
      at = found.index + 1;
    }
    if (at < piece.length) target.append(piece.slice(at));
  }
  return parent;
}

// An element holding untrusted text, isolated so its direction cannot leak into what follows.
export function textEl(tag, className, text, mark) {
  const node = el(tag, className);
  node.dir = "auto";
  return putText(node, text, mark);
}

export function plural(n, word) {
  return n + " " + word + (n === 1 ? "" : "s");
}

export function bytes(n) {
  if (n === null || n === undefined || !Number.isFinite(n)) return "?";
  if (n < 1024) return n + " B";
  if (n < 1024 * 1024) return (n / 1024).toFixed(1) + " KB";
  return (n / 1024 / 1024).toFixed(1) + " MB";
}

// A Date for Unix seconds, or null if the value is no time a Date can hold.
export function dateOf(ts) {
  if (typeof ts !== "number" || !Number.isFinite(ts)) return null;
  const date = new Date(ts * 1000);
  return Number.isNaN(date.getTime()) ? null : date;
}

export function clock(ts) {
  const date = dateOf(ts);
  return date ? date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" })
    : "t=" + String(ts);
}

export function fullDate(ts) {
  const date = dateOf(ts);
  return date ? date.toLocaleString() : "unreadable time " + String(ts);
}

export function isoDate(ts) {
  const date = dateOf(ts);
  try {
    return date ? date.toISOString() : "";
  } catch (_) {
    return "";  // beyond year 275760: no ISO form
  }
}

export function ago(ts) {
  const date = dateOf(ts);
  if (!date) return "?";
  const seconds = Date.now() / 1000 - ts;
  if (seconds < 45) return "just now";
  if (seconds < 3600) return Math.round(seconds / 60) + " min ago";
  if (seconds < 86400) return Math.round(seconds / 3600) + " h ago";
  if (seconds < 86400 * 7) return Math.round(seconds / 86400) + " d ago";
  return date.toLocaleDateString();
}

export function duration(seconds) {
  if (seconds < 90) return Math.round(seconds) + " s";
  if (seconds < 5400) return Math.round(seconds / 60) + " min";
  if (seconds < 129600) return (seconds / 3600).toFixed(1).replace(/\.0$/, "") + " h";
  return (seconds / 86400).toFixed(1).replace(/\.0$/, "") + " days";
}

export function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

// `url` with `params` added to its query; a null, undefined, "" or false value is left out,
// an array repeats the name.
export function withQuery(url, params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params || {})) {
    if (value === null || value === undefined || value === "" || value === false) continue;
    if (Array.isArray(value)) value.forEach((v) => search.append(name, v));
    else search.set(name, String(value));
  }
  const text = search.toString();
  return text ? url + (url.includes("?") ? "&" : "?") + text : url;
}

// The URL of a session's route (`tail` is "", "/graph", "/events/12", ...). `.` and `..` are
// dot segments, which the browser resolves in a path, "%2E%2E" too (the URL standard), so
// /api/sessions/../graph would ask for /api/graph: those two ids go in the query form the
// server serves for every route, /api/session/graph?session_id=..
export function sessionUrl(id, tail, params) {
  const url = id === "." || id === ".."
    ? "/api/session" + (tail || "") + "?session_id=" + encodeURIComponent(id)
    : "/api/sessions/" + encodeURIComponent(id) + (tail || "");
  return withQuery(url, params);
}

export function sessionHash(id, seq) {
  return "#/s/" + encodeURIComponent(id) + (seq ? "/" + seq : "");
}

// Each name of the open session gets the next of eight colours, in order of appearance.
const colours = new Map();
export function colourOf(name) {
  if (!colours.has(name)) colours.set(name, "c" + (colours.size % 8));
  return colours.get(name);
}
export function resetColours(names) {
  colours.clear();
  for (const name of names) colourOf(name);
}
