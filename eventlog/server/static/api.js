// Talking to the server: JSON requests, and a live stream that reconnects by itself.

import { withQuery } from "./util.js";

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.message) || "HTTP " + status);
    this.status = status;
    this.body = body || {};
  }
}

export async function api(path, params, signal) {
  const response = await fetch(withQuery(path, params), { headers: { Accept: "application/json" }, signal });
  if (!response.ok) {
    let body = null;
    try {
      body = await response.json();
    } catch (_) { /* not JSON: the status says it */ }
    throw new ApiError(response.status, body);
  }
  return response.json();
}

const BACKOFF_FIRST_MS = 500;
const BACKOFF_MOST_MS = 30000;

// A Server-Sent Events reader over fetch: unlike EventSource it sees the status of a refused
// connection (503 with Retry-After, 404, 409), so it retries with backoff after any failure,
// from the last seq it handed on, and stops only when the session is gone.
export class LiveStream {
  constructor(path, afterSeq, handlers) {
    this.path = path;
    this.lastSeq = afterSeq;
    this.on = handlers;   // {events(list), state(name, detail), gone(status), behind(error)}
    this.failures = 0;
    this.stopped = false;
    this.controller = null;
    this.timer = null;
    this.run();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    if (this.controller) this.controller.abort();
  }

  // Retry now (a user's click, or the page coming back into view).
  retryNow() {
    if (this.stopped || this.controller) return;
    clearTimeout(this.timer);
    this.run();
  }

  async run() {
    if (this.stopped) return;
    this.on.state("connecting");
    const controller = new AbortController();
    this.controller = controller;
    let retryAfter = null;
    try {
      const response = await fetch(withQuery(this.path, { after_seq: this.lastSeq }), {
        headers: { Accept: "text/event-stream" }, signal: controller.signal, cache: "no-store" });
      if (!response.ok) {
        const body = await response.json().catch(() => ({}));
        if (response.status === 404 || response.status === 409) {
          this.stopped = true;
          this.on.gone(response.status, body);
          return;
        }
        retryAfter = Number(response.headers.get("Retry-After")) || null;
        throw new Error(body.message || "HTTP " + response.status);
      }
      this.failures = 0;
      this.on.state("live");
      await this.read(response.body.getReader());
      if (!this.stopped) throw new Error("the stream ended");
    } catch (error) {
      if (this.stopped) return;
      this.failures += 1;
      const backoff = Math.min(BACKOFF_MOST_MS, BACKOFF_FIRST_MS * 2 ** (this.failures - 1));
      const wait = Math.max(backoff, (retryAfter || 0) * 1000) * (0.8 + 0.4 * Math.random());
      this.on.state("reconnecting", { wait, error: String(error.message || error) });
      this.timer = setTimeout(() => this.run(), wait);
    } finally {
      if (this.controller === controller) this.controller = null;
    }
  }

  async read(reader) {
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += decoder.decode(value, { stream: true });
      const end = buffer.lastIndexOf("\n\n");
      if (end < 0) continue;
      const complete = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      const events = [];
      for (const block of complete.split("\n\n")) {
        let data = "";
        let kind = "message";
        for (const line of block.split("\n")) {
          if (line.startsWith("data:")) data += (data ? "\n" : "") + line.slice(line[5] === " " ? 6 : 5);
          else if (line.startsWith("event:")) kind = line.slice(6).trim();
        }
        if (!data) continue;
        const parsed = JSON.parse(data);
        if (kind === "eventlog-error") {
          if (events.length) this.hand(events);
          this.stopped = true;
          this.on.gone(parsed.status, parsed);
          return;
        }
        events.push(parsed);
      }
      if (events.length) this.hand(events);
    }
  }

  hand(events) {
    const fresh = events.filter((e) => e.seq > this.lastSeq);
    if (!fresh.length) return;
    this.lastSeq = fresh[fresh.length - 1].seq;
    this.on.events(fresh);
  }
}
