// Who talks to whom: the agents of a session on a circle, an arrow for each sender and
// recipient pair with its message count, and the same pairs as a list of buttons. Picking a
// pair (in either) filters the transcript to it.

import { colourOf, el, plural, shownText, textEl } from "./util.js";

const SVG = "http://www.w3.org/2000/svg";
const EVERYONE = "\u0000everyone";  // no participant name can hold a NUL... as the key only

function svg(tag, attrs, className) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, String(value));
  if (className) node.setAttribute("class", className);
  return node;
}

// Counted and cut in grapheme clusters, not UTF-16 units: a cut by .slice() could split a
// surrogate pair (leaving a lone half that shows as a replacement box) or a joined emoji.
const GRAPHEMES = typeof Intl !== "undefined" && Intl.Segmenter
  ? new Intl.Segmenter(undefined, { granularity: "grapheme" }) : null;

function short(name, most) {
  const parts = GRAPHEMES ? Array.from(GRAPHEMES.segment(name), (s) => s.segment) : Array.from(name);
  return parts.length > most ? parts.slice(0, most - 1).join("") + "\u2026" : name;
}

function label(name) {
  return name === EVERYONE ? "everyone" : name;
}

export function renderGraph(container, data, onPick) {
  const names = [];
  const add = (n) => { if (!names.includes(n)) names.push(n); };
  data.participants.forEach(add);
  for (const p of data.pairs) {
    add(p.sender);
    add(p.recipient === null ? EVERYONE : p.recipient);
  }
  container.replaceChildren();
  if (!data.pairs.length) {
    container.append(el("p", "muted", "No messages yet: nobody has talked to anybody."));
    return;
  }
  const size = 360;
  const middle = size / 2;
  const radius = names.length > 1 ? size / 2 - 62 : 0;
  const at = new Map(names.map((n, i) => {
    const angle = -Math.PI / 2 + (2 * Math.PI * i) / names.length;
    return [n, [middle + radius * Math.cos(angle), middle + radius * Math.sin(angle)]];
  }));
  const most = Math.max(...data.pairs.map((p) => p.count));
  const picture = svg("svg", { viewBox: `0 0 ${size} ${size}`, role: "img" }, "graph-svg");
  const title = svg("title");
  title.textContent = "Messages between agents; each arrow's number is how many";
  picture.append(title);
  const defs = svg("defs");
  const marker = svg("marker", { id: "arrowhead", viewBox: "0 0 10 10", refX: 10, refY: 5,
    markerWidth: 9, markerHeight: 9, markerUnits: "userSpaceOnUse", orient: "auto-start-reverse" },
    "arrowhead");
  marker.append(svg("path", { d: "M 0 0 L 10 5 L 0 10 z" }));
  defs.append(marker);
  picture.append(defs);
  for (const pair of data.pairs) {
    const to = pair.recipient === null ? EVERYONE : pair.recipient;
    const [x1, y1] = at.get(pair.sender);
    const [x2, y2] = at.get(to);
    const width = 1 + 5 * Math.log1p(pair.count) / Math.log1p(most);
    const group = svg("g", {}, "edge");
    group.addEventListener("click", () => onPick(pair));
    let lx;
    let ly;
    if (pair.sender === to) {
      const loop = svg("circle", { cx: x1, cy: y1 - 26, r: 16, "stroke-width": width }, "edge-line");
      group.append(loop);
      lx = x1;
      ly = y1 - 46;
    } else {
      // Bend each arrow to its right, so A->B and B->A don't overlap.
      const dx = x2 - x1;
      const dy = y2 - y1;
      const length = Math.hypot(dx, dy) || 1;
      const cx = (x1 + x2) / 2 + (dy / length) * 22;
      const cy = (y1 + y2) / 2 - (dx / length) * 22;
      const ex = x2 - (dx / length) * 24;
      const ey = y2 - (dy / length) * 24;
      const sx = x1 + (dx / length) * 24;
      const sy = y1 + (dy / length) * 24;
      group.append(svg("path", { d: `M ${sx} ${sy} Q ${cx} ${cy} ${ex} ${ey}`, "stroke-width": width,
        "marker-end": "url(#arrowhead)" }, "edge-line"));
      lx = (sx + 2 * cx + ex) / 4;
      ly = (sy + 2 * cy + ey) / 4;
    }
    group.append(svg("circle", { cx: lx, cy: ly, r: 11 }, "edge-badge"));
    const count = svg("text", { x: lx, y: ly + 4, "text-anchor": "middle" }, "edge-count");
    count.textContent = pair.count > 999 ? Math.round(pair.count / 1000) + "k" : String(pair.count);
    group.append(count);
    picture.append(group);
  }
  for (const name of names) {
    const [x, y] = at.get(name);
    const cls = name === EVERYONE ? "node everyone" : "node " + colourOf(name);
    picture.append(svg("circle", { cx: x, cy: y, r: 20 }, cls));
    const text = svg("text", { x, y: y + 36, "text-anchor": "middle" }, "node-label");
    text.textContent = shownText(short(label(name), 16));
    picture.append(text);
  }
  const list = el("ul", "pairs");
  list.setAttribute("aria-label", "Messages per sender and recipient; pick one to filter");
  for (const pair of data.pairs) {
    const button = el("button", "pair");
    button.type = "button";
    button.append(textEl("span", "sender " + colourOf(pair.sender), pair.sender),
      el("span", "arrow", "\u2192"),
      pair.recipient === null ? el("span", "recipient everyone", "everyone")
        : textEl("span", "recipient", pair.recipient),
      el("span", "count", plural(pair.count, "message")));
    button.addEventListener("click", () => onPick(pair));
    const item = el("li");
    item.append(button);
    list.append(item);
  }
  const figure = el("div", "graph-figure");
  figure.append(picture);
  container.append(figure, list);
}
