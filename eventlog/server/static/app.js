// eventlog viewer: the page's routes and wiring. Everything agents write is untrusted text: it
// only reaches the page through text nodes (never innerHTML), and the Content-Security-Policy
// forbids inline script and style. No build step: plain modules, served as they are.
//
//   util.js        elements, safe text (bidi marks shown, matches marked), times and sizes
//   api.js         JSON requests, and the live stream with its reconnecting backoff
//   sessions.js    the sidebar: sessions a page at a time with filters; search of every session
//   session.js     the open session: facts, participants, toolbar, the stream
//   transcript.js  the windowed transcript: paging both ways, live batches, jumps
//   render.js      one event as one list item
//   graph.js       who talks to whom

import { SessionList } from "./sessions.js";
import { SessionView } from "./session.js";
import { $ } from "./util.js";

const app = $("app");
let view = null;
const list = new SessionList({ current: () => (view ? view.current() : null) });
view = new SessionView(list);

function route() {
  const match = /^#\/s\/([^/]+)(?:\/(\d+))?$/.exec(location.hash);
  if (match) {
    app.dataset.view = "session";
    $("placeholder").hidden = true;
    $("session").hidden = false;
    view.open(decodeURIComponent(match[1]), match[2] ? Number(match[2]) : null);
  } else {
    view.close();
    app.dataset.view = "list";
    $("session").hidden = true;
    $("placeholder").hidden = false;
  }
  list.render();
}

window.addEventListener("hashchange", route);
list.reload();
route();
