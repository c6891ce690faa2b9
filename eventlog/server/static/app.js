// eventlog viewer. Everything agents write is untrusted text: it only ever reaches the page
// through textContent (never innerHTML), and the Content-Security-Policy forbids inline script.
"use strict";

(() => {
  const PAGE = 200;            // messages loaded when a session opens, and per "load earlier"
  const LIST_REFRESH_MS = 5000;
  const VERIFY_AHEAD = 30;     // sessions of the list verified in the background, one at a time

  const $ = (id) => document.getElementById(id);
  const app = $("app");
  const state = {
    sessions: [],
    unreadable: [],      // sessions whose log cannot be read: listed first, in red
    current: null,       // the open session's summary
    source: null,        // its EventSource
    lastSeq: 0,          // highest seq rendered (events arrive once; this guards a reload race)
    oldest: null,        // lowest message seq loaded, for "load earlier"
    verifying: false,
    filter: "",
    colours: new Map(),  // name -> colour class, per open session
  };

  // Helpers ---------------------------------------------------------------------------------

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function sessionPath(id) {
    return "/api/sessions/" + encodeURIComponent(id);
  }

  async function api(path) {
    const response = await fetch(path, { headers: { Accept: "application/json" } });
    if (!response.ok) {
      let message = "HTTP " + response.status;
      try {
        message = (await response.json()).message || message;
      } catch (_) { /* not JSON: keep the status */ }
      const error = new Error(message);
      error.status = response.status;
      throw error;
    }
    return response.json();
  }

  // Each name of the open session gets the next of eight colours, in order of appearance, so the
  // first eight people of a session never share one.
  function colourOf(name) {
    if (!state.colours.has(name)) state.colours.set(name, "c" + (state.colours.size % 8));
    return state.colours.get(name);
  }

  function clock(ts) {
    return new Date(ts * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  }

  function fullDate(ts) {
    return new Date(ts * 1000).toLocaleString();
  }

  function ago(ts) {
    const seconds = Date.now() / 1000 - ts;
    if (seconds < 45) return "just now";
    if (seconds < 3600) return Math.round(seconds / 60) + " min ago";
    if (seconds < 86400) return Math.round(seconds / 3600) + " h ago";
    if (seconds < 86400 * 7) return Math.round(seconds / 86400) + " d ago";
    return new Date(ts * 1000).toLocaleDateString();
  }

  function bytes(n) {
    if (n === null || n === undefined) return "?";
    if (n < 1024) return n + " B";
    if (n < 1024 * 1024) return (n / 1024).toFixed(1) + " KB";
    return (n / 1024 / 1024).toFixed(1) + " MB";
  }

  function plural(n, word) {
    return n + " " + word + (n === 1 ? "" : "s");
  }

  function verifyBadge(session) {
    const v = session.verify;
    if (!v) return el("span", "badge", "unchecked");
    if (!v.ok) return el("span", "badge bad", "\u2717 " + plural(v.problems.length, "problem"));
    const stale = v.events_checked < session.last_seq;
    return el("span", stale ? "badge" : "badge ok", stale ? "\u2713 to #" + v.events_checked : "\u2713 verified");
  }

  // Session list ----------------------------------------------------------------------------

  async function loadSessions() {
    const query = state.filter ? "&q=" + encodeURIComponent(state.filter) : "";
    try {
      const page = await api("/api/sessions?limit=1000&sort=last_activity" + query);
      state.sessions = page.sessions;
      state.unreadable = page.unreadable;
      $("store-count").textContent = plural(page.total, "session");
      $("list-status").textContent = page.total > page.sessions.length
        ? "Showing the " + page.sessions.length + " most recent of " + page.total + "." : "";
      if (!page.sessions.length) $("list-status").textContent = state.filter ? "No session matches." : "No sessions yet.";
      renderSessions();
      verifyInBackground();
    } catch (error) {
      $("list-status").textContent = "Cannot load sessions: " + error.message;
    }
  }

  function renderSessions() {
    const broken = state.unreadable.map((u) => {
      const link = el("a");
      link.href = "#/s/" + encodeURIComponent(u.session_id);
      const top = el("div", "row");
      top.append(el("span", "sid", u.session_id), el("span", "badge bad", "\u2717 unreadable"));
      link.append(top, el("div", "who", u.error));
      const item = el("li");
      item.append(link);
      return item;
    });
    const items = state.sessions.map((s) => {
      const link = el("a");
      link.href = "#/s/" + encodeURIComponent(s.session_id);
      link.dataset.sid = s.session_id;
      if (state.current && state.current.session_id === s.session_id) link.setAttribute("aria-current", "true");
      const top = el("div", "row");
      top.append(el("span", "sid", s.session_id), el("span", "when", ago(s.last_activity)));
      const who = el("div", "who", s.participants.length ? s.participants.join(", ") : "no participants");
      const counts = el("div", "counts");
      counts.append(el("span", null, plural(s.message_count, "message") + " \u00b7 " + bytes(s.size_bytes)),
        verifyBadge(s));
      link.append(top, who, counts);
      const item = el("li");
      item.append(link);
      return item;
    });
    $("sessions").replaceChildren(...broken, ...items);
  }

  async function verifyInBackground() {
    if (state.verifying || document.hidden) return;
    const todo = state.sessions.slice(0, VERIFY_AHEAD)
      .filter((s) => !s.verify || s.verify.events_checked < s.last_seq);
    if (!todo.length) return;
    state.verifying = true;
    try {
      for (const s of todo) {
        const report = await api(sessionPath(s.session_id) + "/verify").catch(() => null);
        if (!report) continue;
        s.verify = report;
        if (state.current && state.current.session_id === s.session_id
            && (!state.current.verify || state.current.verify.checked_at < report.checked_at)) {
          state.current.verify = report;
          renderFacts();
        }
      }
    } finally {
      state.verifying = false;
    }
    renderSessions();
  }

  // One session -----------------------------------------------------------------------------

  function closeStream() {
    if (state.source) state.source.close();
    state.source = null;
  }

  function setLive(which, text) {
    const live = $("live");
    live.dataset.state = which;
    live.textContent = text;
  }

  function renderFacts() {
    const s = state.current;
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
    const verify = el("div");
    const v = s.verify;
    let text = "not checked yet";
    let cls = null;
    if (v) {
      const upTo = v.events_checked < s.last_seq ? " up to #" + v.events_checked : " (" + plural(v.events_checked, "event") + ")";
      text = v.ok ? "\u2713 ok" + upTo : "\u2717 " + plural(v.problems.length, "problem");
      cls = v.ok ? "ok" : "bad";
    }
    verify.append(el("dt", null, "verify"), el("dd", cls, text));
    rows.push(verify);
    $("facts").replaceChildren(...rows);
    const problems = v && !v.ok ? v.problems : [];
    $("problems").hidden = problems.length === 0;
    $("problem-list").replaceChildren(...problems.map((p) => el("li", null, p)));
  }

  function renderParticipants() {
    const people = state.current.participants.map((name) => el("li", colourOf(name), name));
    $("participants").replaceChildren(...people);
  }

  function messageNode(m, fresh) {
    const item = el("li", fresh ? "msg fresh" : "msg");
    item.dataset.seq = String(m.seq);
    const head = el("div", "msg-head");
    head.append(el("span", "sender " + colourOf(m.sender), m.sender), el("span", "arrow", "\u2192"));
    head.append(m.recipient === null || m.recipient === undefined
      ? el("span", "recipient everyone", "everyone") : el("span", "recipient", m.recipient));
    if (m.message_type && m.message_type !== "text") head.append(el("span", "kind", m.message_type));
    const time = el("time", "msg-time", clock(m.timestamp));
    time.dateTime = new Date(m.timestamp * 1000).toISOString();
    time.title = fullDate(m.timestamp);
    head.append(time, el("span", "seq", "#" + m.seq));
    item.append(head, el("p", "content", m.content));
    return item;
  }

  function noteNode(event, text, data) {
    const item = el("li", "note");
    item.dataset.seq = String(event.seq);
    item.append(el("span", "seq", "#" + event.seq), el("span", null, text));
    if (data !== undefined) item.append(el("span", "data", JSON.stringify(data)));
    return item;
  }

  // An event from the live stream, shaped like one line of the NDJSON replay.
  function eventNode(event) {
    const d = event.data || {};
    switch (event.type) {
      case "message":
        return messageNode({ seq: event.seq, id: d.id, sender: d.sender, recipient: d.recipient,
          content: d.content, timestamp: event.ts, message_type: d.message_type || "text" }, true);
      case "session.participant_joined":
        return noteNode(event, d.participant + " joined");
      case "session.participant_left":
        return noteNode(event, d.participant + " left");
      default:
        return noteNode(event, event.type, event.data);
    }
  }

  function nearBottom(box) {
    return box.scrollHeight - box.scrollTop - box.clientHeight < 80;
  }

  function onEvent(event) {
    if (event.seq <= state.lastSeq) return;
    const box = $("transcript");
    const stick = nearBottom(box);
    $("messages").append(eventNode(event));
    $("no-messages").hidden = true;
    state.lastSeq = event.seq;
    const s = state.current;
    s.last_seq = event.seq;
    s.last_activity = Math.max(s.last_activity, event.ts);
    const d = event.data || {};
    if (event.type === "message") {
      s.message_count += 1;
      for (const who of [d.sender, d.recipient]) {
        if (who && !s.participants.includes(who)) {
          s.participants.push(who);
          renderParticipants();
        }
      }
    } else if (event.type === "session.participant_joined" && !s.participants.includes(d.participant)) {
      s.participants.push(d.participant);
      renderParticipants();
    } else if (event.type === "session.participant_left") {
      s.participants = s.participants.filter((p) => p !== d.participant);
      renderParticipants();
    }
    renderFacts();
    const listed = state.sessions.find((x) => x.session_id === s.session_id);
    if (listed) {
      Object.assign(listed, { message_count: s.message_count, last_seq: s.last_seq,
        last_activity: s.last_activity, participants: s.participants.slice() });
      state.sessions.sort((a, b) => b.last_activity - a.last_activity
        || (a.session_id < b.session_id ? -1 : 1));
      scheduleListRender();
    }
    if (stick) box.scrollTop = box.scrollHeight;
  }

  // Bursts of events re-render the list once a frame at most.
  let listRenderPending = false;
  function scheduleListRender() {
    if (listRenderPending) return;
    listRenderPending = true;
    requestAnimationFrame(() => {
      listRenderPending = false;
      renderSessions();
    });
  }

  function connect(id, afterSeq) {
    closeStream();
    setLive("connecting", "connecting");
    // EventSource sends Last-Event-ID (the last seq it saw) by itself when it reconnects.
    const source = new EventSource(sessionPath(id) + "/stream?after_seq=" + afterSeq);
    state.source = source;
    source.onopen = () => setLive("live", "live");
    source.onmessage = (message) => onEvent(JSON.parse(message.data));
    source.addEventListener("eventlog-error", (message) => {
      const error = JSON.parse(message.data);
      source.close();
      setLive("ended", error.status === 404 ? "deleted" : "stopped");
    });
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED) setLive("ended", "disconnected");
      else setLive("reconnecting", "reconnecting");
    };
  }

  async function openSession(id) {
    app.dataset.view = "session";
    $("placeholder").hidden = true;
    $("session").hidden = false;
    $("session-title").textContent = id;
    $("messages").replaceChildren();
    $("older").hidden = true;
    $("no-messages").hidden = true;
    closeStream();
    let session;
    let messages;
    try {
      session = await api(sessionPath(id));
      const page = await api(sessionPath(id) + "/messages?limit=" + PAGE + "&before_seq=" + (session.last_seq + 1));
      messages = page.messages;
    } catch (error) {
      state.current = null;
      $("facts").replaceChildren(el("div", null, error.message));
      $("participants").replaceChildren();
      setLive("ended", error.status === 404 ? "not found" : "error");
      return;
    }
    if (location.hash !== "#/s/" + encodeURIComponent(id)) return;  // the user moved on meanwhile
    state.current = session;
    state.colours = new Map();
    session.participants.forEach(colourOf);
    state.lastSeq = session.last_seq;
    state.oldest = messages.length ? messages[0].seq : null;
    $("messages").replaceChildren(...messages.map((m) => messageNode(m, false)));
    $("older").hidden = messages.length < PAGE;
    $("no-messages").hidden = messages.length > 0;
    renderParticipants();
    renderFacts();
    renderSessions();
    const box = $("transcript");
    box.scrollTop = box.scrollHeight;
    connect(id, session.last_seq);
    api(sessionPath(id) + "/verify").then((report) => {
      if (state.current && state.current.session_id === id) {
        state.current.verify = report;
        renderFacts();
      }
    }).catch(() => { /* shown as "not checked yet" */ });
  }

  async function loadOlder() {
    const s = state.current;
    if (!s || state.oldest === null) return;
    const page = await api(sessionPath(s.session_id) + "/messages?limit=" + PAGE + "&before_seq=" + state.oldest);
    if (!page.messages.length) {
      $("older").hidden = true;
      return;
    }
    const box = $("transcript");
    const fromBottom = box.scrollHeight - box.scrollTop;
    $("messages").prepend(...page.messages.map((m) => messageNode(m, false)));
    state.oldest = page.messages[0].seq;
    $("older").hidden = page.messages.length < PAGE;
    box.scrollTop = box.scrollHeight - fromBottom;
  }

  function showList() {
    closeStream();
    state.current = null;
    app.dataset.view = "list";
    $("session").hidden = true;
    $("placeholder").hidden = false;
    renderSessions();
  }

  function route() {
    const match = /^#\/s\/(.+)$/.exec(location.hash);
    if (match) openSession(decodeURIComponent(match[1]));
    else showList();
  }

  // Wiring ----------------------------------------------------------------------------------

  let filterTimer = null;
  $("filter").addEventListener("input", (event) => {
    clearTimeout(filterTimer);
    filterTimer = setTimeout(() => {
      state.filter = event.target.value.trim();
      loadSessions();
    }, 200);
  });
  $("older").addEventListener("click", () => loadOlder());
  window.addEventListener("hashchange", route);
  setInterval(() => { if (!document.hidden) loadSessions(); }, LIST_REFRESH_MS);

  loadSessions();
  route();
})();
